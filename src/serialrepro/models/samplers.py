"""Samplers: plain functions with one signature, returning a trajectory record.

``sampler(denoiser, x, process, generator=None, callback=None, keep_states=False)``
(k-diffusion's shape): ``denoiser(x_t, t)`` returns the network output for a batch and a
[batch] tensor of training timesteps; ``x`` is the starting point (usually
``process.family.limit_sample``); ``process`` is a :class:`~serialrepro.models.diffusion.Diffusion`,
respaced for strided sampling. Each sampler is the same loop over a different reverse step
of the process, so no sampler knows which family it runs: the maths lives in the family.

The registry :data:`SAMPLERS` (look-up: :func:`get_sampler`) holds the trained-model
samplers; the grid engine's reverse steps are :data:`serialrepro.grid.process.GRID_STEPS`.
Three reverse steps are kept apart (docs/design.md §3):

- ``serial``: the paper's serial-reproduction step, x̃ ~ K_t(· | x_t) (one forward step of
  the family), then a draw from the step-t reverse transition from x̃
  (:class:`serialrepro.models.reconstruct.NetworkReconstructor`);
- ``reproduction`` (called ``x0-renoise`` on the command line): cold diffusion's
  Algorithm 1, x_{t−1} = D(x̂_0, t−1), a posterior-*mean* agent;
- ``cold``: cold diffusion's Algorithm 2;

beside DDPM's ancestral step (``ddpm``) and DDIM (``ddim``).
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
from serialrepro.models.reconstruct import NetworkReconstructor, as_pair

Denoiser = Callable[[Tensor, Tensor], Tensor]
#: called once per step with {"i", "t", "x", "x0_pred", "x_prev"}
SampleCallback = Callable[[dict], None]


@dataclass
class SampleTrajectory:
    """What a trained-model sampler returns: final samples, the timesteps visited, optional
    history (the grid engine's record of distributions is
    :class:`serialrepro.grid.process.GridTrajectory`)."""

    samples: Tensor
    timesteps: list[int]
    states: list[Tensor] = field(default_factory=list)  # x_t before each step (if kept)
    x0_preds: list[Tensor] = field(default_factory=list)  # x̂_0 at each step (if kept)


StepFn = Callable[[Tensor, int, Tensor, GeneratorLike], tuple[Tensor, Tensor]]
PerceiveFn = Callable[[Tensor, int, GeneratorLike], Tensor]


@torch.no_grad()
def _run(step: StepFn, denoiser: Denoiser, x: Tensor, process: Diffusion,
         generator: GeneratorLike, callback: SampleCallback | None, keep_states: bool,
         perceive: PerceiveFn | None = None) -> SampleTrajectory:
    """The reverse loop shared by every sampler: t = τ_{n−1}, …, τ_0. With ``perceive``
    the state is first perceived through it and the network sees, and the step reverses,
    the perceived state (the serial-reproduction step)."""
    timesteps = process.timesteps.tolist()  # descending, as diffusers'
    traj = SampleTrajectory(x, timesteps)
    t_batch = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for i, t in enumerate(timesteps):
        seen = x if perceive is None else perceive(x, t, generator)
        out = denoiser(seen, t_batch.fill_(t))
        x_prev, x0 = as_pair(step(out, t, seen, generator))
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
                 generator: GeneratorLike = None, callback: SampleCallback | None = None,
                 keep_states: bool = False) -> SampleTrajectory:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), on any respaced schedule."""
    return _run(process.ddpm_step, denoiser, x, process, generator, callback, keep_states)


def ddim_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                 generator: GeneratorLike = None, callback: SampleCallback | None = None,
                 keep_states: bool = False, eta: float = 0.0) -> SampleTrajectory:
    """DDIM sampling (Song et al. 2021, eq. 12); η = 0 is deterministic."""
    step = partial(process.ddim_step, eta=check_eta(eta))
    return _run(step, denoiser, x, process, generator, callback, keep_states)


def serial_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                   generator: GeneratorLike = None, callback: SampleCallback | None = None,
                   keep_states: bool = False) -> SampleTrajectory:
    """The paper's serial-reproduction step on a network, any family (docs/design.md §1):
    x̃ ~ K_t(· | x_t), one forward step of the family, then x_{t−1} from the step-t reverse
    transition from x̃ (the DDPM posterior sample for variance-preserving families, the
    family's own reverse step otherwise), i.e. r_{t−1} = Post_t K_t r_t with the network's
    Post_t (:func:`serialrepro.reconstruction.serial` over
    :class:`~serialrepro.models.reconstruct.NetworkReconstructor`). ``states`` hold x_t
    before perception."""
    recon = NetworkReconstructor(denoiser, process)
    return _run(recon.reverse_step, denoiser, x, process, generator, callback, keep_states,
                perceive=recon.perceive)


def reproduction_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                         generator: GeneratorLike = None, callback: SampleCallback | None = None,
                         keep_states: bool = False) -> SampleTrajectory:
    """Cold diffusion's Algorithm 1, x_{t−1} = D(x̂_0, t−1), any family: x̂_0 is the
    network's posterior *mean*, so this is a posterior-mean agent, not the paper's
    serial-reproduction step (:func:`serial_sampler`)."""
    return _run(process.reproduction_step, denoiser, x, process, generator, callback,
                keep_states)


def cold_sampler(denoiser: Denoiser, x: Tensor, process: Diffusion,
                 generator: GeneratorLike = None, callback: SampleCallback | None = None,
                 keep_states: bool = False) -> SampleTrajectory:
    """Cold diffusion Algorithm 2 (improved sampling), any family."""
    return _run(process.cold_step, denoiser, x, process, generator, callback, keep_states)


SAMPLERS: dict[str, Callable[..., SampleTrajectory]] = {
    "ddpm": ddpm_sampler,
    "ddim": ddim_sampler,
    "serial": serial_sampler,
    "reproduction": reproduction_sampler,
    "cold": cold_sampler,
}


def get_sampler(name: str) -> Callable[..., SampleTrajectory]:
    """Look a sampler up by name; unknown names list the valid ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise unknown_name("sampler", name, SAMPLERS) from None
