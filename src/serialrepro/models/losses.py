"""Training losses: tiny callables, as in EDM's ``training/loss.py``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from serialrepro.models.diffusion import Diffusion
from serialrepro.models.noise import GeneratorLike


def diffusion_loss(model: nn.Module, process: Diffusion, x0: Tensor,
                   generator: GeneratorLike = None) -> Tensor:
    """DDPM's simplified objective (Ho et al. 2020, eq. 14) for any family and target.

    t ~ U over the kept timesteps, x_t = D(x_0, t; noise), loss = ‖f(x_t, t) − target‖²
    averaged, where the target is the noise (``epsilon``), x_0 (``sample``: x0
    regression, as cold diffusion trains) or v = √ᾱ_t ε − √(1−ᾱ_t) x_0
    (``v_prediction``, Salimans & Ho 2022).
    """
    t = torch.randint(process.num_steps, (x0.shape[0],), generator=generator,
                      device=generator.device if isinstance(generator, torch.Generator)
                      else x0.device).to(x0.device)
    noise = process.family.sample_noise(x0.shape, generator, x0.dtype, x0.device)
    t = process.schedule.timesteps.to(x0.device)[t]  # row i of the schedule: training step
    x_t = process.add_noise(x0, noise, t)
    target = process.training_target(x0, noise, t)
    return torch.mean((model(x_t, t) - target) ** 2)
