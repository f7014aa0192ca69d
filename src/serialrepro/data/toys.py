"""2-D toy data sets (as in tiny-diffusion, FFJORD and the score-SDE toy experiments).

Every function returns an [n, 2] float32 tensor drawn with an explicit generator, scaled
so each coordinate has roughly unit spread (what VP diffusion assumes of its data).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """sklearn's swiss roll, (t cos t, t sin t)/10 with t = 1.5π(1 + 2u), plus noise."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 10.0
    return (x + noise * torch.randn(n, 2, generator=generator)).float()


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> Tensor:
    """sklearn's two interleaved half circles, centred and scaled."""
    upper = torch.rand(n, generator=generator) < 0.5
    a = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper[:, None], torch.stack([torch.cos(a), torch.sin(a)], 1),
                    torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1))
    x = (x - torch.tensor([0.5, 0.25])) * 1.5
    return (x + noise * torch.randn(n, 2, generator=generator)).float()


def eight_gaussians(n: int, generator: torch.Generator | None = None, std: float = 0.1) -> Tensor:
    """Eight Gaussians of std ``std`` on a circle of radius 1.5 (FFJORD's ``8gaussians``)."""
    k = torch.randint(8, (n,), generator=generator)
    angle = 2 * math.pi * k / 8
    centres = 1.5 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    return (centres + std * torch.randn(n, 2, generator=generator)).float()


def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """FFJORD's checkerboard: uniform on the black squares of a 4×4 board on [−2, 2]²."""
    x1 = torch.rand(n, generator=generator) * 4 - 2
    x2 = torch.rand(n, generator=generator) - torch.randint(2, (n,), generator=generator) * 2.0
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1).float()


TOYS = {
    "swiss-roll": swiss_roll,
    "two-moons": two_moons,
    "eight-gaussians": eight_gaussians,
    "checkerboard": checkerboard,
}
