"""AR(1) fits of 1-D chains, with cluster-bootstrap intervals and a stationarity flag.

* **linear** — least squares x_{n+1} = a + λ x_n + e over all transitions, then
  μ0 = a/(1 − λ), and (s0², s²) by the inversion of docs/design.md §1 under the ``sample``
  and the ``mean`` rule (:func:`~serialrepro.chains.closed_form.invert_ar1`).
* **circular** — the wrapped AR(1) regression wrap(x_{n+1} − μ0) = λ wrap(x_n − μ0) + e,
  e wrapped; for each candidate μ0 the slope is least squares through the origin and μ0
  minimises the mean squared wrapped residual (grid search over the circle, then bounded
  refinement); bootstrap resamples re-search μ0 within ±0.05 turn of the estimate.

Intervals are 95 % percentile intervals over resamples of clusters (the weights of
:func:`~serialrepro.chains.coordinates.cluster_weights`, one per transition).

**Stationarity.** The chain x_{n+1} = a + λx_n + e has a stationary law only for |λ| < 1,
with variance σ_e²/(1 − λ²) and fixed point a/(1 − λ). When λ ≥ 1, or its interval reaches
1, the fit is flagged non-stationary and the stationary quantities (fixed point of the
linear fit, stationary variance, the prior/noise inversion) are not reported (NaN, null
in JSON). The model has one attractor: data with several modes need the Bayesian-agent
fit with a KDE prior instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from serialrepro.chains.closed_form import invert_ar1
from serialrepro.chains.coordinates import percentile_interval, wrap
from serialrepro.errors import UserInputError

#: quantities that exist only for a stationary AR(1)
STATIONARY_ONLY = ("fixed_point", "stationary_var", "prior_var[sample]",
                   "perceptual_noise_var[sample]", "prior_var[mean]",
                   "perceptual_noise_var[mean]")


def fit_ar1(x: np.ndarray, x_next: np.ndarray, weights: np.ndarray) -> pd.DataFrame:
    """Least-squares AR(1) on 1-D transitions x → x_next [N] under bootstrap weights
    [1 + B, N] (row 0 the estimate); one row per quantity: estimate, lower, upper."""
    if len(x) < 3:
        raise UserInputError(f"only {len(x)} transitions: too few for an AR(1) fit")
    w = weights
    sw = w.sum(1)
    mx, my = (w @ x) / sw, (w @ x_next) / sw
    sxx = (w @ (x * x)) - sw * mx * mx
    sxy = (w @ (x * x_next)) - sw * mx * my
    lam = sxy / np.where(sxx > 0, sxx, np.nan)
    a = my - lam * mx
    ve = np.einsum("bn,bn->b", w, (x_next[None] - a[:, None] - lam[:, None] * x[None]) ** 2)
    ve = ve / np.maximum(sw - 2, 1)
    rows = {"slope": lam, "intercept": a, "noise_var": ve}
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["fixed_point"] = a / (1 - lam)
        rows["stationary_var"] = ve / (1 - lam**2)
    for rule in ("sample", "mean"):
        inv = invert_ar1(lam, a, ve, rule)
        rows[f"prior_var[{rule}]"] = inv.prior_var
        rows[f"perceptual_noise_var[{rule}]"] = inv.noise_var
    return _summary(rows)


def _summary(rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """Estimates and intervals; stationary quantities blanked for a non-stationary fit."""
    lo, hi = percentile_interval(rows["slope"][1:])
    lam = float(rows["slope"][0])
    stationary = bool(np.isfinite(lam) and abs(lam) < 1 and not (np.isfinite(hi) and hi >= 1))
    out = []
    for k, v in rows.items():
        if k in STATIONARY_ONLY and not stationary:
            est, a, b = np.nan, np.nan, np.nan
        else:
            a, b = percentile_interval(v[1:][np.isfinite(v[1:])])
            est = float(v[0])
        out.append({"quantity": k, "estimate": est, "lower": float(a), "upper": float(b)})
    df = pd.DataFrame(out)
    df.attrs["stationary"] = stationary
    return df


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


def fit_circular_ar1(u: np.ndarray, v: np.ndarray, weights: np.ndarray, period: float,
                     origin: float = 0.0) -> pd.DataFrame:
    """Wrapped AR(1) regression (module docstring) on unit-circle transitions u → v [N]
    under bootstrap weights [1 + B, N]; results in data units (fixed point in
    [origin, origin + period), variances in data units²)."""
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
    local = mu + np.linspace(-0.05, 0.05, 101)
    rows_per = max(1, _WRAPPED_CHUNK // max(1, len(local) * len(u)))
    w = weights
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
    # fixed points unwrapped around the estimate before percentiles, then put in range
    fp = (mu + wrap(mu_b - mu)) * period
    shift = np.mod(fp[0] - origin, period) + origin - fp[0]
    ve = s2_b * period**2
    rows = {"slope": lam_b, "fixed_point": fp + shift, "noise_var": ve}
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["stationary_var"] = ve / (1 - lam_b**2)
    for rule in ("sample", "mean"):
        inv = invert_ar1(lam_b, 0.0, ve, rule)
        rows[f"prior_var[{rule}]"] = inv.prior_var
        rows[f"perceptual_noise_var[{rule}]"] = inv.noise_var
    return _summary(rows)
