"""The Gaussian closed forms of serial reproduction (Xu & Griffiths 2010; docs/design.md §1).

Prior N(μ0, s0²), perception y = x + N(0, s²), λ = s0²/(s0² + s²). The posterior is
N(λ y + (1 − λ) μ0, λ s²). Then one iteration is an AR(1),

    x' = (1 − λ) μ0 + λ x + e,

with e independent of x and

* ``sample`` rule, x' ~ Post(· | y): e = λ·N(0, s²) + N(0, λ s²), so
  Var e = λ² s² + λ s² = λ(1 + λ) s², and the stationary variance
  Var e / (1 − λ²) = λ s² / (1 − λ) = s0²: the chain recovers the prior;
* ``mean`` rule, x' = E[x | y] = λ y + (1 − λ) μ0: e = λ·N(0, s²), Var e = λ² s²,
  stationary variance λ² s² / (1 − λ²). With 1 − λ = s²/(s0² + s²) and
  1 + λ = (2 s0² + s²)/(s0² + s²): λ² s² / (1 − λ²) = s0⁴ s² / (s² (2 s0² + s²))
  = s0⁴ / (2 s0² + s²) < s0²: the chain does not recover the prior.
  (``map`` equals ``mean`` for a Gaussian posterior.)

Gaussian production noise N(0, τ²) adds τ² to Var e. In every case the mean moves as
E x_n = μ0 + λⁿ (x_0 − μ0), Var x_n = λ² Var x_{n−1} + Var e, and at stationarity the
lag-k autocorrelation is λᵏ. :func:`invert_ar1` maps a fitted AR(1) (slope, intercept,
noise variance) back to (μ0, s0², s²).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from serialrepro.errors import UserInputError, unknown_name

AR1_RULES = ("sample", "mean", "map")


@dataclass(frozen=True)
class AR1:
    """x' = intercept + slope·x + e, Var e = noise_var."""

    slope: float
    intercept: float
    noise_var: float

    @property
    def fixed_point(self) -> float:
        """μ0 = intercept / (1 − λ)."""
        return self.intercept / (1.0 - self.slope)

    @property
    def stationary_var(self) -> float:
        """Var e / (1 − λ²)."""
        return self.noise_var / (1.0 - self.slope**2)

    def mean(self, n: np.ndarray | int, x0: float) -> np.ndarray:
        """E x_n from a chain started at x0: μ0 + λⁿ (x0 − μ0)."""
        mu = self.fixed_point
        return mu + self.slope ** np.asarray(n, dtype=float) * (x0 - mu)

    def var(self, n: np.ndarray | int, var0: float = 0.0) -> np.ndarray:
        """Var x_n from Var x_0 = var0: λ^{2n} var0 + Var e (1 − λ^{2n})/(1 − λ²)."""
        l2n = self.slope ** (2 * np.asarray(n, dtype=float))
        return l2n * var0 + self.noise_var * (1 - l2n) / (1 - self.slope**2)

    def autocorr(self, lag: np.ndarray | int = 1) -> np.ndarray:
        """Stationary lag-k autocorrelation λᵏ."""
        return self.slope ** np.asarray(lag, dtype=float)

    def as_dict(self) -> dict:
        return {**asdict(self), "fixed_point": self.fixed_point,
                "stationary_var": self.stationary_var}


def shrinkage(prior_var: float, noise_var: float) -> float:
    """λ = s0² / (s0² + s²)."""
    return prior_var / (prior_var + noise_var)


def _check_positive(**values: float) -> None:
    for k, v in values.items():
        if not (np.isfinite(v) and v > 0):
            raise UserInputError(f"{k}={v!r} must be a positive number")


def gaussian_chain_ar1(mu0: float, prior_var: float, noise_var: float, rule: str = "sample",
                       production_var: float = 0.0) -> AR1:
    """The AR(1) of a Gaussian agent chain: prior N(μ0, s0²), noise N(0, s²), rule, and
    optional Gaussian production noise N(0, τ²) (variances given)."""
    _check_positive(prior_var=prior_var, noise_var=noise_var)
    if rule not in AR1_RULES:
        raise unknown_name("response rule", rule, AR1_RULES)
    if not production_var >= 0:
        raise UserInputError(f"production_var={production_var!r} must be ≥ 0")
    lam = shrinkage(prior_var, noise_var)
    e = lam * (1 + lam) * noise_var if rule == "sample" else lam * lam * noise_var
    return AR1(slope=lam, intercept=(1 - lam) * mu0, noise_var=e + production_var)


def stationary_var(prior_var: float, noise_var: float, rule: str = "sample") -> float:
    """s0² for ``sample``; s0⁴ / (2 s0² + s²) for ``mean``/``map`` (docs/design.md §1)."""
    _check_positive(prior_var=prior_var, noise_var=noise_var)
    if rule not in AR1_RULES:
        raise unknown_name("response rule", rule, AR1_RULES)
    if rule == "sample":
        return prior_var
    return prior_var**2 / (2 * prior_var + noise_var)


@dataclass(frozen=True)
class GaussianAgentParams:
    """(μ0, s0², s²) implied by an AR(1) under one response rule (floats, or arrays when
    :func:`invert_ar1` is given arrays, e.g. bootstrap replicates)."""

    rule: str
    mu0: float | np.ndarray
    prior_var: float | np.ndarray
    noise_var: float | np.ndarray


def invert_ar1(slope, intercept, noise_var, rule: str = "sample") -> GaussianAgentParams:
    """Invert :func:`gaussian_chain_ar1` (no production noise), elementwise on arrays:

    μ0 = a / (1 − λ);  s² = Var e / (λ(1 + λ)) for ``sample``, Var e / λ² for ``mean``;
    and s0² = λ s² / (1 − λ) from λ = s0²/(s0² + s²). Needs 0 < λ < 1 and Var e > 0;
    otherwise no Gaussian agent produces the AR(1) and the values are NaN.
    """
    if rule not in AR1_RULES:
        raise unknown_name("response rule", rule, AR1_RULES)
    lam = np.asarray(slope, dtype=float)
    a = np.asarray(intercept, dtype=float)
    ve = np.asarray(noise_var, dtype=float)
    ok = (lam > 0) & (lam < 1) & (ve > 0)
    lam_ok = np.where(ok, lam, 0.5)  # any valid value; the result is masked below
    s2 = ve / (lam_ok * (1 + lam_ok)) if rule == "sample" else ve / lam_ok**2
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = np.where(lam != 1, a / (1 - lam), np.nan)
    prior_var = np.where(ok, lam_ok * s2 / (1 - lam_ok), np.nan)
    s2 = np.where(ok, s2, np.nan)
    if lam.ndim == 0:
        return GaussianAgentParams(rule, float(mu0), float(prior_var), float(s2))
    return GaussianAgentParams(rule, mu0, prior_var, s2)
