"""Samplers: plain functions with one signature, returning a trajectory record.

``sampler(denoiser, x, process, generator=None, callback=None, keep_states=False)``
(k-diffusion's shape): ``denoiser(x_t, t)`` returns the network output for a batch and a
[batch] tensor of training timesteps; ``x`` is the starting point (usually
``process.family.limit_sample``); ``process`` is a :class:`~serialrepro.models.diffusion.Diffusion`,
respaced for strided sampling. Each sampler is the same loop over a different reverse step
of the process, so no sampler knows which family it runs: the maths lives in the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.models.diffusion import Diffusion, check_eta
from serialrepro.models.noise import GeneratorLike

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], None]


@dataclass
class Trajectory:
    """What a sampler returns: final samples, the timesteps visited, optional history."""

    samples: Tensor
    timesteps: list[int]
    states: list[Tensor] = field(default_factory=list)  # x_t before each step (if kept)
    x0_preds: list[Tensor] = field(default_factory=list)  # x̂_0 at each step (if kept)


StepFn = Callable[[Tensor, int, Tensor, GeneratorLike], tuple[Tensor, Tensor]]


@torch.no_grad()
def _run(step: StepFn, denoiser: Denoiser, x: Tensor, process: Diffusion,
         generator: GeneratorLike, callback: Callback | None, keep_states: bool) -> Trajectory:
    """The reverse loop shared by every sampler: t = τ_{n−1}, …, τ_0."""
    timesteps = process.timesteps.tolist()  # descending
    traj = Trajectory(x, timesteps)
    t_batch = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for i, t in enumerate(timesteps):
        out = denoiser(x, t_batch.fill_(t))
        x_prev, x0 = step(out, t, x, generator)
        if keep_states:
            traj.states.append(x)
            traj.x0_preds.append(x0)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0_pred": x0, "x_prev": x_prev})
        x = x_prev
    if not bool(torch.isfinite(x).all()):
        # a NaN/inf model or input: refuse rather than hand back samples that score as data
        bad = int((~torch.isfinite(x)).sum())
        raise UserInputError(f"sampling produced {bad} non-finite values (NaN or infinity) "
                             "in the final samples; check the model checkpoint and the "
                             "starting point")
    traj.samples = x
    return traj


def ddpm_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                 generator: GeneratorLike = None, callback: Callback | None = None,
                 keep_states: bool = False) -> Trajectory:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), on any respaced schedule."""
    return _run(process.ddpm_step, denoiser, x, process, generator, callback, keep_states)


def ddim_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                 generator: GeneratorLike = None, callback: Callback | None = None,
                 keep_states: bool = False, eta: float = 0.0) -> Trajectory:
    """DDIM sampling (Song et al. 2021, eq. 12); η = 0 is deterministic."""
    step = partial(process.ddim_step, eta=check_eta(eta))
    return _run(step, denoiser, x, process, generator, callback, keep_states)


def reproduction_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                         generator: GeneratorLike = None, callback: Callback | None = None,
                         keep_states: bool = False) -> Trajectory:
    """Serial-reproduction sampling (cold diffusion Algorithm 1), any family."""
    return _run(process.reproduction_step, denoiser, x, process, generator, callback,
                keep_states)


def cold_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                 generator: GeneratorLike = None, callback: Callback | None = None,
                 keep_states: bool = False) -> Trajectory:
    """Cold diffusion Algorithm 2 (improved sampling), any family."""
    return _run(process.cold_step, denoiser, x, process, generator, callback, keep_states)


SAMPLERS: dict[str, Callable[..., Trajectory]] = {
    "ddpm": ddpm_sampler,
    "ddim": ddim_sampler,
    "reproduction": reproduction_sampler,
    "cold": cold_sampler,
}


def get_sampler(name: str) -> Callable[..., Trajectory]:
    """Look a sampler up by name; unknown names list the valid ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise unknown_name("sampler", name, SAMPLERS) from None
