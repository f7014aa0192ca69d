"""Analysis of chain data: AR(1) fits recover known parameters, maximum-likelihood σ
recovers the true level, convergence distances against references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from serialrepro.chains.agents import Agent
from serialrepro.chains.analysis import (
    _bootstrap_weights,
    _energy_curve,
    analyze_chains,
    convergence_curve,
    estimate_prior,
    fit_ar1,
    fit_circular_ar1,
    pair_transition_probs,
)
from serialrepro.chains.closed_form import gaussian_chain_ar1
from serialrepro.chains.data import load_chains
from serialrepro.chains.grid_chains import transition_matrix
from serialrepro.grid.space import GridSpace
from serialrepro.particles.chains import particle_chains
from serialrepro.particles.priors import GaussianMixturePrior, GridDensityPrior


def _to_table(states: np.ndarray, tmp_path, name="chains.csv", col="x"):
    """[I + 1, C] states -> a long CSV -> a loaded ChainTable."""
    n_it, c = states.shape
    frame = pd.DataFrame({"chain": np.tile(np.arange(c), n_it),
                          "iteration": np.repeat(np.arange(n_it), c),
                          col: states.reshape(-1)})
    frame.to_csv(tmp_path / name, index=False)
    return load_chains(tmp_path / name, [col])


@pytest.mark.parametrize("rule", ["sample", "mean"])
def test_ar1_fit_recovers_the_gaussian_agent(rule, tmp_path):
    mu0, s0, s = 0.3, 0.2, 0.15
    agent = Agent(GaussianMixturePrior([[mu0]], [s0**2]), "gaussian", s, rule)
    start = torch.linspace(-0.5, 1.1, 400, dtype=torch.float64).unsqueeze(-1)
    states = particle_chains(agent, start, 15, seed=4)[:, :, 0].numpy()
    t = _to_table(states, tmp_path)
    x, xn, chain = t.transitions()
    fit = fit_ar1(x[:, 0], xn[:, 0], chain, len(t.chain_keys), n_boot=100, seed=1)
    est = dict(zip(fit["quantity"], fit["estimate"], strict=True))
    ar = gaussian_chain_ar1(mu0, s0**2, s**2, rule)
    assert est["slope"] == pytest.approx(ar.slope, abs=0.02)
    assert est["fixed_point"] == pytest.approx(mu0, abs=0.01)
    assert est["noise_var"] == pytest.approx(ar.noise_var, rel=0.05)
    assert est[f"prior_var[{rule}]"] == pytest.approx(s0**2, rel=0.15)
    assert est[f"perceptual_noise_var[{rule}]"] == pytest.approx(s**2, rel=0.15)
    row = fit.set_index("quantity").loc["slope"]
    assert row["lower"] < ar.slope < row["upper"]


def test_circular_ar1_fit_recovers_a_fixed_point_across_the_seam():
    """Wrapped AR(1) around 170° (0.472 turn): many transitions cross ±180°."""
    rng = np.random.default_rng(0)
    mu, lam, sd, period = 170 / 360, 0.7, 0.04, 360.0
    n_chains, n_it = 300, 12
    u = np.empty((n_chains, n_it))
    u[:, 0] = rng.uniform(-0.5, 0.5, n_chains)
    for n in range(1, n_it):  # the data-generating process, written out for the test
        dev = np.mod(u[:, n - 1] - mu + 0.5, 1) - 0.5
        u[:, n] = np.mod(mu + lam * dev + sd * rng.standard_normal(n_chains) + 0.5, 1) - 0.5
    x, xn = u[:, :-1].reshape(-1), u[:, 1:].reshape(-1)
    chain = np.repeat(np.arange(n_chains), n_it - 1)
    fit = fit_circular_ar1(x, xn, chain, n_chains, period, n_boot=30, seed=0)
    est = fit.set_index("quantity")
    assert est.loc["fixed_point", "estimate"] == pytest.approx(170, abs=1.0)
    assert est.loc["slope", "estimate"] == pytest.approx(lam, abs=0.03)
    assert est.loc["noise_var", "estimate"] == pytest.approx((sd * period) ** 2, rel=0.08)
    assert est.loc["fixed_point", "lower"] < 170 < est.loc["fixed_point", "upper"]


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_maximum_likelihood_sigma_recovers_the_true_level(family, tmp_path):
    """Chains of a Bayesian agent with a bimodal prior; the fit sees only the table.
    Tolerance: 10 % (measured errors are about 1-3 %)."""
    sigma = 0.06
    prior = GaussianMixturePrior([[-0.15], [0.12]], [0.002, 0.003], n_support=3000)
    agent = Agent(prior, family, sigma)
    start = torch.linspace(-0.35, 0.35, 300, dtype=torch.float64).unsqueeze(-1)
    states = particle_chains(agent, start, 12, seed=3)[:, :, 0].numpy() * 50.0  # data units
    a = analyze_chains(_to_table(states, tmp_path), family=family, n_boot=10, seed=0)
    fit = a.noise_fit
    assert fit.sigma_data == pytest.approx(sigma * 50.0, rel=0.10)
    # the profile peaks near the optimum, and a clearly wrong level fits worse
    best = fit.profile.loc[fit.profile["loglik_cells"].idxmax(), "sigma_data"]
    assert best == pytest.approx(sigma * 50, rel=0.5)
    assert fit.loglik > fit.profile["loglik_cells"].max() - 1e-9
    assert a.model_unit.shape == a.unit.shape
    assert a.model_convergence["distance"].iloc[0] > a.model_convergence["distance"].iloc[-1]


def test_energy_distance_matches_scipy_and_jsd_curve_converges():
    rng = np.random.default_rng(1)
    c, n_it = 80, 6
    u = rng.normal(size=(c, n_it, 1)) * np.linspace(3, 1, n_it)[None, :, None]
    out = _energy_curve(u, 2, _bootstrap_weights(c, 0, 0))[0]
    ref = u[:, -2:].reshape(-1)
    for i in range(n_it):
        # scipy returns (2E|X−Y| − E|X−X'| − E|Y−Y'|)^½
        assert out[i] == pytest.approx(scipy.stats.energy_distance(u[:, i, 0], ref) ** 2,
                                       rel=1e-10)
    # 3-D data take the energy path; 1-D the histogram JSD with bootstrap bands
    u3 = rng.normal(size=(c, n_it, 3)) * np.linspace(3, 1, n_it)[None, :, None]
    e = convergence_curve(u3, np.arange(n_it), 2, n_boot=50)
    assert (e["metric"] == "energy_distance").all()
    assert e["distance"].iloc[0] > 10 * abs(e["distance"].iloc[-1])
    j = convergence_curve(u[..., :1], np.arange(n_it), 2, bins=10, n_boot=50)
    assert (j["metric"] == "jsd_bits").all() and j["distance"].iloc[0] > j["distance"].iloc[-1]
    assert ((j["lower"] <= j["distance"] + 1e-12) | (j["upper"] >= j["distance"])).all()


def test_circular_prior_estimate_is_periodic_and_normalised():
    rng = np.random.default_rng(2)
    v = (np.mod(0.48 + 0.05 * rng.standard_normal(400) + 0.5, 1) - 0.5)[:, None]
    p = estimate_prior(v, circular=True)
    g = np.linspace(-0.5, 0.5, 2001)
    dens = p.density(g[:, None])
    assert dens[0] == pytest.approx(dens[-1], rel=1e-3)  # no seam
    # the images ±1 turn are 3 copies of the data: one turn holds a third of the mass
    assert np.trapezoid(dens, g) * 3 == pytest.approx(1.0, abs=0.01)
    assert abs(g[np.argmax(dens)]) > 0.4  # the mode sits at the seam


def test_three_dimensional_data_get_the_energy_path_and_notes(tmp_path):
    rng = np.random.default_rng(3)
    shrink = 1 + np.arange(5)[:, None]
    rows = [{"chain": c, "iteration": i, "a": v[0], "b": v[1], "c": v[2]}
            for c in range(30) for i, v in enumerate(rng.normal(size=(5, 3)) / shrink)]
    pd.DataFrame(rows).to_csv(tmp_path / "d3.csv", index=False)
    a = analyze_chains(load_chains(tmp_path / "d3.csv", ["a", "b", "c"]), n_boot=5)
    assert a.summary["convergence_metric"] == "energy_distance"
    assert a.ar1 is None and a.noise_fit is None
    assert any("1-D" in n for n in a.notes) and any("3-D" in n for n in a.notes)
    assert math.isfinite(a.summary["final_distance"])


@pytest.mark.parametrize("rule,production", [("sample", 0.0), ("sample", 0.03), ("mean", 0.0)])
def test_pair_probabilities_equal_the_dense_transition_matrix(rule, production):
    space = GridSpace.torus(10, dims=2)
    q = GaussianMixturePrior([[0.1, 0.0], [-0.2, 0.1]], [0.01, 0.02]).on_grid(space)
    agent = Agent(GridDensityPrior(space, q), "laplace", 0.07, rule, production)
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, space.size, (300,), generator=g)
    j = torch.randint(0, space.size, (300,), generator=g)
    dense = transition_matrix(agent, space, prior=q)
    assert torch.allclose(pair_transition_probs(agent, space, q, i, j, block=64), dense[j, i],
                          rtol=1e-12, atol=1e-15)
