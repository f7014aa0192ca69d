"""Analysis of serial-reproduction chains (human or simulated).

Given a validated :class:`~serialrepro.chains.data.ChainTable`:

* **coordinates** — values are mapped to the unit torus of the grid engine: linear data
  affinely (one scale for every axis, so isotropic noise stays isotropic) into
  [−0.3, 0.3], leaving margins so the grid's wrap-around never matters; circular data
  (angles, hues with a period) as one turn of [−0.5, 0.5).
* **convergence** — the distance of each iteration's distribution across chains to the
  distribution of the last ``late`` iterations: JSD in bits between histograms for 1-D
  and 2-D data, the energy distance (Székely & Rizzo 2013) in higher dimensions;
  percentile bootstrap intervals by resampling chains.
* **stationary prior** — a Gaussian KDE (``scipy.stats.gaussian_kde``, Scott's rule) of
  the late iterations; for circular data the KDE of the data and its images one period
  either side, with the bandwidth of the wrapped deviations from the circular mean.
* **AR(1) fit** (1-D) — least squares x_{n+1} = a + λ x_n + e over all transitions, then
  μ0 = a/(1 − λ), and (s0², s²) by the inversion of DESIGN §1 under the ``sample`` and
  the ``mean`` rule (:func:`~serialrepro.chains.closed_form.invert_ar1`).
  Circular data: the *wrapped AR(1) regression* wrap(x_{n+1} − μ0) = λ wrap(x_n − μ0) + e,
  e wrapped; for each candidate μ0 the slope is least squares through the origin and
  μ0 minimises the mean squared wrapped residual (grid search over the circle, then
  bounded refinement). It models one attractor; data with several categories
  (several fixed points) should be fitted per item.
* **model fit** — the perception level σ of a Bayesian agent (given family, rule and
  production noise) by maximum likelihood of the observed transitions under the grid
  transition matrix T_σ(x' | x), with the late-iteration KDE as the agent's prior:
  log L(σ) = Σ log((1 − ε) T_σ(j | i) + ε/M), i, j the grid cells of x_n, x_{n+1}
  (a lapse ε = 10⁻⁶ keeps a single impossible transition from giving −∞). A coarse
  profile over log σ brackets the optimum, ``scipy.optimize.minimize_scalar`` refines
  it. The fitted agent's chains are then simulated from the data's starting values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import gaussian_kde

from serialrepro.chains.agents import RULES, Agent
from serialrepro.chains.closed_form import invert_ar1
from serialrepro.chains.data import ChainTable
from serialrepro.chains.grid_chains import nearest_index, sample_grid_chains, transition_matrix
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import get_family
from serialrepro.grid.kernels import make_kernel
from serialrepro.grid.scores import jsd_bits
from serialrepro.grid.space import GridSpace
from serialrepro.particles.priors import GridDensityPrior

#: lapse probability mixed into the model's transition matrix (see module docstring)
LAPSE = 1e-6
#: linear data fill [−HALF_SPAN, HALF_SPAN] of the unit torus
HALF_SPAN = 0.3


def wrap(x: np.ndarray) -> np.ndarray:
    """Onto [−0.5, 0.5)."""
    return np.mod(np.asarray(x) + 0.5, 1.0) - 0.5


def circular_mean_np(u: np.ndarray) -> float:
    """Circular mean of unit-circle values u (one turn = 1), in [−0.5, 0.5)."""
    ang = 2 * np.pi * u
    return float(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * np.pi))


@dataclass(frozen=True)
class Coordinates:
    """The map between data units and the unit torus: u = (x − center)/scale (linear) or
    u = wrap(x/period) (circular)."""

    center: np.ndarray
    scale: float
    circular: bool

    @classmethod
    def fit(cls, values: np.ndarray, circular: bool = False, period: float = 360.0):
        d = values.shape[1]
        if circular:
            if d != 1:
                raise UserInputError(f"circular data must have one value column; got {d}")
            if not (math.isfinite(period) and period > 0):
                raise UserInputError(f"the circular period {period!r} must be positive")
            return cls(np.zeros(1), float(period), True)
        lo, hi = values.min(0), values.max(0)
        span = float((hi - lo).max())
        scale = span / (2 * HALF_SPAN) if span > 0 else 1.0
        return cls((lo + hi) / 2, scale, False)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        if self.circular:
            return wrap(np.asarray(x) / self.scale)
        return (np.asarray(x) - self.center) / self.scale

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(u) * self.scale + (0 if self.circular else self.center)

    def as_dict(self) -> dict:
        return {"center": self.center.tolist(), "scale": self.scale, "circular": self.circular}


# -- convergence ---------------------------------------------------------------------------


def _bootstrap_weights(n_chains: int, n_boot: int, seed: int) -> np.ndarray:
    """[1 + n_boot, C]: row 0 all ones (the estimate), then multinomial chain resamples."""
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_chains, np.full(n_chains, 1.0 / n_chains), size=n_boot)
    return np.vstack([np.ones((1, n_chains)), w]).astype(np.float64)


def histogram_edges(u: np.ndarray, bins: int, circular: bool) -> list[np.ndarray]:
    """Shared bin edges per axis: one turn for circular data, the data range otherwise."""
    if circular:
        return [np.linspace(-0.5, 0.5, bins + 1)]
    lo, hi = np.nanmin(u, axis=0), np.nanmax(u, axis=0)
    pad = 1e-9 * np.maximum(hi - lo, 1.0)
    return [np.linspace(lo[k] - pad[k], hi[k] + pad[k], bins + 1) for k in range(u.shape[1])]


def _cell_index(u: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """Flat histogram cell of each value [..., D] (−1 for NaN)."""
    nb = len(edges[0]) - 1
    flat = np.zeros(u.shape[:-1], dtype=np.int64)
    nan = np.isnan(u).any(-1)
    for k, e in enumerate(edges):
        idx = np.clip(np.searchsorted(e, np.nan_to_num(u[..., k]), side="right") - 1, 0, nb - 1)
        flat = flat * nb + idx
    return np.where(nan, -1, flat)


def convergence_curve(u: np.ndarray, iterations: np.ndarray, late: int, bins: int = 20,
                      circular: bool = False, n_boot: int = 200, seed: int = 0,
                      edges: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Distance of each iteration's distribution to the last ``late`` iterations'.

    ``u`` is [C, I, D] (NaN where a chain has no value). Returns iteration, distance,
    lower/upper 95 % percentile bootstrap bounds over chains, metric and n (chains).
    """
    c, n_it, d = u.shape
    late = max(1, min(int(late), n_it))
    w = _bootstrap_weights(c, n_boot, seed)
    if d <= 2:
        metric = "jsd_bits"
        edges = edges if edges is not None else histogram_edges(u.reshape(-1, d), bins,
                                                                 circular)
        nb = (len(edges[0]) - 1) ** d
        cell = _cell_index(u, edges)  # [C, I]
        onehot = np.zeros((c, n_it, nb))
        ci, ii = np.nonzero(cell >= 0)
        onehot[ci, ii, cell[ci, ii]] = 1.0
        counts = np.einsum("bc,cin->bin", w, onehot)  # [B, I, bins]
        ref = counts[:, n_it - late:].sum(1, keepdims=True)
        p = counts / np.maximum(counts.sum(-1, keepdims=True), 1e-300)
        q = ref / np.maximum(ref.sum(-1, keepdims=True), 1e-300)
        dist = jsd_bits(torch.from_numpy(p), torch.from_numpy(q).expand_as(torch.from_numpy(p)),
                        ndim=1).numpy()
    else:
        metric = "energy_distance"
        dist = _energy_curve(u, late, w)
    est, boots = dist[0], dist[1:]
    lo, hi = (np.percentile(boots, [2.5, 97.5], axis=0) if n_boot > 0
              else (np.full(n_it, np.nan), np.full(n_it, np.nan)))
    return pd.DataFrame({"iteration": iterations, "distance": est, "lower": lo, "upper": hi,
                         "metric": metric, "n": (~np.isnan(u).any(-1)).sum(0)})


def _energy_curve(u: np.ndarray, late: int, w: np.ndarray) -> np.ndarray:
    """Bootstrap-weighted energy distance 2E|X−Y| − E|X−X'| − E|Y−Y'| per iteration.

    Distances are summed per chain pair first, so a bootstrap resample of chains is a
    quadratic form in its weights: O(B C²) per iteration instead of O(B C² L).
    """
    c, n_it, d = u.shape
    t = torch.from_numpy(np.nan_to_num(u))
    ok = torch.from_numpy(~np.isnan(u).any(-1)).to(t.dtype)  # [C, I]
    wt = torch.from_numpy(w)
    ref = t[:, n_it - late:]  # [C, L, D]
    ref_ok = ok[:, n_it - late:]
    flat_ref = ref.reshape(-1, d)
    mask_ref = ref_ok.reshape(-1)

    def pair_sum(a, ma, b, mb, la, lb):  # summed distances per chain pair [C, C]
        dist = torch.cdist(a, b) * ma.unsqueeze(1) * mb.unsqueeze(0)
        return dist.reshape(c, la, c, lb).sum((1, 3))

    d_yy = pair_sum(flat_ref, mask_ref, flat_ref, mask_ref, late, late)
    n_y = wt @ ref_ok.sum(1)  # [B] reference points per resample
    e_yy = torch.einsum("bc,cd,bd->b", wt, d_yy, wt) / n_y**2
    out = torch.empty((w.shape[0], n_it), dtype=t.dtype)
    for i in range(n_it):  # one [C, C·L] distance block per iteration keeps memory bounded
        x, mx = t[:, i], ok[:, i]
        d_xy = pair_sum(x, mx, flat_ref, mask_ref, 1, late)
        d_xx = pair_sum(x, mx, x, mx, 1, 1)
        n_x = wt @ mx
        e_xy = torch.einsum("bc,cd,bd->b", wt, d_xy, wt) / (n_x * n_y)
        e_xx = torch.einsum("bc,cd,bd->b", wt, d_xx, wt) / n_x**2
        out[:, i] = 2 * e_xy - e_xx - e_yy
    return out.numpy()


# -- stationary prior ----------------------------------------------------------------------


@dataclass
class PriorEstimate:
    """A KDE of the late iterations, in unit coordinates."""

    kde: gaussian_kde
    circular: bool
    n: int

    def density(self, points: np.ndarray) -> np.ndarray:
        """Density at unit-coordinate points [N, D] (periodised on circles)."""
        return self.kde(np.asarray(points).T)

    def on_grid(self, space: GridSpace) -> torch.Tensor:
        pts = space.points().numpy()
        p = np.maximum(self.density(pts), 0.0)
        if not p.sum() > 0:
            raise UserInputError("the estimated prior has no mass on the model grid")
        return torch.from_numpy(p / p.sum()).reshape(space.shape)


def estimate_prior(late_values: np.ndarray, circular: bool = False) -> PriorEstimate:
    """Gaussian KDE of late-iteration values [N, D] in unit coordinates (Scott's rule)."""
    v = late_values[~np.isnan(late_values).any(-1)]
    n, d = v.shape
    if n < d + 2:
        raise UserInputError(f"only {n} late values: too few for a density estimate")
    if np.linalg.matrix_rank(np.cov(v.T).reshape(d, d)) < d:
        raise UserInputError("the late values do not vary along every axis; no density estimate")
    if not circular:
        return PriorEstimate(gaussian_kde(v.T), False, n)
    # periodic KDE: the data and its images ±1 turn, with the bandwidth Scott's rule gives
    # the wrapped deviations from the circular mean
    dev = wrap(v[:, 0] - circular_mean_np(v[:, 0]))
    bw = n ** (-1.0 / 5.0) * dev.std(ddof=1)
    aug = np.concatenate([v[:, 0], v[:, 0] - 1.0, v[:, 0] + 1.0])
    factor = bw / aug.std(ddof=1)
    return PriorEstimate(gaussian_kde(aug, bw_method=factor), True, n)


# -- AR(1) fits ----------------------------------------------------------------------------


def fit_ar1(x: np.ndarray, x_next: np.ndarray, chain: np.ndarray, n_chains: int,
            n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Least-squares AR(1) x_{n+1} = a + λ x_n + e over transitions (1-D), with the
    Gaussian-agent inversion for both rules and percentile bootstrap intervals over
    chains. Returns one row per quantity: estimate, lower, upper."""
    w = _bootstrap_weights(n_chains, n_boot, seed)[:, chain]  # [B, N] transition weights
    if len(x) < 3:
        raise UserInputError(f"only {len(x)} transitions: too few for an AR(1) fit")
    sw = w.sum(1)
    mx, my = (w * x).sum(1) / sw, (w * x_next).sum(1) / sw
    dx, dy = x[None] - mx[:, None], x_next[None] - my[:, None]
    sxx = (w * dx * dx).sum(1)
    lam = (w * dx * dy).sum(1) / np.where(sxx > 0, sxx, np.nan)
    a = my - lam * mx
    resid = x_next[None] - a[:, None] - lam[:, None] * x[None]
    ve = (w * resid**2).sum(1) / np.maximum(sw - 2, 1)
    rows = {"slope": lam, "intercept": a, "noise_var": ve}
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["fixed_point"] = a / (1 - lam)
        rows["stationary_var"] = ve / (1 - lam**2)
    for rule in ("sample", "mean"):
        inv = invert_ar1(lam, a, ve, rule)
        rows[f"prior_var[{rule}]"] = inv.prior_var
        rows[f"perceptual_noise_var[{rule}]"] = inv.noise_var
    return _summary(rows, n_boot)


def _summary(rows: dict[str, np.ndarray], n_boot: int) -> pd.DataFrame:
    out = []
    for k, v in rows.items():
        boots = v[1:][np.isfinite(v[1:])]
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if n_boot > 0 and len(boots)
                  else (np.nan, np.nan))
        out.append({"quantity": k, "estimate": float(v[0]), "lower": float(lo),
                    "upper": float(hi)})
    return pd.DataFrame(out)


#: elements per intermediate [B, K, N] array of the wrapped fit (bounds its memory)
_WRAPPED_CHUNK = 1 << 22


def _wrapped_fit(u: np.ndarray, v: np.ndarray, mu: np.ndarray, w: np.ndarray):
    """Slope through the origin and mean squared wrapped residual for each candidate
    fixed point; mu [K], weights w [B, N] -> (λ [B, K], σ² [B, K]). Candidates go in
    chunks so that no intermediate array exceeds :data:`_WRAPPED_CHUNK` elements."""
    b_, n = w.shape
    step = max(1, _WRAPPED_CHUNK // max(1, b_ * n))
    lam_out = np.empty((b_, len(mu)))
    s2_out = np.empty((b_, len(mu)))
    for k0 in range(0, len(mu), step):
        m = mu[k0:k0 + step]
        a = wrap(u[None] - m[:, None])  # [K, N]
        b = wrap(v[None] - m[:, None])
        lam = (w @ (a * b).T) / np.maximum(w @ (a * a).T, 1e-300)  # [B, K]
        r = wrap(b[None] - lam[..., None] * a[None])  # [B, K, N]
        lam_out[:, k0:k0 + step] = lam
        s2_out[:, k0:k0 + step] = np.einsum("bn,bkn->bk", w, r * r) / w.sum(1, keepdims=True)
    return lam_out, s2_out


def fit_circular_ar1(u: np.ndarray, v: np.ndarray, chain: np.ndarray, n_chains: int,
                     period: float, n_boot: int = 100, seed: int = 0) -> pd.DataFrame:
    """Wrapped AR(1) regression (module docstring) on unit-circle transitions u → v;
    results in data units (fixed point in [−period/2, period/2), variances in period²).
    Bootstrap resamples chains and re-searches μ0 within ±0.05 turn of the estimate."""
    if len(u) < 3:
        raise UserInputError(f"only {len(u)} transitions: too few for an AR(1) fit")
    ones = np.ones((1, len(u)))
    grid = np.linspace(-0.5, 0.5, 361)[:-1]
    _, s2 = _wrapped_fit(u, v, grid, ones)
    k = int(np.argmin(s2[0]))
    res = minimize_scalar(lambda m: _wrapped_fit(u, v, np.array([m]), ones)[1][0, 0],
                          bounds=(grid[k] - 1 / 360, grid[k] + 1 / 360), method="bounded",
                          options={"xatol": 1e-7})
    mu = float(wrap(res.x))
    w = _bootstrap_weights(n_chains, n_boot, seed)[:, chain]
    local = mu + np.linspace(-0.05, 0.05, 101)
    rows_per = max(1, _WRAPPED_CHUNK // max(1, len(local) * len(u)))
    parts = [_wrapped_fit(u, v, local, w[s:s + rows_per])
             for s in range(0, w.shape[0], rows_per)]  # blocks of replicates bound memory
    lam_b = np.vstack([p[0] for p in parts])
    s2_b = np.vstack([p[1] for p in parts])
    best = np.argmin(s2_b, axis=1)
    mu_b = wrap(local[best])
    lam_b = lam_b[np.arange(len(best)), best]
    s2_b = s2_b[np.arange(len(best)), best]
    lam_hat, s2_hat = _wrapped_fit(u, v, np.array([mu]), ones)
    mu_b[0], lam_b[0], s2_b[0] = mu, lam_hat[0, 0], s2_hat[0, 0]
    # the bootstrap fixed points, unwrapped around the estimate before taking percentiles
    mu_b = mu + wrap(mu_b - mu)
    ve = s2_b * period**2
    rows = {"slope": lam_b, "fixed_point": mu_b * period, "noise_var": ve}
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["stationary_var"] = ve / (1 - lam_b**2)
    for rule in ("sample", "mean"):
        inv = invert_ar1(lam_b, 0.0, ve, rule)
        rows[f"prior_var[{rule}]"] = inv.prior_var
        rows[f"perceptual_noise_var[{rule}]"] = inv.noise_var
    return _summary(rows, n_boot)


# -- maximum-likelihood noise level --------------------------------------------------------


@dataclass
class NoiseFit:
    """The fitted perception level (unit coordinates and data units) and its profile."""

    family: str
    rule: str
    sigma_unit: float
    sigma_data: float | None
    loglik: float
    n_transitions: int
    grid: str
    profile: pd.DataFrame = field(repr=False)

    def as_dict(self) -> dict:
        return {"family": self.family, "rule": self.rule, "sigma_unit": self.sigma_unit,
                "sigma_data": self.sigma_data, "loglik_cells": self.loglik,
                "mean_loglik_per_transition": self.loglik / max(self.n_transitions, 1),
                "n_transitions": self.n_transitions, "grid": self.grid}


def model_space(dims: int, grid_n: int | None = None) -> GridSpace:
    """The model grid: a 1-D torus of 200 points or a 2-D torus of 48 × 48 by default."""
    if dims not in (1, 2):
        raise UserInputError(f"the model fit runs on 1-D or 2-D grids; the data have {dims} "
                             "value columns")
    return GridSpace.torus(grid_n or (200 if dims == 1 else 48), dims=dims)


def pair_transition_probs(agent: Agent, space: GridSpace, prior: torch.Tensor,
                          i: torch.Tensor, j: torch.Tensor, block: int = 2048) -> torch.Tensor:
    """T(j | i) for cell pairs (i → j), without the whole matrix where possible.

    For the ``sample`` rule without production noise,
    T(j | i) = q_j Σ_y K(y | j) K(y | i) / (K q)(y) (Post ∘ K, DESIGN §1) costs O(M) per
    pair instead of O(M³) for the matrix; pairs go in blocks to bound memory. Other
    rules and production noise use :func:`transition_matrix`.
    """
    if agent.rule != "sample" or agent.production_sigma > 0:
        return transition_matrix(agent, space, prior=prior)[j, i]
    k = make_kernel(space, agent.family, agent.sigma, "dense").matrix()
    q = prior.reshape(-1).to(k)
    kq = k @ q
    inv = torch.where(kq > 0, 1.0 / torch.where(kq > 0, kq, 1.0), 0.0)
    kt = k.T.contiguous()  # row x is the column K(· | x): gathers read contiguous rows
    out = torch.empty(len(i), dtype=k.dtype)
    for s in range(0, len(i), block):
        jj, ii = j[s:s + block], i[s:s + block]
        out[s:s + block] = q[jj] * ((kt[jj] * inv) * kt[ii]).sum(1)
    return out


def transition_loglik(probs: torch.Tensor, m: int, counts: torch.Tensor | None = None) -> float:
    """Σ count · log((1 − ε) T(j | i) + ε/M) over observed cell transitions."""
    ll = torch.log((1 - LAPSE) * probs + LAPSE / m)
    return float((ll if counts is None else ll * counts).sum())


def fit_noise_level(
    u: np.ndarray, u_next: np.ndarray, prior: torch.Tensor, space: GridSpace,
    family: str = "gaussian", rule: str = "sample", production_sigma: float = 0.0,
    circular: bool = False, scale: float | None = None, n_profile: int = 13,
) -> NoiseFit:
    """Maximum-likelihood σ (unit coordinates) of a Bayesian agent for transitions u → u_next
    ([N, D] unit coordinates) with grid prior ``prior``; see the module docstring."""
    fam = get_family(family)
    if rule not in RULES:
        raise unknown_name("response rule", rule, RULES)
    gp = GridDensityPrior(space, prior)
    i = nearest_index(space, torch.from_numpy(u))
    j = nearest_index(space, torch.from_numpy(u_next))
    # transitions between the same cells share their probability: score each pair once
    pairs, counts = torch.unique(i * space.size + j, return_counts=True)
    pi, pj = pairs // space.size, pairs % space.size

    def nll(log_sigma: float) -> float:
        agent = Agent(gp, fam, math.exp(log_sigma), rule, production_sigma, circular=circular)
        probs = pair_transition_probs(agent, space, gp.density, pi, pj)
        return -transition_loglik(probs, space.size, counts.to(probs.dtype))

    if fam.name.startswith("fade"):  # a fade level is a weight in [0, 1]
        lo, hi = math.log(1e-3), 0.0
    else:  # below one grid spacing a grid kernel no longer resolves σ
        lo, hi = math.log(space.spacing), math.log(0.5)
    grid = np.linspace(lo, hi, n_profile)
    prof = np.array([nll(g) for g in grid])
    k = int(np.argmin(prof))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, n_profile - 1)]
    res = minimize_scalar(nll, bounds=(a, b), method="bounded", options={"xatol": 1e-4})
    best = (res.x, res.fun) if res.fun <= prof[k] else (grid[k], prof[k])
    sigma = math.exp(best[0])
    profile = pd.DataFrame({"sigma_unit": np.exp(grid), "loglik_cells": -prof})
    if scale is not None and fam.sigma_is_std:
        profile["sigma_data"] = profile["sigma_unit"] * scale
    return NoiseFit(fam.name, rule, sigma, sigma * scale if scale and fam.sigma_is_std else None,
                    -float(best[1]), len(i), space.label, profile)


def simulate_fitted(
    fit: NoiseFit, prior: torch.Tensor, space: GridSpace, start_unit: np.ndarray,
    n_iterations: int, production_sigma: float = 0.0, circular: bool = False, seed: int = 0,
) -> np.ndarray:
    """Chains of the fitted agent from the data's first values: [C, n_iterations + 1, D]
    in unit coordinates (grid points)."""
    agent = Agent(GridDensityPrior(space, prior), fit.family, fit.sigma_unit, fit.rule,
                  production_sigma, circular=circular)
    t = transition_matrix(agent, space, prior=prior)
    idx = sample_grid_chains(t, nearest_index(space, torch.from_numpy(start_unit)),
                             n_iterations, seed)
    pts = space.points().numpy()
    return np.transpose(pts[idx.numpy()], (1, 0, 2))


# -- the whole analysis --------------------------------------------------------------------


@dataclass
class Analysis:
    """Everything ``serialrepro chains analyze`` computes: tables, figures data, summary."""

    table: ChainTable
    coords: Coordinates
    iterations: np.ndarray
    unit: np.ndarray  # [C, I, D]
    late: int
    convergence: pd.DataFrame
    prior: PriorEstimate
    ar1: pd.DataFrame | None
    noise_fit: NoiseFit | None
    model_unit: np.ndarray | None  # [C, I, D]
    model_convergence: pd.DataFrame | None
    summary: dict
    notes: list[str]


def analyze_chains(
    table: ChainTable, circular: bool = False, period: float = 360.0, bins: int | None = None,
    late: int | None = None, family: str = "gaussian", rule: str = "sample",
    production_sigma: float = 0.0, grid_n: int | None = None, n_boot: int = 200,
    seed: int = 0, fit_model: bool = True,
) -> Analysis:
    """Run every analysis of the module docstring on ``table``.

    ``production_sigma`` is in data units (for the model fit); ``late`` is the number of
    final iterations taken as stationary (default: the last fifth, at least 1).
    """
    notes: list[str] = []
    its, keys, values = table.by_iteration()
    flat = values.reshape(-1, table.dims)
    coords = Coordinates.fit(flat[~np.isnan(flat).any(-1)], circular, period)
    unit = coords.to_unit(values)
    n_it = len(its)
    if n_it < 2:
        raise UserInputError("the chains have a single iteration; nothing to analyse")
    late = max(1, math.ceil(n_it / 5)) if late is None else int(late)
    if not 1 <= late < n_it:
        raise UserInputError(f"--late {late} must lie in 1..{n_it - 1} (there are {n_it} "
                             "iterations)")
    if bins is None:
        bins = 36 if circular else (20 if table.dims == 1 else 12)
    if int(bins) < 2:
        raise UserInputError(f"--bins {bins} must be at least 2")
    edges = histogram_edges(unit.reshape(-1, table.dims), int(bins), circular)
    conv = convergence_curve(unit, its, late, int(bins), circular, n_boot, seed, edges)
    late_values = unit[:, n_it - late:].reshape(-1, table.dims)
    prior = estimate_prior(late_values, circular)

    x, x_next, chain = table.transitions()
    if len(x) == 0:
        raise UserInputError("no chain has two consecutive iterations: no transitions to fit")
    ux, ux_next = coords.to_unit(x), coords.to_unit(x_next)
    ar1 = None
    if table.dims == 1:
        if circular:
            ar1 = fit_circular_ar1(ux[:, 0], ux_next[:, 0], chain, len(keys), period,
                                   min(n_boot, 100), seed)
        else:
            ar1 = fit_ar1(x[:, 0], x_next[:, 0], chain, len(keys), n_boot, seed)
    else:
        notes.append("the AR(1) fit is for 1-D data; skipped")

    noise_fit = model_unit = model_conv = None
    if fit_model and table.dims <= 2:
        space = model_space(table.dims, grid_n)
        q = prior.on_grid(space)
        prod_unit = production_sigma / coords.scale
        noise_fit = fit_noise_level(ux, ux_next, q, space, family, rule, prod_unit, circular,
                                    coords.scale)
        first = unit[:, 0]
        ok = ~np.isnan(first).any(-1)
        if ok.sum() == 0:
            notes.append("no chain has a value at the first iteration; model chains not run")
        else:
            model_unit = simulate_fitted(noise_fit, q, space, first[ok], n_it - 1, prod_unit,
                                         circular, seed)
            model_conv = convergence_curve(model_unit, its, late, int(bins), circular, n_boot,
                                           seed, edges)
    elif fit_model:
        notes.append("the model fit runs on 1-D and 2-D data; skipped for "
                     f"{table.dims}-D data")

    summary = {
        "chains": int(len(keys)), "iterations": int(n_it), "dims": table.dims,
        "transitions": int(len(x)), "late_iterations": late, "circular": circular,
        "coordinates": coords.as_dict(), "convergence_metric": str(conv["metric"].iloc[0]),
        "initial_distance": float(conv["distance"].iloc[0]),
        "final_distance": float(conv["distance"].iloc[-1]),
        "load": table.report.as_dict(),
    }
    if ar1 is not None:
        summary["ar1"] = {r.quantity: r.estimate for r in ar1.itertuples()}
    if noise_fit is not None:
        summary["noise_fit"] = noise_fit.as_dict()
    return Analysis(table, coords, its, unit, late, conv, prior, ar1, noise_fit, model_unit,
                    model_conv, summary, notes)
