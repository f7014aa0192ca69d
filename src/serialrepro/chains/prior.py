"""Densities of chain values: the late-iteration KDE (the agents' prior when the chains
have converged) and per-iteration densities, each normalised over the data's domain in
data units.

* **linear data** — a Gaussian KDE (``scipy.stats.gaussian_kde``; Scott's rule in 2-D and
  more, cross-validated in 1-D), which integrates to 1 over ℝ^D; tables and figures
  evaluate it on a grid reaching five bandwidths past the data, which holds all but
  < 10⁻⁶ of its mass. It is *variance-corrected* (Jones 1991): a plain KDE has the data's
  covariance plus the kernel's, f²Σ, which as an agent's prior biases the fitted noise
  level low; shrinking the data about their mean by 1/√(1 + f²) first keeps Σ.
* **circular data** — the wrapped-normal KDE f(u) = (1/N) Σ_i Σ_k φ_h(u − u_i − k) over
  one turn, k the images needed for the bandwidth h, so ∫ f = 1 over one turn; in data
  units the density is f/P over [origin, origin + P).
* **bandwidth (1-D)** — Scott's rule on the (wrapped) spread oversmooths several modes
  (with three categories on a colour wheel it spans them), so the 1-D bandwidth is chosen
  by leave-one-out likelihood cross-validation (Silverman 1986, §3.4.4) between
  Scott/50 and Scott, on a binned KDE (:data:`CV_BINS` bins, one FFT convolution per
  candidate). Observations in the same bin are left out together, so values recorded at
  a resolution (integer degrees) do not drive h to zero; h is at least two bins.
* **modes** — local maxima of the density on a fine grid holding at least
  :data:`MODE_FRACTION` of the highest peak and (1-D) a prominence of at least
  :data:`MODE_PROMINENCE` of their height: several modes mean one attractor (an AR(1)
  fit) is a poor model of the chains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import gaussian_kde

from serialrepro.chains.coordinates import Coordinates, wrap
from serialrepro.circular import circular_mean
from serialrepro.errors import UserInputError
from serialrepro.grid.space import GridSpace

#: a local maximum counts as a mode when it reaches this fraction of the highest one
MODE_FRACTION = 0.1
#: ... and (1-D) rises this fraction of its height above its higher bounding valley
MODE_PROMINENCE = 0.2
#: grid points per axis of density tables (1-D, 2-D)
GRID_1D, GRID_2D = 721, 90
#: bins of the cross-validated 1-D bandwidth and the number of candidate bandwidths
CV_BINS, CV_CANDIDATES = 4096, 30


def cv_bandwidth(u: np.ndarray, circular: bool, upper: float) -> float:
    """Leave-one-out likelihood cross-validated bandwidth of a 1-D Gaussian KDE of u [N]
    (unit coordinates; one turn = 1 when ``circular``), searched in [upper/50, upper]
    (module docstring)."""
    u = np.asarray(u, dtype=np.float64)
    n = len(u)
    if circular:
        lo_edge, width = -0.5, 1.0
    else:
        lo_edge, width = u.min() - 4 * upper, (u.max() - u.min()) + 8 * upper
    if not width > 0:
        return upper
    g = CV_BINS
    b = np.clip(((u - lo_edge) / width * g).astype(np.int64), 0, g - 1)
    counts = np.bincount(b, minlength=g).astype(np.float64)
    m = 2 * g if not circular else g  # zero padding: no wrap-around for linear data
    c_pad = np.zeros(m)
    c_pad[:g] = counts
    fc = np.fft.rfft(c_pad)
    off = np.arange(m, dtype=np.float64)
    off = np.where(off > m // 2, off - m, off) * (width / g)  # signed bin offsets
    cands = np.geomspace(max(upper / 50, 2 * width / g), upper, CV_CANDIDATES)
    occupied = counts > 0
    best, best_ll = upper, -np.inf
    for h in cands:  # a few dozen candidates, one FFT each
        images = np.arange(-(int(4 * h) + 1), int(4 * h) + 2) if circular else np.zeros(1)
        z = (off[:, None] - images[None]) / h
        kern = np.exp(-0.5 * z * z).sum(1) / (h * np.sqrt(2 * np.pi))
        dens_sum = np.fft.irfft(fc * np.fft.rfft(kern), m)[:g]
        loo = (dens_sum - counts * kern[0])[occupied] / np.maximum(n - counts[occupied], 1)
        if (loo <= 0).any():
            continue
        ll = float((counts[occupied] * np.log(loo)).sum())
        if ll > best_ll:
            best, best_ll = float(h), ll
    return best


@dataclass
class PriorEstimate:
    """A KDE in unit coordinates: ``density`` integrates to 1 over ℝ^D (linear) or over
    one turn (circular)."""

    circular: bool
    n: int
    bandwidth: float  # unit coordinates (circular: the wrapped-normal std; linear: Scott)
    kde: gaussian_kde | None = None
    points: np.ndarray | None = None  # circular: the data [N] in turns

    def density(self, points: np.ndarray) -> np.ndarray:
        """Density at unit-coordinate points [N, D]."""
        pts = np.asarray(points, dtype=np.float64)
        if not self.circular:
            return self.kde(pts.T)
        return wrapped_normal_kde(self.points, pts[:, 0], self.bandwidth)

    def on_grid(self, space: GridSpace) -> torch.Tensor:
        """Probabilities of the grid cells (sum 1), for the model fit."""
        pts = space.points().numpy()
        p = np.maximum(self.density(pts), 0.0)
        if not p.sum() > 0:
            raise UserInputError("the estimated prior has no mass on the model grid")
        return torch.from_numpy(p / p.sum()).reshape(space.shape)


def wrapped_normal_kde(data: np.ndarray, at: np.ndarray, h: float,
                       block: int = 1 << 22) -> np.ndarray:
    """(1/N) Σ_i Σ_k φ_h(at − data_i − k) on the unit circle; blocks of ``at`` bound the
    [points, N] intermediate to ``block`` elements."""
    data = np.asarray(data, dtype=np.float64)
    at = np.asarray(at, dtype=np.float64)
    images = np.arange(-(int(np.ceil(4 * h)) + 1), int(np.ceil(4 * h)) + 2)
    out = np.empty(len(at))
    step = max(1, block // max(1, len(data) * len(images)))
    norm = 1.0 / (len(data) * h * np.sqrt(2 * np.pi))
    for s in range(0, len(at), step):
        d = wrap(at[s:s + step, None] - data[None])  # [P, N]
        z = (d[..., None] - images) / h  # [P, N, K]
        out[s:s + step] = np.exp(-0.5 * z * z).sum((1, 2)) * norm
    return out


def estimate_prior(values: np.ndarray, circular: bool = False) -> PriorEstimate:
    """KDE of values [N, D] in unit coordinates (Scott's rule; module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v).any(-1)]
    n, d = v.shape
    if n < d + 2:
        raise UserInputError(f"only {n} late values: too few for a density estimate")
    if np.linalg.matrix_rank(np.cov(v.T).reshape(d, d)) < d:
        raise UserInputError("the late values do not vary along every axis; no density estimate")
    if not circular:
        kde = gaussian_kde(v.T)
        f = float(kde.factor)  # kernel covariance = f² × data covariance
        if d == 1:
            sd = float(v[:, 0].std(ddof=1))
            f = cv_bandwidth(v[:, 0], False, f * sd) / sd
        # variance correction (Jones 1991): shrink the data about their mean by
        # A = 1/√(1 + f²) so the KDE keeps the data's covariance instead of adding f²Σ
        a = 1.0 / np.sqrt(1.0 + f * f)
        m = v.mean(0)
        shrunk = m + a * (v - m)
        kde = gaussian_kde(shrunk.T, bw_method=f)
        bw = float(np.sqrt(np.mean(np.diag(kde.covariance))))
        return PriorEstimate(False, n, bw, kde=kde)
    dev = wrap(v[:, 0] - circular_mean(v[:, 0]))
    scott = max(float(n ** (-1.0 / 5.0) * dev.std(ddof=1)), 1e-6)
    bw = cv_bandwidth(v[:, 0], True, scott)
    return PriorEstimate(True, n, bw, points=v[:, 0].copy())


def density_grid_1d(prior: PriorEstimate, coords: Coordinates,
                    unit_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x [G] in data units, density [G] per data unit) over the domain: one period
    starting at the data's origin (both ends included) or the data ± 5 bandwidths."""
    if coords.circular:
        x = np.linspace(coords.origin, coords.origin + coords.scale, GRID_1D)
        return x, prior.density(coords.to_unit(x)[:, None]) / coords.scale
    u = unit_values[~np.isnan(unit_values)]
    g = np.linspace(u.min() - 5 * prior.bandwidth, u.max() + 5 * prior.bandwidth, GRID_1D)
    return coords.from_unit(g[:, None])[:, 0], prior.density(g[:, None]) / coords.scale


def density_grid_2d(prior: PriorEstimate, coords: Coordinates, unit_values: np.ndarray,
                    n: int = GRID_2D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x [n], y [n] data units, density [n, n] per data unit², axis 0 along x) over the
    data ± 5 bandwidths."""
    u = unit_values[~np.isnan(unit_values).any(-1)][:, :2]
    pad = 5 * prior.bandwidth
    gx = np.linspace(u[:, 0].min() - pad, u[:, 0].max() + pad, n)
    gy = np.linspace(u[:, 1].min() - pad, u[:, 1].max() + pad, n)
    mesh = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
    dens = prior.density(mesh).reshape(n, n) / coords.scale**2
    x = coords.from_unit(np.c_[gx, np.zeros(n)])[:, 0]
    y = coords.from_unit(np.c_[np.zeros(n), gy])[:, 1]
    return x, y, dens


def count_modes(density: np.ndarray, circular: bool = False) -> int:
    """Modes of a density on a grid (1-D [G] or 2-D [G, G]): local maxima reaching
    :data:`MODE_FRACTION` of the highest; in 1-D each must also rise above the higher of
    its two bounding valleys by :data:`MODE_PROMINENCE` of its height (topographic
    prominence, ``scipy.signal.peak_prominences``), so a wiggle of a flat top is no mode.
    The circular 1-D grid wraps (its last point repeats the first)."""
    from scipy.signal import find_peaks

    f = np.asarray(density, dtype=np.float64)
    top = f.max()
    if not top > 0:
        return 0
    if f.ndim == 1:
        if circular:
            g = f[:-1]
            n = len(g)
            tiled = np.tile(g, 3)  # peaks of the middle copy see their wrapped neighbours
            peaks, props = find_peaks(tiled, height=MODE_FRACTION * top, prominence=0)
            mid = (peaks >= n) & (peaks < 2 * n)
            peaks, prom = peaks[mid], props["prominences"][mid]
            if len(peaks) == 0:  # a flat-topped or constant density: one mode
                return 1
            return int(max(1, (prom >= MODE_PROMINENCE * tiled[peaks]).sum()))
        padded = np.r_[0.0, f, 0.0]  # the density falls to 0 beyond the grid
        peaks, props = find_peaks(padded, height=MODE_FRACTION * top, prominence=0)
        ok = props["prominences"] >= MODE_PROMINENCE * padded[peaks]
        return int(max(1, ok.sum()))
    pad = np.pad(f, 1, constant_values=-np.inf)
    core = pad[1:-1, 1:-1]
    nbrs = [pad[1 + dx:pad.shape[0] - 1 + dx, 1 + dy:pad.shape[1] - 1 + dy]
            for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    peak = np.all([core >= nb for nb in nbrs], axis=0) & (core >= MODE_FRACTION * top)
    return int(peak.sum())


def iteration_densities(unit: np.ndarray, coords: Coordinates, bins: int,
                        edges: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram density per iteration of 1-D values [C, I, 1]: (bin edges [bins + 1] in
    data units, density [I, bins] per data unit, each row integrating to 1 over the
    domain: one period for circular data, the data's range otherwise; given ``edges`` are
    reused, values outside them counted in the end bins)."""
    v = unit[..., 0]
    x = coords.from_unit(v) if coords.circular else coords.from_unit(unit)[..., 0]
    if edges is not None:
        bins = len(edges) - 1
    elif coords.circular:
        edges = np.linspace(coords.origin, coords.origin + coords.scale, bins + 1)
    else:
        lo, hi = np.nanmin(x), np.nanmax(x)
        pad = 1e-9 * max(hi - lo, 1.0)
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
    width = np.diff(edges)
    out = np.zeros((v.shape[1], bins))
    ok = ~np.isnan(x)
    idx = np.clip(np.searchsorted(edges, np.where(ok, x, edges[0]), side="right") - 1, 0,
                  bins - 1)
    it = np.broadcast_to(np.arange(v.shape[1])[None], v.shape)
    np.add.at(out, (it[ok], idx[ok]), 1.0)
    n = np.maximum(out.sum(1, keepdims=True), 1.0)
    return edges, out / n / width[None]
