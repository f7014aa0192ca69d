"""Sample-based distances between two point clouds x [n, D] and y [m, D].

- :func:`energy_distance`: Székely & Rizzo's E = 2 E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (V-statistic;
  zero iff the distributions agree).
- :func:`mmd`: squared maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012,
  biased V-statistic), bandwidth by the median heuristic unless given.
- :func:`sliced_wasserstein`: mean over random directions of the 1-D Wasserstein-p distance
  between projections (equal sample sizes; quantiles otherwise).
- :func:`grid_kl_bits`: KL(P‖Q) in bits between 2-D histograms on a shared grid, with the
  engine's ε convention (:func:`serialrepro.grid.scores.kl_bits`).

Every function refuses non-finite or empty input (one line, :class:`UserInputError`):
a NaN sample has no distance, and a histogram that silently drops it would score
garbage as a perfect match. The pairwise statistics are sums over blocks of at most
:data:`BLOCK` × :data:`BLOCK` pairs, so memory is linear in the sample count whatever
its size (the same sums as the full matrices, in another order). The median heuristic
takes the median of the pairwise distances between at most :data:`MEDIAN_POINTS` evenly
spaced points of each cloud (all of them below that size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from serialrepro.errors import UserInputError
from serialrepro.grid.scores import kl_bits

#: rows of each side of a block of pairwise distances (2048² float64 = 32 MiB)
BLOCK = 2048
#: points of each cloud the median-heuristic bandwidth is taken from
MEDIAN_POINTS = 2048


def check_finite(x: Tensor, name: str = "samples") -> Tensor:
    """Refuse an empty batch or one with NaN/infinite values, naming the first bad row."""
    if x.ndim == 0 or x.shape[0] == 0:
        raise UserInputError(f"{name} are empty; a distance needs at least one point")
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            raise UserInputError(f"{name} hold {int(bad.sum())} non-finite points (NaN or "
                                 f"infinity), first at row {first}; no distance is defined")
    return x


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    check_finite(x, "the samples")
    check_finite(y, "the reference points")
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double().to(x.device)
    if x.shape[1] != y.shape[1]:
        raise UserInputError(f"the samples have {x.shape[1]} values per point, the reference "
                             f"{y.shape[1]}")
    return x, y


def block_mean(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor],
               block: int = BLOCK) -> Tensor:
    """mean over all pairs (i, j) of ``fn(‖a_i − b_j‖)``, in blocks of ``block`` rows of
    each side (memory O(block²), not O(n·m))."""
    same = a is b  # a cloud against itself: the blocks above the diagonal count twice
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(0, a.shape[0], block):
        ai = a[i:i + block]
        for j in range(i if same else 0, b.shape[0], block):
            dist = torch.cdist(ai, b[j:j + block])
            total += fn(dist).sum() * (2 if same and j != i else 1)
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: Tensor, y: Tensor, block: int = BLOCK) -> float:
    """Energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (Székely & Rizzo 2013, eq. 2)."""
    x, y = _pair(x, y)
    def ident(d: Tensor) -> Tensor:
        return d

    cross = block_mean(x, y, ident, block)
    return float(2 * cross - block_mean(x, x, ident, block) - block_mean(y, y, ident, block))


def _spread(x: Tensor, k: int) -> Tensor:
    if x.shape[0] <= k:
        return x
    idx = torch.linspace(0, x.shape[0] - 1, k, device=x.device).round().long()
    return x[idx]


def median_bandwidth(x: Tensor, y: Tensor, points: int = MEDIAN_POINTS) -> float:
    """The median heuristic: the median distance between points of ``x`` and ``y`` (at
    most ``points`` evenly spaced ones of each), floored at 1e-12."""
    d = torch.cdist(_spread(x, points), _spread(y, points))
    return float(torch.median(d).clamp(min=1e-12))


def mmd(x: Tensor, y: Tensor, bandwidth: float | None = None, block: int = BLOCK) -> float:
    """Squared MMD with k(a, b) = exp(−‖a−b‖²/(2h²)); h = median pairwise distance if None
    (:func:`median_bandwidth`)."""
    x, y = _pair(x, y)
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y)
    scale = 1.0 / (2 * bandwidth**2)

    def k(d: Tensor) -> Tensor:
        return torch.exp(d.square_().mul_(-scale))

    return float(block_mean(x, x, k, block) + block_mean(y, y, k, block)
                 - 2 * block_mean(x, y, k, block))


def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 128, p: int = 2,
                       generator: torch.Generator | None = None) -> float:
    """(E_θ W_p^p(θᵀX, θᵀY))^{1/p} over uniform directions θ (Bonneel et al. 2015).
    Memory: the projections, (n + m) × ``n_projections`` values."""
    x, y = _pair(x, y)
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.device)
    px, py = torch.sort(x @ theta, dim=0).values, torch.sort(y @ theta, dim=0).values
    if px.shape[0] != py.shape[0]:
        m = max(px.shape[0], py.shape[0])
        q = torch.linspace(0, 1, m, dtype=torch.float64, device=x.device)
        px, py = _quantiles(px, q), _quantiles(py, q)
    return float(((px - py).abs() ** p).mean() ** (1 / p))


def _quantiles(sorted_cols: Tensor, q: Tensor) -> Tensor:
    """``torch.quantile(..., dim=0)`` (linear interpolation) of columns already sorted,
    without its input-size limit."""
    n = sorted_cols.shape[0]
    pos = q * (n - 1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo).unsqueeze(1)
    return sorted_cols[lo] * (1 - w) + sorted_cols[hi] * w


def histogram2d(x: Tensor, bins: int, lo: float, hi: float) -> Tensor:
    """Normalised 2-D histogram on [lo, hi]² (points outside are dropped), float64."""
    x = x.double()
    idx = torch.floor((x - lo) / (hi - lo) * bins).long()
    inside = ((idx >= 0) & (idx < bins)).all(dim=1)
    idx = idx[inside]
    h = torch.zeros(bins * bins, dtype=torch.float64, device=x.device)
    h.index_add_(0, idx[:, 0] * bins + idx[:, 1], torch.ones(idx.shape[0], dtype=torch.float64,
                                                             device=x.device))
    return (h / h.sum().clamp(min=1)).reshape(bins, bins)


def grid_kl_bits(samples: Tensor, data: Tensor, bins: int = 32,
                 bounds: tuple[float, float] | None = None) -> float:
    """KL(samples ‖ data) in bits between 2-D histograms on a shared square grid.

    With the engine's ε = 2.2e-16, sample mass in a cell the data leave empty costs about
    52 bits per unit mass: pick ``bins`` so the held-out data cover their support.
    """
    if samples.ndim != 2 or data.ndim != 2 or samples.shape[-1] != 2 or data.shape[-1] != 2:
        raise UserInputError("grid KL is defined for 2-D points [n, 2]")
    check_finite(samples, "the samples")
    check_finite(data, "the reference points")
    if bounds is None:
        lo = min(float(samples.min()), float(data.min()))
        hi = max(float(samples.max()), float(data.max()))
        bounds = (lo, hi + 1e-9)
    p = histogram2d(samples, bins, *bounds)
    q = histogram2d(data.to(samples.device), bins, *bounds)
    return float(kl_bits(p, q))


def distance_scores(x: Tensor, ref: Tensor, seed: int = 0) -> dict[str, float]:
    """Every distance of this module between ``x`` and ``ref`` (sliced Wasserstein's
    directions from ``seed``; grid KL only for 2-D points)."""
    g = torch.Generator().manual_seed(seed)
    out = {"energy_distance": energy_distance(x, ref), "mmd": mmd(x, ref),
           "sliced_wasserstein": sliced_wasserstein(x, ref, generator=g)}
    if x.shape[-1] == 2 and x.ndim == 2:
        out["grid_kl_bits"] = grid_kl_bits(x, ref)
    return out
