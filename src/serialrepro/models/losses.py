"""Training losses: tiny callables, as in EDM's ``training/loss.py``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from serialrepro.models.diffusion import Diffusion
from serialrepro.models.noise import GeneratorLike


def diffusion_loss(model: nn.Module, process: Diffusion, x0: Tensor,
                   generator: GeneratorLike = None) -> Tensor:
    """DDPM's simplified objective (Ho et al. 2020, eq. 14) for any family and target.

    t ~ U{0..T−1}, x_t = D(x_0, t; noise), loss = ‖f(x_t, t) − target‖² averaged, where the
    target is the noise (ε-prediction) or x_0 (x0 regression, as cold diffusion trains).
    """
    t = torch.randint(process.num_steps, (x0.shape[0],), generator=generator,
                      device=generator.device if isinstance(generator, torch.Generator)
                      else x0.device).to(x0.device)
    noise = process.family.sample_noise(x0.shape, generator, x0.dtype, x0.device)
    x_t = process.q_sample(x0, process.timesteps.to(x0.device)[t], noise)
    target = process.training_target(x0, noise)
    return torch.mean((model(x_t, process.timesteps.to(x0.device)[t]) - target) ** 2)
