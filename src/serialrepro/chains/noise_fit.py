"""Maximum-likelihood perception level of a Bayesian agent, with an interval, from chain data.

The agent of :mod:`serialrepro.chains.agents` (prior q, noise family K_σ, response rule,
optional production noise) runs on a torus grid of the engine (docs/design.md §1, §3).
Observed transitions x → x' (unit coordinates: linear data in [−0.3, 0.3], circular data one
turn of [−0.5, 0.5)) are snapped to their nearest grid cells i → j and scored by

    log L(σ) = Σ_t log((1 − ε) T_σ(j_t | i_t) + ε/M),    ε = :data:`LAPSE` = 10⁻⁶,

the lapse keeping one impossible transition from giving −∞. No M×M matrix is built.

**Transition probabilities.** For the ``sample`` rule the transition is Post ∘ K, so

    T(j | i) = q_j Σ_y K(y | i) K(y | j) / (K q)(y)          (the column q ⊙ Kᵀ(K e_i ⊘ K q)).

* *separable path* (exact, used when the family declares a Kronecker form through
  :meth:`~serialrepro.families.NoiseFamily.grid_axis_terms` and has no rank-one term; no
  production noise): with K = Σ_k w_k F_k ⊗ F_k / Z (per-axis [n, n] factors F_k), the sum
  over y factors axis by axis. In 2-D, for every distinct pair of axis-1 cells (i₁, j₁),
  A(y₀) = Σ_{y₁} r(y₀, y₁) F_k[y₁, i₁] F_l[y₁, j₁] with r = 1/(K q) is one matrix product,
  and T(j | i) = q_j/(Z_i Z_j) Σ_{k,l} w_k w_l Σ_{y₀} F_k[y₀, i₀] F_l[y₀, j₀] A(y₀): O(n²)
  per distinct axis-1 pair plus O(n) per transition, exact to rounding (K q is computed
  by per-axis matrix products, so the tails are not lost to FFT round-off). This covers
  the Gaussian identity K(y−x)K(y−x') ∝ N(y; (x+x')/2, σ²/2) and more (laplace, uniform,
  bimodal, trimodal, von Mises) without the wrap-around error of a midpoint formula.
* *general path* (every grid family, every rule, production noise): for each distinct
  start cell the column T(· | i) is built with the engine's FFT kernel, q ⊙ Kᵀ(K e_i ⊘ K q)
  (``sample``; K q below :meth:`~serialrepro.grid.kernels.GridKernel.noise_floor` counts
  as impossible, as in :func:`serialrepro.grid.process.posterior`) or the scatter of
  K(· | i) onto the deterministic responses r(y) (``mean``: E[x | y] = K(x q)/K q, the
  circular mean on circles; ``map``: argmax K(y | ·) q, chunked over y, slow on large 2-D
  grids), then pushed through the production kernel; starts go in chunks of at most
  :data:`CHUNK` numbers. Cost O(distinct starts · M log M) per σ: fine in 1-D, slow for
  large 2-D grids (student-t, fades, production noise, ``mean``/``map`` in 2-D).

**Search and resolution.** log σ is profiled on a coarse grid of levels between the search
bounds (one grid cell and 0.5 for scale levels; 10⁻³ and 1 for weight levels, i.e.
families that refuse levels above 1: the fades), then refined by bounded Brent search.
A scale level is refitted on a finer torus until the cell is ≤ σ̂/:data:`RESOLUTION`
(automatic refinement), up to ``max_grid_n`` per axis (:data:`MAX_GRID_N`); ``refinements``
lists (grid_n, σ̂) of each pass. ``at_bound`` is true when σ̂ lies within one grid cell of
the lower limit (σ̂ < 2 cells) or at a search bound; every reason is also a plain-string
``warnings`` entry, as is a refinement stopped by the size limit.

**Interval (95 %).**
* ``profile`` — {σ : log L(σ) ≥ log L(σ̂) − χ²₁(0.95)/2} (drop 1.92), the ends by Brent's
  method. It treats transitions as the model says (a Markov likelihood) and the prior as
  known; it is too narrow when the independent units differ (e.g. participants with
  different σ).
* ``bootstrap`` — clustered percentile bootstrap: the independent units ``cluster``
  (participant, display, chain) are resampled with replacement, n_boot times. Refits are
  cheap: the per-transition log-likelihoods are computed once at :data:`BOOT_LEVELS`
  levels around σ̂ (three profile half-widths either side),
  every replicate's weighted profile is one matrix product, and its maximum is found on a
  cubic spline in log σ (the level range widens while > 1 % of replicates sit at its edge).
  The prior is held fixed (the interval is conditional on it).
* ``auto`` (default) — ``bootstrap`` when ``cluster`` is given, else ``profile``.

API::

    fit_noise_level(x, x_next, *, cluster=None, prior_density, family="gaussian",
                    rule="sample", production_sigma_unit=0.0, production_family="gaussian",
                    dims=None, circular=False, grid_n=None, max_grid_n=None, refine=True,
                    ci="auto", n_boot=200, seed=0, path="auto") -> NoiseFit
    simulate_fitted(fit, starts, n_iterations, *, prior_density, seed=0)
        -> array [n_chains, n_iterations + 1, d]
    transition_probs(space, family, sigma, q, i, j, *, rule="sample", ...) -> Tensor [N]

``prior_density(points [M, d]) -> [M]`` evaluates the agent's prior (unnormalised) at grid
points in unit coordinates; it is normalised on each grid. :class:`NoiseFit` holds the
level in unit coordinates; :meth:`NoiseFit.sigma_data`, :meth:`NoiseFit.ci_data` and
:meth:`NoiseFit.as_dict` convert to data units with the coordinate scale (data units per
unit; the period for circular data), for scale levels only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pandas as pd
import torch
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq, minimize_scalar
from scipy.sparse import csr_matrix
from scipy.stats import chi2
from torch import Tensor

from serialrepro.chains.agents import RULES
from serialrepro.chains.grid_chains import nearest_index
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import NoiseFamily, get_family
from serialrepro.grid.kernels import FFTKernel, GridKernel, make_kernel
from serialrepro.grid.process import inverse_above, posterior
from serialrepro.grid.space import GridSpace
from serialrepro.particles.rng import chain_blocks, pad_rows

#: lapse probability mixed into every transition probability (module docstring)
LAPSE = 1e-6
#: refine until the grid cell is ≤ σ̂ / RESOLUTION
RESOLUTION = 4
#: a refined grid has this many times the points per axis the current σ̂ needs
REFINE_MARGIN = 1.1
#: default grid points per axis (the previous analysis defaults) and the refinement limits
DEFAULT_GRID_N = {1: 200, 2: 48}
MAX_GRID_N = {1: 4096, 2: 512}
#: numbers per intermediate array (bounds the memory of every chunked computation)
CHUNK = 1 << 22
#: log-likelihood drop of the 95 % profile interval, χ²₁(0.95)/2
PROFILE_DROP = float(chi2.ppf(0.95, 1) / 2)
CI_METHODS = ("auto", "profile", "bootstrap")
PATHS = ("auto", "separable", "general")
#: levels (log σ) at which the bootstrap's per-transition log-likelihoods are computed
BOOT_LEVELS = 15
#: search bounds of weight levels (families refusing levels above 1)
WEIGHT_BOUNDS = (1e-3, 1.0)
#: upper search bound of scale levels (unit coordinates)
SCALE_UPPER = 0.5


@dataclass
class NoiseFit:
    """A fitted perception level (unit coordinates) with its 95 % interval and diagnostics."""

    family: str
    rule: str
    sigma_unit: float
    sigma_ci_unit: tuple[float, float]
    ci_method: str
    at_bound: bool
    grid_n: int
    cell_unit: float
    refinements: list[tuple[int, float]]
    profile: pd.DataFrame = field(repr=False)
    loglik: float
    n_transitions: int
    warnings: list[str]
    dims: int = 1
    circular: bool = False
    production_sigma_unit: float = 0.0
    production_family: str = "gaussian"
    level_is_scale: bool = True
    profile_ci_unit: tuple[float, float] = (math.nan, math.nan)
    n_clusters: int | None = None
    #: (prior_density, grid prior on the final grid): simulate_fitted reuses it for the same
    #: density function instead of evaluating it again
    _grid_prior: tuple[Callable, Tensor] | None = field(default=None, repr=False,
                                                         compare=False)

    def sigma_data(self, scale: float) -> float | None:
        """σ̂ in data units (scale: data units per unit; the period for circular data), or
        None for weight levels, which have no unit."""
        return self.sigma_unit * float(scale) if self.level_is_scale else None

    def ci_data(self, scale: float) -> tuple[float, float] | None:
        if not self.level_is_scale:
            return None
        lo, hi = self.sigma_ci_unit
        return (lo * float(scale), hi * float(scale))

    def profile_frame(self, scale: float | None = None) -> pd.DataFrame:
        """The evaluated log-likelihood profile, with a ``sigma_data`` column when ``scale``
        is given (scale levels only)."""
        out = self.profile.copy()
        if scale is not None and self.level_is_scale:
            out["sigma_data"] = out["sigma_unit"] * float(scale)
        return out

    def as_dict(self, scale: float | None = None) -> dict:
        """Plain values for ``summary.json``; data-unit entries when ``scale`` is given."""
        out = {
            "family": self.family, "rule": self.rule, "sigma_unit": self.sigma_unit,
            "sigma_ci_unit": list(self.sigma_ci_unit), "ci_method": self.ci_method,
            "at_bound": self.at_bound, "grid_n": self.grid_n, "cell_unit": self.cell_unit,
            "refinements": [[int(n), float(s)] for n, s in self.refinements],
            "loglik_cells": self.loglik,
            "mean_loglik_per_transition": self.loglik / max(self.n_transitions, 1),
            "n_transitions": self.n_transitions, "n_clusters": self.n_clusters,
            "profile_ci_unit": list(self.profile_ci_unit), "warnings": list(self.warnings),
        }
        if scale is not None:
            ci = self.ci_data(scale)
            out["sigma_data"] = self.sigma_data(scale)
            out["sigma_ci"] = list(ci) if ci is not None else None
        return out


# -- grids, priors, cells ------------------------------------------------------------------


def level_is_weight(family: NoiseFamily) -> bool:
    """True for families whose level is a mixture weight in [0, 1] (its declared bounds)."""
    return family.max_level <= 1.0


def grid_prior(space: GridSpace, prior_density: Callable[[np.ndarray], np.ndarray]) -> Tensor:
    """prior_density at the grid points, clipped at 0 and normalised, shape ``space.shape``."""
    pts = space.points().numpy()
    vals = np.asarray(prior_density(pts), dtype=np.float64).reshape(-1)
    if vals.shape != (space.size,):
        raise UserInputError(f"prior_density returned {vals.size} values for {space.size} "
                             "grid points; it must return one density per point")
    vals = np.where(np.isfinite(vals), np.maximum(vals, 0.0), 0.0)
    if not vals.sum() > 0:
        raise UserInputError("the prior density has no mass on the model grid")
    return torch.from_numpy(vals / vals.sum()).reshape(space.shape)


def _axis_index(space: GridSpace, flat: Tensor) -> list[Tensor]:
    n, d = space.n, space.dims
    return [(flat // n ** (d - 1 - a)) % n for a in range(d)]


def _circulant_gather(kernel: FFTKernel, centre: Tensor, sign: int) -> Tensor:
    """c[(y − x) mod n] over all y for each x in ``centre`` (sign +1: columns K(· | x)),
    or over all x for each y in ``centre`` (sign −1: rows K(y | ·)); [b, M], exact (one
    gather with per-axis broadcast indices)."""
    space = kernel.space
    n, d = space.n, space.dims
    ar = torch.arange(n)
    index = []
    for a, c in enumerate(_axis_index(space, centre)):
        ia = torch.remainder(sign * (ar[None, :] - c[:, None]), n)  # [b, n]
        index.append(ia.reshape(len(centre), *[n if k == a else 1 for k in range(d)]))
    return kernel.c[tuple(index)].reshape(len(centre), space.size)


def kernel_columns(kernel: GridKernel, idx: Tensor) -> Tensor:
    """K(· | x) for the flat cells ``idx`` [b] → [b, M] (non-negative)."""
    if isinstance(kernel, FFTKernel) and kernel.target is None:
        return _circulant_gather(kernel, idx, +1)
    basis = _one_hot(kernel.space, idx)
    return kernel.apply(basis).reshape(len(idx), -1).clamp_min(0.0)


def kernel_rows(kernel: GridKernel, idx: Tensor) -> Tensor:
    """K(y | ·) for the flat cells y in ``idx`` [b] → [b, M] (non-negative)."""
    if isinstance(kernel, FFTKernel) and kernel.target is None:
        return _circulant_gather(kernel, idx, -1)
    basis = _one_hot(kernel.space, idx)
    return kernel.apply_t(basis).reshape(len(idx), -1).clamp_min(0.0)


def _one_hot(space: GridSpace, idx: Tensor) -> Tensor:
    out = torch.zeros((len(idx), space.size), dtype=torch.float64)
    out[torch.arange(len(idx)), idx] = 1.0
    return out.reshape(len(idx), *space.shape)


def _rows_per_chunk(width: int) -> int:
    return max(1, CHUNK // max(1, width))


# -- transition probabilities --------------------------------------------------------------


def response_indices(kernel: GridKernel, q: Tensor, rule: str, circular: bool) -> Tensor:
    """Flat index of the deterministic response r(y) to every grid percept y, O(M log M)
    for ``mean`` (E[x | y] = K(x q)/K q per axis, or the circular mean) and chunked over y
    for ``map``. A percept that no prior cell can produce is reported as perceived."""
    space = kernel.space
    m = space.size
    kq = kernel.apply(q)
    ok = (kq > kernel.noise_floor(kq)).reshape(-1)
    if rule == "mean":
        pts = space.points()
        if circular:
            ang = 2 * math.pi * pts
            s = torch.stack([kernel.apply(q * torch.sin(ang[:, a]).reshape(space.shape))
                             .reshape(-1) for a in range(space.dims)], -1)
            c = torch.stack([kernel.apply(q * torch.cos(ang[:, a]).reshape(space.shape))
                             .reshape(-1) for a in range(space.dims)], -1)
            resp = torch.atan2(s, c) / (2 * math.pi)
        else:
            inv = inverse_above(kq, kernel.noise_floor(kq)).reshape(-1)
            resp = torch.stack([kernel.apply(q * pts[:, a].reshape(space.shape)).reshape(-1)
                                * inv for a in range(space.dims)], -1)
        idx = nearest_index(space, resp)
    elif rule == "map":
        idx = torch.empty(m, dtype=torch.long)
        step = _rows_per_chunk(m)
        qf = q.reshape(1, -1)
        for s0 in range(0, m, step):
            ys = torch.arange(s0, min(s0 + step, m))
            idx[s0:s0 + len(ys)] = torch.argmax(kernel_rows(kernel, ys) * qf, dim=1)
    else:
        raise UserInputError(f"response rule {rule!r} has no deterministic response")
    return torch.where(ok, idx, torch.arange(m))


#: K q below this is dropped (1/K q would overflow); the perceptions it drops have
#: probability below M · _KQ_TINY / q_i from a start cell i
_KQ_TINY = 1e-290


def _reciprocal(kq: Tensor, floor) -> Tensor:
    """1/K q where K q exceeds the FFT round-off ``floor`` and :data:`_KQ_TINY`, else 0
    (such percepts count as impossible): the engine's own factor of Bayes' rule,
    :func:`serialrepro.grid.process.inverse_above`."""
    return inverse_above(kq, max(float(floor), _KQ_TINY))


def _separable_terms(space: GridSpace, family: NoiseFamily, sigma: float):
    """(w_k, F_k [n, n]) with K = Σ_k w_k ⊗F_k / Z, or None when the family has no exact
    Kronecker form on this grid (no axis terms, or a rank-one term)."""
    if space.dims not in (1, 2) or family.grid_rank_one_coef(sigma) != 0:
        return None
    terms = family.grid_axis_terms(space.axis_offsets(), sigma, space.spacing)
    if terms is None:
        return None
    if len(terms) == 1:  # the column-normalised factor, as DenseKernel builds it
        f = terms[0][1]
        return [(1.0, f / f.sum(dim=0, keepdim=True))]
    return [(float(w), f) for w, f in terms]


def _kron_apply(f: Tensor, g: Tensor) -> Tensor:
    """(f ⊗ … ⊗ f) g for g of shape [n]*D."""
    for a in range(g.ndim):
        g = torch.movedim(torch.tensordot(f, g, dims=([1], [a])), 0, a)
    return g


def _separable_probs(space, terms, q, i, j) -> Tensor:
    """T(j | i) for the sample rule by the per-axis factorisation (module docstring)."""
    d = space.dims
    n = space.n
    # Z(x) = Σ_k w_k Π_axis Σ_y F_k[y, x_axis]
    z = torch.zeros(space.shape, dtype=torch.float64)
    for w, f in terms:
        s = f.sum(0)
        z = z + w * (s if d == 1 else s[:, None] * s[None, :])
    kq = torch.zeros(space.shape, dtype=torch.float64)
    for w, f in terms:
        kq = kq + w * _kron_apply(f, q / z)
    r = _reciprocal(kq, 0.0)
    ia, ja = _axis_index(space, i), _axis_index(space, j)
    out = torch.zeros(len(i), dtype=torch.float64)
    step = _rows_per_chunk(n)
    if d == 2:
        key = ia[1] * n + ja[1]
        pkeys, pinv = torch.unique(key, return_inverse=True)
        order = torch.argsort(pinv)
        bounds = torch.searchsorted(pinv[order], torch.arange(0, len(pkeys) + step, step))
    for (wk, fk), (wl, fl) in product(terms, terms):
        fkt, flt = fk.T.contiguous(), fl.T.contiguous()  # row x: the factor's column
        if d == 1:
            for s0 in range(0, len(i), step):
                sl = slice(s0, s0 + step)
                out[sl] += wk * wl * (fkt[ia[0][sl]] * flt[ja[0][sl]] * r).sum(1)
            continue
        rt = r.T.contiguous()
        for c, p0 in enumerate(range(0, len(pkeys), step)):
            pk = pkeys[p0:p0 + step]
            # A[p, y0] = Σ_{y1} r[y0, y1] F_k[y1, i1_p] F_l[y1, j1_p]
            a_blk = (fkt[pk // n] * flt[pk % n]) @ rt
            sel_all = order[bounds[c]:bounds[c + 1]]
            for s0 in range(0, len(sel_all), step):
                sel = sel_all[s0:s0 + step]
                val = (fkt[ia[0][sel]] * flt[ja[0][sel]] * a_blk[pinv[sel] - p0]).sum(1)
                out[sel] += wk * wl * val
    zf, qf = z.reshape(-1), q.reshape(-1)
    return (out * qf[j] / (zf[i] * zf[j])).clamp_min_(0.0)


def _general_probs(space, family, sigma, q, i, j, rule, production_sigma, production_family,
                   circular) -> Tensor:
    """T(j | i) from the columns T(· | i) of each distinct start, built with FFT kernels."""
    kernel = make_kernel(space, family, sigma, "fft")
    prod = (make_kernel(space, production_family, production_sigma, "fft")
            if production_sigma > 0 else None)
    m = space.size
    if rule == "sample":
        kq = kernel.apply(q)
        r = _reciprocal(kq, kernel.noise_floor(kq))
        resp = None
    else:
        resp = response_indices(kernel, q, rule, circular)
    starts, inv = torch.unique(i, return_inverse=True)
    order = torch.argsort(inv)
    step = _rows_per_chunk(m)
    bounds = torch.searchsorted(inv[order], torch.arange(0, len(starts) + step, step))
    out = torch.empty(len(i), dtype=torch.float64)
    for c, s0 in enumerate(range(0, len(starts), step)):
        idx = starts[s0:s0 + step]
        col = kernel_columns(kernel, idx)  # K(· | i), [b, M]
        if resp is None:  # Post K(· | i), the engine's posterior of each column
            w = posterior(col.reshape(len(idx), *space.shape), kernel, q, inverse=r
                          ).reshape(len(idx), m)
        else:
            w = torch.zeros_like(col).index_add_(1, resp, col)
        if prod is not None:
            w = prod.apply(w.reshape(len(idx), *space.shape)).reshape(len(idx), m)
        sel = order[bounds[c]:bounds[c + 1]]
        out[sel] = w[inv[sel] - s0, j[sel]]
    return out.clamp_min_(0.0)


def transition_probs(
    space: GridSpace, family: str | NoiseFamily, sigma: float, q: Tensor, i: Tensor, j: Tensor,
    *, rule: str = "sample", production_sigma: float = 0.0,
    production_family: str | NoiseFamily = "gaussian", circular: bool = False,
    path: str = "auto",
) -> Tensor:
    """T_σ(j | i) of the agent for flat cell pairs (i → j) on a torus grid, without the M×M
    matrix (module docstring). ``path``: ``separable`` (sample rule without production
    noise, families with a Kronecker form), ``general`` (everything), ``auto`` (separable
    where it applies)."""
    fam = get_family(family)
    sigma = fam.check_sigma(sigma)
    if rule not in RULES:
        raise unknown_name("response rule", rule, RULES)
    if path not in PATHS:
        raise unknown_name("likelihood path", path, PATHS)
    if not space.supports_fft:
        raise UserInputError(f"the noise fit needs a torus grid, not {space.label}")
    q = torch.as_tensor(q, dtype=torch.float64).reshape(space.shape)
    i = torch.as_tensor(i, dtype=torch.long).reshape(-1)
    j = torch.as_tensor(j, dtype=torch.long).reshape(-1)
    terms = None
    if path != "general" and rule == "sample" and production_sigma == 0:
        terms = _separable_terms(space, fam, sigma)
    if path == "separable" and terms is None:
        raise UserInputError(
            f"the separable likelihood path needs the sample rule without production noise "
            f"and a family with a Kronecker grid form; {fam.name!r} (rule {rule!r}) has none")
    if terms is not None:
        return _separable_probs(space, terms, q, i, j)
    return _general_probs(space, fam, sigma, q, i, j, rule, float(production_sigma),
                          get_family(production_family), circular)


# -- the fit -------------------------------------------------------------------------------


@dataclass
class _GridData:
    """Everything of one grid that does not depend on σ."""

    space: GridSpace
    q: Tensor
    pi: Tensor  # distinct (start, end) cell pairs
    pj: Tensor
    counts: Tensor  # transitions per pair
    inverse: Tensor  # pair of each transition


def _grid_data(n: int, dims: int, u: np.ndarray, v: np.ndarray, prior_density) -> _GridData:
    space = GridSpace.torus(n, dims)
    q = grid_prior(space, prior_density)
    i = nearest_index(space, torch.from_numpy(u))
    j = nearest_index(space, torch.from_numpy(v))
    pairs, inverse, counts = torch.unique(i * space.size + j, return_inverse=True,
                                          return_counts=True)
    return _GridData(space, q, pairs // space.size, pairs % space.size,
                     counts.to(torch.float64), inverse)


class _Objective:
    """log L as a function of log σ on one grid, per distinct pair, with a cache."""

    def __init__(self, g: _GridData, fam, rule, tau, pfam, circular, path):
        self.g, self.fam, self.rule, self.tau, self.pfam = g, fam, rule, tau, pfam
        self.circular, self.path = circular, path
        self.cache: dict[float, Tensor] = {}

    def pair_loglik(self, log_sigma: float) -> Tensor:
        key = float(log_sigma)
        if key not in self.cache:
            g = self.g
            p = transition_probs(g.space, self.fam, math.exp(key), g.q, g.pi, g.pj,
                                 rule=self.rule, production_sigma=self.tau,
                                 production_family=self.pfam, circular=self.circular,
                                 path=self.path)
            if bool(torch.isnan(p).any()):
                raise RuntimeError(f"NaN transition probability at σ = {math.exp(key):g}")
            self.cache[key] = torch.log((1 - LAPSE) * p + LAPSE / g.space.size)
        return self.cache[key]

    def loglik(self, log_sigma: float) -> float:
        return float((self.pair_loglik(log_sigma) * self.g.counts).sum())

    def nll(self, log_sigma: float) -> float:
        return -self.loglik(log_sigma)


def _maximise(obj: _Objective, lo: float, hi: float, n_profile: int):
    """(log σ̂, log L̂, profile levels, profile log L): a profile over [lo, hi] (log σ)
    brackets the optimum, bounded Brent search refines it."""
    grid = np.linspace(lo, hi, n_profile)
    prof = np.array([obj.loglik(s) for s in grid])
    k = int(np.argmax(prof))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, n_profile - 1)]
    res = minimize_scalar(obj.nll, bounds=(a, b), method="bounded", options={"xatol": 1e-4})
    if -res.fun >= prof[k]:
        return float(res.x), float(-res.fun), grid, prof
    return float(grid[k]), float(prof[k]), grid, prof


def _profile_interval(obj: _Objective, s_hat: float, ll_hat: float, lo: float, hi: float,
                      grid: np.ndarray, prof: np.ndarray) -> tuple[float, float, list[str]]:
    """Ends (log σ) of {log L ≥ log L̂ − 1.92} by Brent's method within [lo, hi]."""
    target = ll_hat - PROFILE_DROP
    notes = []

    def f(s):
        return obj.loglik(s) - target

    ends = []
    for side in (-1, 1):
        inner = s_hat
        beyond = [s for s, p in zip(grid, prof, strict=True)
                  if (s - s_hat) * side > 0 and p < target]
        outer = (max(beyond) if side < 0 else min(beyond)) if beyond else (lo if side < 0
                                                                          else hi)
        if f(outer) >= 0:
            ends.append(outer)
            notes.append(f"the 95 % profile interval reaches the search bound "
                         f"σ = {math.exp(outer):.4g} (unit coordinates)")
            continue
        a, b = sorted((inner, outer))
        ends.append(float(brentq(f, a, b, xtol=1e-4)) if a < b else inner)
    return ends[0], ends[1], notes


def _bootstrap_interval(obj: _Objective, s_hat: float, lo: float, hi: float, half: float,
                        cluster_of: np.ndarray, n_boot: int, seed: int
                        ) -> tuple[float, float, list[str], np.ndarray]:
    """Clustered percentile bootstrap of log σ̂ (module docstring); returns the ends, notes
    and the replicate estimates."""
    g = obj.g
    codes, cl = np.unique(cluster_of, return_inverse=True)
    n_cl = len(codes)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_cl, np.full(n_cl, 1.0 / n_cl), size=n_boot).astype(np.float64)
    inv = g.inverse.numpy()
    # transitions of each cluster per distinct pair (sparse [clusters, pairs])
    cnt = csr_matrix((np.ones(len(inv)), (cl, inv)), shape=(n_cl, len(g.pi)))
    notes = []
    for _ in range(4):
        a, b = max(lo, s_hat - half), min(hi, s_hat + half)
        levels = np.linspace(a, b, BOOT_LEVELS)
        ll = torch.stack([obj.pair_loglik(s) for s in levels]).numpy()  # [levels, pairs]
        rows = _rows_per_chunk(len(g.pi))  # replicates per block bound the memory
        prof = np.hstack([ll @ np.asarray(cnt.T @ w[b0:b0 + rows].T)
                          for b0 in range(0, n_boot, rows)])  # [levels, B]
        fine = np.linspace(a, b, 2001)
        vals = CubicSpline(levels, prof, axis=0)(fine)
        best = np.argmax(vals, axis=0)
        edge = ((best == 0) & (a > lo)) | ((best == len(fine) - 1) & (b < hi))
        if edge.mean() <= 0.01:
            break
        half *= 2
    else:
        notes.append("bootstrap replicates still reach the edge of the level range; the "
                     "bootstrap interval may be too narrow")
    reps = fine[best]
    at_lim = ((best == 0) & (a <= lo)) | ((best == len(fine) - 1) & (b >= hi))
    if at_lim.mean() > 0.025:
        notes.append(f"{100 * at_lim.mean():.0f} % of bootstrap replicates sit at a search "
                     "bound; the interval is cut there")
    lo_ci, hi_ci = np.percentile(reps, [2.5, 97.5])
    if n_cl < 10:
        notes.append(f"only {n_cl} independent units (clusters): a bootstrap interval over so "
                     "few is unreliable")
    return float(lo_ci), float(hi_ci), notes, reps


def _check_inputs(x, x_next, cluster, dims, circular):
    u = np.asarray(x, dtype=np.float64)
    v = np.asarray(x_next, dtype=np.float64)
    if u.ndim == 1:
        u, v = u[:, None], v.reshape(-1, 1)
    if u.ndim != 2 or u.shape != v.shape:
        raise UserInputError(f"x and x_next must both have shape (N, d); got {u.shape} and "
                             f"{v.shape}")
    d = u.shape[1] if dims is None else int(dims)
    if d != u.shape[1] or d not in (1, 2):
        raise UserInputError(f"the noise fit runs on 1-D or 2-D data; dims={dims!r}, the "
                             f"transitions have {u.shape[1]} columns")
    if len(u) < 2:
        raise UserInputError(f"only {len(u)} transitions: too few for a noise fit")
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise UserInputError("the transitions contain NaN or infinite values")
    if circular:
        u, v = np.mod(u + 0.5, 1.0) - 0.5, np.mod(v + 0.5, 1.0) - 0.5
    elif max(np.abs(u).max(), np.abs(v).max()) >= 0.5:
        raise UserInputError("linear unit coordinates must lie inside (−0.5, 0.5) (the "
                             "analysis maps data into [−0.3, 0.3]); got values up to "
                             f"{max(np.abs(u).max(), np.abs(v).max()):.3g}")
    if cluster is not None:
        cluster = np.asarray(cluster).reshape(-1)
        if len(cluster) != len(u):
            raise UserInputError(f"cluster has {len(cluster)} entries for {len(u)} transitions")
    return u, v, d, cluster


def fit_noise_level(
    x: np.ndarray, x_next: np.ndarray, *, cluster: np.ndarray | None = None,
    prior_density: Callable[[np.ndarray], np.ndarray], family: str | NoiseFamily = "gaussian",
    rule: str = "sample", production_sigma_unit: float = 0.0,
    production_family: str | NoiseFamily = "gaussian", dims: int | None = None,
    circular: bool = False, grid_n: int | None = None, max_grid_n: int | None = None,
    refine: bool = True, ci: str = "auto", n_boot: int = 200, seed: int = 0,
    path: str = "auto",
) -> NoiseFit:
    """Maximum-likelihood level σ̂ (unit coordinates) of the agent for transitions
    x → x_next ([N, d] unit coordinates) with a 95 % interval; see the module docstring
    for the likelihood, the refinement, ``at_bound`` and the interval methods."""
    fam = get_family(family)
    pfam = get_family(production_family)
    if rule not in RULES:
        raise unknown_name("response rule", rule, RULES)
    if ci not in CI_METHODS:
        raise unknown_name("interval method", ci, CI_METHODS)
    if path not in PATHS:
        raise unknown_name("likelihood path", path, PATHS)
    tau = float(production_sigma_unit)
    if not (math.isfinite(tau) and tau >= 0):
        raise UserInputError(f"production noise {production_sigma_unit!r} must be ≥ 0")
    if tau > 0:
        tau = pfam.check_sigma(tau)
    u, v, dims, cluster = _check_inputs(x, x_next, cluster, dims, circular)
    method = ("bootstrap" if cluster is not None else "profile") if ci == "auto" else ci
    if method == "bootstrap" and int(n_boot) < 20:
        raise UserInputError(f"n_boot={n_boot!r} is too few for a bootstrap interval; use ≥ 20")
    n_max = int(max_grid_n or MAX_GRID_N[dims])
    n = int(grid_n or DEFAULT_GRID_N[dims])
    if not 8 <= n <= max(n_max, 8):
        raise UserInputError(f"grid_n={n} must lie in 8..{n_max} (max_grid_n) points per axis")
    weight = level_is_weight(fam)
    warnings: list[str] = []
    refinements: list[tuple[int, float]] = []
    narrowed: tuple[float, float] | None = None
    while True:
        g = _grid_data(n, dims, u, v, prior_density)
        obj = _Objective(g, fam, rule, tau, pfam, circular, path)
        cell = g.space.spacing
        lo, hi = (np.log(WEIGHT_BOUNDS) if weight else (math.log(cell), math.log(SCALE_UPPER)))
        lo, hi = float(lo), float(hi)
        if narrowed is not None:
            a, b = max(lo, narrowed[0]), min(hi, narrowed[1])
            s_hat, ll_hat, grid, prof = _maximise(obj, a, b, 9)
            if (s_hat <= a + 1e-3 and a > lo) or (s_hat >= b - 1e-3 and b < hi):
                s_hat, ll_hat, grid, prof = _maximise(obj, lo, hi, 13)
        else:
            s_hat, ll_hat, grid, prof = _maximise(obj, lo, hi, 13)
        sigma = math.exp(s_hat)
        refinements.append((n, sigma))
        if weight or not refine:
            break
        need = math.ceil(RESOLUTION / sigma - 1e-9)
        if need <= n:
            break
        if n >= n_max:
            warnings.append(
                f"refinement stopped at the grid limit {n_max} per axis: the cell "
                f"{cell:.4g} is {sigma / cell:.2g} σ̂ wide, above σ̂/{RESOLUTION} (unit "
                "coordinates); σ̂ is not resolved")
            break
        # a margin above the need, so that a slightly smaller σ̂ on the finer grid does not
        # ask for yet another pass
        n = min(math.ceil(REFINE_MARGIN * need), n_max)
        narrowed = (s_hat - math.log(3.0), s_hat + math.log(3.0))
    at_bound = False
    if weight:
        if s_hat <= lo + 1e-3 or s_hat >= hi - 1e-3:
            at_bound = True
            warnings.append(f"σ̂ = {sigma:.4g} sits at a search bound [{math.exp(lo):g}, "
                            f"{math.exp(hi):g}]")
    else:
        if sigma < 2 * cell:
            at_bound = True
            warnings.append(f"σ̂ = {sigma:.4g} is within one grid cell ({cell:.4g}) of the "
                            "resolution limit (unit coordinates)")
        if s_hat >= hi - 1e-3:
            at_bound = True
            warnings.append(f"σ̂ = {sigma:.4g} sits at the upper search bound {SCALE_UPPER} "
                            "(unit coordinates): the transitions look independent of the "
                            "stimulus")
    p_lo, p_hi, notes = _profile_interval(obj, s_hat, ll_hat, lo, hi, grid, prof)
    warnings.extend(notes)
    n_clusters = None
    ci_lo, ci_hi = p_lo, p_hi
    if method == "bootstrap":
        cl = cluster if cluster is not None else np.arange(len(u))
        half = max(3 * max(s_hat - p_lo, p_hi - s_hat), 0.02)
        ci_lo, ci_hi, notes, _ = _bootstrap_interval(obj, s_hat, lo, hi, half, cl,
                                                     int(n_boot), int(seed))
        warnings.extend(notes)
        n_clusters = len(np.unique(cl))
        if not ci_lo <= s_hat <= ci_hi:
            warnings.append("the bootstrap interval does not contain σ̂")
    p_model = torch.exp(obj.pair_loglik(s_hat))
    impossible = float((g.counts * (p_model < 10 * LAPSE / g.space.size)).sum()) / len(u)
    if impossible > 0.01:
        warnings.append(f"{100 * impossible:.1f} % of the transitions are impossible under the "
                        f"fitted model (probability at the lapse level {LAPSE:g}): check the "
                        "rule, the production noise and the prior")
    levels = sorted(obj.cache)
    profile = pd.DataFrame({"sigma_unit": np.exp(levels),
                            "loglik": [obj.loglik(s) for s in levels]})
    return NoiseFit(
        family=fam.name, rule=rule, sigma_unit=sigma,
        sigma_ci_unit=(math.exp(ci_lo), math.exp(ci_hi)), ci_method=method, at_bound=at_bound,
        grid_n=n, cell_unit=cell, refinements=refinements, profile=profile, loglik=ll_hat,
        n_transitions=len(u), warnings=warnings, dims=dims, circular=circular,
        production_sigma_unit=tau, production_family=pfam.name, level_is_scale=not weight,
        profile_ci_unit=(math.exp(p_lo), math.exp(p_hi)), n_clusters=n_clusters,
        _grid_prior=(prior_density, g.q),
    )


# -- simulation ----------------------------------------------------------------------------


def _draw(weights: Tensor, gen: torch.Generator, fallback: Tensor) -> Tensor:
    """One index per row of non-negative ``weights`` [b, M] by inverse CDF (cumulative sum,
    one uniform per row, binary search); rows without mass keep ``fallback``."""
    cdf = torch.cumsum(weights, dim=1)
    total = cdf[:, -1]
    u = torch.rand(len(weights), generator=gen, dtype=cdf.dtype) * total
    idx = torch.searchsorted(cdf, u[:, None], right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)
    return torch.where(total > 0, idx, fallback)


def _circulant(kernel: GridKernel) -> bool:
    return isinstance(kernel, FFTKernel) and kernel.target is None


def _column_cdf(kernel: GridKernel) -> Tensor | None:
    """Cumulative sum of a circulant kernel's column c (offsets from x = 0), else None."""
    if not _circulant(kernel):
        return None
    return torch.cumsum(kernel.c.reshape(-1).clamp_min(0.0), 0)


def _offsets(cdf: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k flat offsets d ~ c by inverse CDF."""
    u = torch.rand(k, generator=gen, dtype=cdf.dtype) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp_(max=len(cdf) - 1)


def _shift(space: GridSpace, x: Tensor, d: Tensor, sign: int) -> Tensor:
    """The flat cell x + sign·d on the torus."""
    out = torch.zeros_like(x)
    for xa, da in zip(_axis_index(space, x), _axis_index(space, d), strict=True):
        out = out * space.n + torch.remainder(xa + sign * da, space.n)
    return out


def _perceive(kernel: GridKernel, cdf: Tensor | None, x: Tensor,
              gen: torch.Generator) -> Tensor:
    """y ~ K(· | x) for flat cells x [b]: for a circulant kernel y = x + d with an offset d
    drawn from the kernel's column c (O(b log M)); otherwise from the full columns."""
    if cdf is None:
        step = _rows_per_chunk(kernel.space.size)
        return torch.cat([_draw(kernel_columns(kernel, x[s:s + step]), gen, x[s:s + step])
                          for s in range(0, len(x), step)])
    return _shift(kernel.space, x, _offsets(cdf, len(x), gen), +1)


#: rejection rounds of the posterior draw before the remaining chains take full rows
POSTERIOR_ROUNDS = 32


def _reconstruct(kernel: GridKernel, cdf: Tensor | None, y: Tensor, q: Tensor,
                 gen: torch.Generator) -> Tensor:
    """x' ~ Post(· | y) ∝ K(y | ·) q for flat percepts y [b].

    Circulant kernels: exact rejection sampling, x' = y − d with d ~ c (so x' has
    probability K(y | x')), accepted with probability q(x')/max q; chains still pending
    after :data:`POSTERIOR_ROUNDS` rounds (and every chain of other kernels) draw from the
    full row K(y | ·) q. A percept no cell can produce is reported as perceived."""
    out = y.clone()
    pending = torch.ones(len(y), dtype=torch.bool)
    if cdf is not None:
        q_max = q.max()
        for _ in range(POSTERIOR_ROUNDS):
            idx = pending.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            prop = _shift(kernel.space, y[idx], _offsets(cdf, len(idx), gen), -1)
            u = torch.rand(len(idx), generator=gen, dtype=q.dtype)
            acc = u * q_max < q[prop]
            out[idx[acc]] = prop[acc]
            pending[idx[acc]] = False
    rest = pending.nonzero().squeeze(1)
    step = _rows_per_chunk(kernel.space.size)
    for s in range(0, len(rest), step):  # full rows, in memory-bounded chunks
        r = rest[s:s + step]
        out[r] = _draw(kernel_rows(kernel, y[r]) * q.reshape(1, -1), gen, y[r])
    return out


def simulate_fitted(
    fit: NoiseFit, starts: np.ndarray, n_iterations: int, *,
    prior_density: Callable[[np.ndarray], np.ndarray], seed: int = 0,
) -> np.ndarray:
    """Chains of the fitted agent on its grid (``fit.grid_n``): perceive y ~ K(· | x) on the
    grid, respond x' ~ Post(· | y) ∝ K(y | ·) q (``sample``) or x' = r(y) (``mean``/``map``),
    then production noise; starts [C, d] (unit coordinates) are snapped to grid cells.
    Returns grid points [C, n_iterations + 1, d] (unit coordinates; row 0 the snapped
    starts). No M×M matrix: circulant kernels draw percepts from their one column and
    reconstructions by exact rejection (:func:`_reconstruct`); other kernels build rows and
    columns per chunk of chains (at most :data:`CHUNK` numbers each). The grid prior of the
    fit is reused when ``prior_density`` is the function the fit was given. Chains are drawn
    in blocks of :data:`serialrepro.particles.rng.BLOCK`, each from its own seeded stream,
    so chain c depends only on (seed, c)."""
    x0 = np.asarray(starts, dtype=np.float64)
    if x0.ndim == 1:
        x0 = x0[:, None]
    if x0.ndim != 2 or x0.shape[1] != fit.dims or not np.isfinite(x0).all():
        raise UserInputError(f"starts must be a finite (n_chains, {fit.dims}) array; got shape "
                             f"{x0.shape}")
    if int(n_iterations) < 1:
        raise UserInputError(f"n_iterations={n_iterations!r} must be at least 1")
    space = GridSpace.torus(fit.grid_n, fit.dims)
    cached = fit._grid_prior
    q = (cached[1] if cached is not None and cached[0] is prior_density
         else grid_prior(space, prior_density))
    kernel = make_kernel(space, fit.family, fit.sigma_unit, "fft")
    prod = (make_kernel(space, fit.production_family, fit.production_sigma_unit, "fft")
            if fit.production_sigma_unit > 0 else None)
    resp = None if fit.rule == "sample" else response_indices(kernel, q, fit.rule, fit.circular)
    qf = q.reshape(-1)
    cdf = _column_cdf(kernel)
    prod_cdf = _column_cdf(prod) if prod is not None else None
    start = nearest_index(space, torch.from_numpy(x0))
    out = torch.empty((int(n_iterations) + 1, len(start)), dtype=torch.long)
    out[0] = start
    for rows, gen in chain_blocks(len(start), seed):
        x = pad_rows(start[rows])
        for it in range(int(n_iterations)):
            y = _perceive(kernel, cdf, x, gen)
            x = _reconstruct(kernel, cdf, y, qf, gen) if resp is None else resp[y]
            if prod is not None:
                x = _perceive(prod, prod_cdf, x, gen)
            out[it + 1, rows] = x[: rows.stop - rows.start]
    pts = space.points().numpy()
    return np.transpose(pts[out.numpy()], (1, 0, 2))
