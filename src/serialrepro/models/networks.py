"""Denoisers: a time-conditioned MLP for vectors and a small UNet for 8×8 / 28×28 images.

Both map (x_t, t) to a tensor shaped like x_t (ε or x̂_0, as the process's prediction
type says). Time enters through the sinusoidal embedding of Vaswani et al. 2017 as used
by DDPM, followed by an MLP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from serialrepro.errors import UserInputError, unknown_name


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos(t ω_k), sin(t ω_k)], ω_k = max_period^(−k/(dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class _TimeMLP(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim, out), nn.SiLU(), nn.Linear(out, out))

    def forward(self, t: Tensor) -> Tensor:
        return self.net(timestep_embedding(t, self.dim))


class MLPDenoiser(nn.Module):
    """Residual MLP on flattened inputs, time added to every hidden layer (tiny-diffusion)."""

    def __init__(self, data_shape: Sequence[int], hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        d = math.prod(self.data_shape)
        self.inp = nn.Linear(d, hidden)
        self.time = _TimeMLP(hidden, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, d))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.inp(x.flatten(1))
        temb = self.time(t)
        for block in self.blocks:
            h = h + block(h + temb)
        return self.out(h).reshape(x.shape)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A small DDPM-style UNet: one residual block per level, stride-2 down, nearest up.

    ``channel_mults`` gives the width per level; every level but the last halves the
    resolution, so 8×8 → 4×4 and 28×28 → 14×14 → 7×7 work with the defaults chosen by
    :func:`make_denoiser`.
    """

    def __init__(self, data_shape: Sequence[int], base: int = 32,
                 channel_mults: Sequence[int] = (1, 2), groups: int = 8) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        c_in, h, w = self.data_shape
        if h % 2 ** (len(channel_mults) - 1) or w % 2 ** (len(channel_mults) - 1):
            raise UserInputError(
                f"UNet with {len(channel_mults)} levels cannot halve a {h}×{w} image evenly"
            )
        tdim = base * 4
        self.time = _TimeMLP(base, tdim)
        self.inp = nn.Conv2d(c_in, base, 3, padding=1)
        chans = [base * m for m in channel_mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = base
        for i, ch in enumerate(chans):
            self.down.append(_ResBlock(c, ch, tdim, groups))
            c = ch
            last = i == len(chans) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, 2, 1))
        self.mid = _ResBlock(c, c, tdim, groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            self.up.append(_ResBlock(c + ch, ch, tdim, groups))
            c = ch
            self.upsample.append(nn.Identity() if i == 0 else nn.Upsample(scale_factor=2))
        self.out = nn.Sequential(nn.GroupNorm(min(groups, c), c), nn.SiLU(),
                                 nn.Conv2d(c, c_in, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = self.time(t)
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, temb)
        for block, up in zip(self.up, self.upsample, strict=True):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            h = up(h)
        return self.out(h)


DENOISERS = ("mlp", "unet")


def make_denoiser(kind: str, data_shape: Sequence[int], **kwargs) -> nn.Module:
    """Build a denoiser by name; ``kwargs`` are its size options (hidden/depth, base/mults)."""
    if kind == "mlp":
        return MLPDenoiser(data_shape, **kwargs)
    if kind == "unet":
        if len(data_shape) != 3:
            raise UserInputError(
                f"the unet denoiser needs images [C, H, W]; got {tuple(data_shape)}")
        return UNet(data_shape, **kwargs)
    raise unknown_name("denoiser", kind, DENOISERS)
