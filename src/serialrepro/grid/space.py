"""Discretised state spaces: the authors' "paper grid" and proper torus grids.

Both live on the unit torus [−0.5, 0.5)^D with minimum-image offsets.

* The **paper grid** (docs/design.md §2) has coordinates −0.5, −0.5 + h, …, 0.5 on each axis,
  *including both endpoints*, which are the same point of the torus. Kernels on it are
  not circulant, so only the dense backend applies. ``h = 0.04`` gives 26 points per
  axis, ``h = 0.025`` gives 41.
* A **torus grid** has n points per axis, coordinates −0.5 + i/n, spacing 1/n. Every
  translation-invariant kernel on it is circulant, which the FFT backend exploits.

Distributions over a space are tensors of shape ``space.shape`` (n per axis), float64
by default; flattened index order is row-major (C order) over the axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from serialrepro.errors import UserInputError

GRID_KINDS = ("paper", "torus")


@dataclass(frozen=True)
class GridSpace:
    """A regular grid on the unit torus in ``dims`` dimensions."""

    kind: str
    n: int
    dims: int = 2
    #: paper grid spacing (the torus grid's spacing is always 1/n)
    h: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in GRID_KINDS:
            raise UserInputError(
                f"unknown grid kind {self.kind!r}; valid choices: {', '.join(GRID_KINDS)}"
            )
        if self.dims not in (1, 2, 3):
            raise UserInputError(f"grid dimension {self.dims!r} is not supported; use 1, 2 or 3")
        if not isinstance(self.n, int) or self.n < 2:
            raise UserInputError(f"a grid needs at least 2 points per axis, got {self.n!r}")

    # -- constructors -----------------------------------------------------------------
    @classmethod
    def paper(cls, h: float, dims: int = 2) -> GridSpace:
        """The authors' grid −0.5:h:0.5 (both endpoints included)."""
        if not (isinstance(h, int | float) and math.isfinite(h) and 0 < h <= 0.5):
            raise UserInputError(f"paper grid spacing h={h!r} is invalid; it must lie in (0, 0.5]")
        # MATLAB's colon operator includes the end point when it is within rounding of it.
        n = int(math.floor(1.0 / h + 1e-9)) + 1
        return cls("paper", n, dims, float(h))

    @classmethod
    def torus(cls, n: int, dims: int = 2) -> GridSpace:
        """n points per axis with spacing 1/n."""
        return cls("torus", int(n), dims)

    # -- geometry ---------------------------------------------------------------------
    @property
    def spacing(self) -> float:
        if self.kind == "paper":
            return self.h if self.h is not None else 1.0 / (self.n - 1)
        return 1.0 / self.n

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n,) * self.dims

    @property
    def size(self) -> int:
        """M, the number of grid points."""
        return self.n**self.dims

    @property
    def supports_fft(self) -> bool:
        return self.kind == "torus"

    @property
    def label(self) -> str:
        if self.kind == "paper":
            return f"paper:{self.spacing:g}" + ("" if self.dims == 2 else f"x{self.dims}d")
        return f"torus:{self.n}" + ("" if self.dims == 2 else f"x{self.dims}d")

    def coords(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Coordinates of the points along one axis."""
        idx = torch.arange(self.n, dtype=dtype, device=device)
        return -0.5 + idx * self.spacing

    def points(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """All grid points, shape [M, D], in row-major order (axis 0 varies slowest)."""
        c = self.coords(dtype, device)
        mesh = torch.meshgrid(*([c] * self.dims), indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=-1)

    def axis_meshes(self, dtype: torch.dtype = torch.float64, device=None) -> list[Tensor]:
        """Per-axis coordinate arrays of shape ``self.shape`` (``indexing='ij'``)."""
        c = self.coords(dtype, device)
        return list(torch.meshgrid(*([c] * self.dims), indexing="ij"))

    def uniform(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        return torch.full(self.shape, 1.0 / self.size, dtype=dtype, device=device)

    # -- offsets ----------------------------------------------------------------------
    def dense_offsets(self, dtype: torch.dtype = torch.float64, device=None) -> list[Tensor]:
        """Minimum-image offsets d = y − x, one [M, M] tensor per axis (rows y, columns x).

        Paper grid: the offset per axis among (y − x) + {−1, 0, 1} with the smallest
        magnitude, ties going to the first in that order (as a loop over the 9 shifts
        keeping the first minimum would). Torus grid: computed from integer index
        differences, mapped to [−n/2, n/2), so the dense and FFT backends agree exactly.
        """
        pts = self.points(dtype, device)
        out = []
        for axis in range(self.dims):
            if self.kind == "paper":
                raw = pts[:, axis].unsqueeze(1) - pts[:, axis].unsqueeze(0)
                out.append(minimum_image(raw))
            else:
                idx = torch.arange(self.size, device=device)
                stride = self.n ** (self.dims - 1 - axis)
                ia = (idx // stride) % self.n
                diff = (ia.unsqueeze(1) - ia.unsqueeze(0)) % self.n
                out.append(_wrap_index(diff, self.n).to(dtype) / self.n)
        return out

    def axis_offsets(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Minimum-image offsets d = y − x along one axis, shape [n, n] (rows y, columns x).

        Every axis has the same ones, and ``dense_offsets()[axis][i, j]`` equals
        ``axis_offsets()[y_axis, x_axis]`` for the points i = y, j = x (bitwise: the same
        arithmetic), so separable kernels can be built as Kronecker products.
        """
        if self.kind == "paper":
            c = self.coords(dtype, device)
            return minimum_image(c.unsqueeze(1) - c.unsqueeze(0))
        ia = torch.arange(self.n, device=device)
        diff = (ia.unsqueeze(1) - ia.unsqueeze(0)) % self.n
        return _wrap_index(diff, self.n).to(dtype) / self.n

    def circulant_offsets(self, dtype: torch.dtype = torch.float64, device=None) -> list[Tensor]:
        """Torus grids only: minimum-image offsets of every point from point 0, per axis,
        each of shape ``self.shape``. A circulant kernel is a function of these."""
        if not self.supports_fft:
            raise UserInputError("circulant offsets exist only on torus grids, not the paper grid")
        k = self.circulant_axis_offsets(dtype, device)
        return list(torch.meshgrid(*([k] * self.dims), indexing="ij"))

    def circulant_axis_offsets(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Torus grids only: minimum-image offsets of the n points of one axis from point 0,
        shape [n]; bitwise the column x = 0 of :meth:`axis_offsets` and the values of
        :meth:`circulant_offsets` along each axis (separable kernels are built from it)."""
        if not self.supports_fft:
            raise UserInputError("circulant offsets exist only on torus grids, not the paper grid")
        return _wrap_index(torch.arange(self.n, device=device), self.n).to(dtype) / self.n

    def nearest_index(self, points: Tensor) -> Tensor:
        """Flat (row-major) index of the grid point nearest to each point [..., D], with
        coordinates wrapped onto the torus [−0.5, 0.5) first (on the paper grid, whose two
        end points coincide on the torus, the index is clamped to the grid)."""
        x = torch.as_tensor(points, dtype=torch.float64)
        if x.shape[-1] != self.dims:
            raise UserInputError(f"points have dimension {x.shape[-1]}, the grid {self.dims}")
        wrapped = torch.remainder(x + 0.5, 1.0)  # in [0, 1)
        if self.kind == "paper":
            idx = torch.round(wrapped / self.spacing).long().clamp_(0, self.n - 1)
        else:
            idx = torch.round(wrapped * self.n).long() % self.n
        lin = torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
        for axis in range(self.dims):  # D ≤ 3 axes, not a loop over points
            lin = lin * self.n + idx[..., axis]
        return lin

    @cached_property
    def dense_bytes(self) -> int:
        """Memory a dense M×M float64 matrix needs."""
        return self.size * self.size * 8


def _wrap_index(diff: Tensor, n: int) -> Tensor:
    """Map index differences mod n to the signed range [−n/2, n/2) (n even) or
    [−(n−1)/2, (n−1)/2] (n odd)."""
    return torch.where(diff >= (n + 1) // 2, diff - n, diff)


def minimum_image(raw: Tensor) -> Tensor:
    """Among raw − 1, raw, raw + 1 the one of least magnitude (first one on ties)."""
    cands = torch.stack([raw - 1.0, raw, raw + 1.0])
    pick = torch.argmin(cands.abs(), dim=0, keepdim=True)
    return torch.gather(cands, 0, pick).squeeze(0)


def parse_grid(spec: str, dims: int = 2) -> GridSpace:
    """Parse ``paper:H`` or ``torus:N`` (the CLI's ``--grid``)."""
    kind, sep, value = str(spec).partition(":")
    if not sep or kind not in GRID_KINDS:
        raise UserInputError(
            f"grid {spec!r} is invalid; use paper:H (e.g. paper:0.04) or torus:N (e.g. torus:64)"
        )
    try:
        if kind == "paper":
            return GridSpace.paper(float(value), dims)
        n = int(value)
    except ValueError:
        raise UserInputError(
            f"grid {spec!r} is invalid; use paper:H (e.g. paper:0.04) or torus:N (e.g. torus:64)"
        ) from None
    return GridSpace.torus(n, dims)
