"""The Gaussian AR(1) closed forms (docs/design.md §1): algebra, inversion, and simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

from serialrepro.chains.agents import Agent
from serialrepro.chains.closed_form import (
    gaussian_chain_ar1,
    invert_ar1,
    shrinkage,
    stationary_var,
)
from serialrepro.chains.grid_chains import grid_chain_marginals, point_masses
from serialrepro.chains.particle_chains import particle_chains
from serialrepro.grid.space import GridSpace
from serialrepro.particles.posterior import gmm_posterior
from serialrepro.particles.priors import GaussianMixturePrior


def test_stationary_variances_follow_from_the_ar1_algebraically():
    s0, s = sp.symbols("s0 s", positive=True)
    lam = s0**2 / (s0**2 + s**2)
    # sample rule: Var e = λ(1+λ)s², stationary Var e/(1−λ²) = s0²
    assert sp.simplify(lam * (1 + lam) * s**2 / (1 - lam**2) - s0**2) == 0
    # mean rule: x' = λ(x + ε) + (1−λ)μ0 → Var e = λ²s², stationary s0⁴/(2s0²+s²)
    assert sp.simplify(lam**2 * s**2 / (1 - lam**2) - s0**4 / (2 * s0**2 + s**2)) == 0


@pytest.mark.parametrize("rule", ["sample", "mean"])
def test_ar1_functions_are_consistent(rule):
    ar = gaussian_chain_ar1(0.3, 0.04, 0.01, rule)
    assert ar.slope == pytest.approx(shrinkage(0.04, 0.01)) == pytest.approx(0.8)
    assert ar.fixed_point == pytest.approx(0.3)
    assert ar.stationary_var == pytest.approx(stationary_var(0.04, 0.01, rule))
    # the variance recursion reaches the stationary variance; the mean decays as λⁿ
    assert ar.var(500, 1.0) == pytest.approx(ar.stationary_var)
    assert ar.mean(3, 1.3) == pytest.approx(0.3 + 0.8**3)
    inv = invert_ar1(ar.slope, ar.intercept, ar.noise_var, rule)
    assert (inv.mu0, inv.prior_var, inv.noise_var) == pytest.approx((0.3, 0.04, 0.01))
    # inverting under the other rule gives a different, wrong agent
    other = invert_ar1(ar.slope, ar.intercept, ar.noise_var,
                       "mean" if rule == "sample" else "sample")
    assert other.prior_var != pytest.approx(0.04, rel=0.05)


def test_posterior_mean_is_the_mean_rule_regression():
    """E[x | y] = λy + (1−λ)μ0 from the closed-form mixture posterior (one component)."""
    prior = GaussianMixturePrior([[0.1]], [0.02])
    y = torch.linspace(-1, 1, 7, dtype=torch.float64).unsqueeze(-1)
    logw, means, chol = gmm_posterior(y, prior, math.sqrt(0.005))
    lam = 0.02 / 0.025
    assert torch.allclose(means[:, 0, 0], lam * y[:, 0] + (1 - lam) * 0.1, atol=1e-12)
    assert float(chol[0, 0, 0] ** 2) == pytest.approx(lam * 0.005)


def _z(observed, expected, se):
    return np.abs((np.asarray(observed) - expected) / se)


@pytest.mark.parametrize("rule,production", [("sample", 0.0), ("mean", 0.0), ("sample", 0.02)])
def test_monte_carlo_chains_match_the_ar1(rule, production):
    mu0, s0, s = 0.05, 0.1, 0.07
    agent = Agent(GaussianMixturePrior([[mu0]], [s0**2]), "gaussian", s, rule, production)
    ar = gaussian_chain_ar1(mu0, s0**2, s**2, rule, production**2)
    n_chains, n_it = 4000, 12
    x = particle_chains(agent, torch.full((n_chains, 1), 0.6), n_it, seed=11)[:, :, 0].numpy()
    its = np.arange(n_it + 1)
    mean_exp, var_exp = ar.mean(its, 0.6), ar.var(its, 0.0)
    m, v = x.mean(1), x.var(1, ddof=1)
    assert _z(m[1:], mean_exp[1:], np.sqrt(var_exp[1:] / n_chains)).max() < 4.5
    assert _z(v[1:], var_exp[1:], var_exp[1:] * math.sqrt(2 / (n_chains - 1))).max() < 4.5
    # lag-1 and lag-2 autocorrelation at stationarity, chains started from the stationary law
    start = mu0 + math.sqrt(ar.stationary_var) * torch.randn(
        n_chains, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = particle_chains(agent, start, 3, seed=12)[:, :, 0].numpy()
    r1, r2 = np.corrcoef(y[1], y[2])[0, 1], np.corrcoef(y[1], y[3])[0, 1]
    assert _z(r1, ar.autocorr(1), (1 - ar.slope**2) / math.sqrt(n_chains)) < 4.5
    assert _z(r2, ar.autocorr(2), (1 - ar.slope**4) / math.sqrt(n_chains)) < 4.5
    assert _z(y[3].var(ddof=1), ar.stationary_var,
              ar.stationary_var * math.sqrt(2 / n_chains)) < 4.5


@pytest.mark.parametrize("rule", ["sample", "mean", "map"])
def test_grid_exact_chains_match_the_ar1(rule):
    """Exact propagation on a fine 1-D grid: moments equal the closed form up to the
    grid's discretisation."""
    mu0, s0, s = 0.02, 0.04, 0.03
    space = GridSpace.torus(512, dims=1)
    agent = Agent(GaussianMixturePrior([[mu0]], [s0**2]), "gaussian", s, rule)
    start = point_masses(space, torch.tensor([[0.2]]))
    p = grid_chain_marginals(agent, space, start, 25)[:, 0]
    x = space.points()[:, 0]
    mean = (p * x).sum(-1).numpy()
    var = ((p * x**2).sum(-1) - (p * x).sum(-1) ** 2).numpy()
    ar = gaussian_chain_ar1(mu0, s0**2, s**2, rule)
    its = np.arange(26)
    # sample: the discretised Gaussians keep their moments to round-off (measured 1.5e-14);
    # mean/map: rounding each response to the nearest grid point (measured 8.8e-4)
    tol = 1e-10 if rule == "sample" else 2e-3
    assert np.abs(mean - ar.mean(its, float(x[torch.argmax(start[0])]))).max() < tol / 10
    assert np.abs(var[1:] / ar.var(its[1:], 0.0) - 1).max() < tol
    assert var[-1] == pytest.approx(stationary_var(s0**2, s**2, rule), rel=tol)


def test_a_level_schedule_composes_one_ar1_per_iteration():
    """σ_n changes per iteration: E x_n = μ0 + Π_k λ_k (x0 − μ0), with λ_k = s0²/(s0² + σ_k²)."""
    mu0, s0 = 0.0, 0.1
    levels = [0.05, 0.1, 0.2]
    agent = Agent(GaussianMixturePrior([[mu0]], [s0**2]), "gaussian", 0.1)
    x = particle_chains(agent, torch.full((4000, 1), 0.5), 3, seed=2, levels=levels)[:, :, 0]
    mean, var = 0.5, 0.0
    for n, s in enumerate(levels):
        ar = gaussian_chain_ar1(mu0, s0**2, s**2)
        mean, var = float(ar.mean(1, mean)), float(ar.slope**2 * var + ar.noise_var)
        assert _z(float(x[n + 1].mean()), mean, math.sqrt(var / 4000)) < 4.5
        assert _z(float(x[n + 1].var()), var, var * math.sqrt(2 / 3999)) < 4.5
