"""A trained network as the reconstruction of one reproduction step (docs/design.md §1, §3).

A thin adapter in the manner of k-diffusion's ``external.py``: it turns any denoiser
``denoiser(x_t, t)`` (the network output for a batch and a [batch] tensor of training
timesteps) and a :class:`~serialrepro.models.diffusion.Diffusion` into the
:class:`serialrepro.reconstruction.Reconstructor` interface the grid and particle engines
also offer, so the paper's serial-reproduction step reads the same for all three:

* ``perceive(x, t)``: x̃ ~ K_t(· | x), one forward step of the family on this (respaced)
  schedule, i.e. ``family.degrade(x, α_t, noise)`` with α_t = ᾱ_t / ᾱ_{t−1} the step's own
  retention (for variance-preserving families x̃ = √α_t x + √(1−α_t) ε, DDPM eq. 2; for
  the keep-or-replace families each coordinate survives with probability α_t; for blur
  the heat flow runs for the step's own time, since τ(ᾱ) is linear in log ᾱ);
* ``reconstruct(y, t)``: the step-t reverse transition from y, a posterior *sample*: the
  DDPM posterior q(x_{t−1} | x_t = y, x̂_0) (Ho et al. 2020, eqs. 6–7) for
  variance-preserving families (exact in form for ``gaussian``, moment-matched for the
  others), and for families without a closed-form posterior their own reverse step,
  x_{t−1} = D(x̂_0, t−1) with fresh family noise (cold diffusion's Algorithm 1 step).

The sampler ``serial`` of :mod:`serialrepro.models.samplers` is the loop over
:func:`serialrepro.reconstruction.serial` with this adapter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from serialrepro.models.diffusion import Diffusion
from serialrepro.models.noise import GeneratorLike

Denoiser = Callable[[Tensor, Tensor], Tensor]


def as_pair(result) -> tuple[Tensor, Tensor]:
    """(x_{t−1}, x̂_0) from a reverse step returning a pair or a diffusers-style output."""
    if hasattr(result, "prev_sample"):
        return result.prev_sample, result.pred_original_sample
    prev, x0 = result
    return prev, x0


class NetworkReconstructor:
    """The network's step-t reverse transition as a :class:`~serialrepro.reconstruction.
    Reconstructor` over batches of tensors; ``t`` is a training timestep kept by
    ``process``."""

    def __init__(self, denoiser: Denoiser, process: Diffusion) -> None:
        self.denoiser = denoiser
        self.process = process
        fam = process.family
        # the step-t posterior sample where the family has one (DDPM eqs. 6–7), else the
        # family's own reverse step (reconstruct x̂_0, degrade it to t−1)
        self.reverse_step = (process.ddpm_step if fam.variance_preserving
                             else process.reproduction_step)

    def step_alpha(self, t: int, like: Tensor) -> Tensor:
        """α_t = ᾱ_t / ᾱ_{t−1}: the retention of the single forward step into ``t``."""
        # the kept step's table (process.alphas is the training schedule's, as diffusers')
        alpha = self.process.schedule.alphas[self.process.index_of(int(t))]
        return alpha.to(dtype=like.dtype, device=like.device)

    def perceive(self, x: Tensor, t: int, generator: GeneratorLike = None) -> Tensor:
        """x̃ ~ K_t(· | x): one forward step of the family from level t−1 to level t."""
        fam = self.process.family
        noise = fam.sample_noise(x.shape, generator, x.dtype, x.device)
        return fam.degrade(x, self.step_alpha(t, x), noise)

    def reverse(self, y: Tensor, t: int, generator: GeneratorLike = None,
                model_output: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(x_{t−1}, x̂_0) of the step-t reverse transition from y (``model_output``: the
        network already evaluated at (y, t))."""
        if model_output is None:
            t_batch = torch.full((y.shape[0],), int(t), dtype=torch.long, device=y.device)
            model_output = self.denoiser(y, t_batch)
        return as_pair(self.reverse_step(model_output, int(t), y, generator))

    def reconstruct(self, y: Tensor, t: int, generator: GeneratorLike = None) -> Tensor:
        """x_{t−1} ~ the step-t reverse transition from y (a posterior sample)."""
        return self.reverse(y, t, generator)[0]
