"""Analysis of chain data: AR(1) fits recover known parameters (and flag non-stationary
chains), the orchestrator recovers σ and writes strict summaries, 3-D data take the energy
path, and the summary's keys are kept."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from serialrepro.chains.agents import Agent
from serialrepro.chains.analysis import analyze_chains
from serialrepro.chains.ar1 import fit_ar1, fit_circular_ar1
from serialrepro.chains.closed_form import gaussian_chain_ar1
from serialrepro.chains.coordinates import Coordinates, cluster_weights
from serialrepro.chains.data import load_chains
from serialrepro.chains.particle_chains import particle_chains
from serialrepro.particles.priors import GaussianMixturePrior


def _to_table(states: np.ndarray, tmp_path, name="chains.csv", col="x", **kw):
    """[I + 1, C] states -> a long CSV -> a loaded ChainTable."""
    n_it, c = states.shape
    frame = pd.DataFrame({"chain": np.tile(np.arange(c), n_it),
                          "iteration": np.repeat(np.arange(n_it), c),
                          col: states.reshape(-1)})
    frame.to_csv(tmp_path / name, index=False)
    return load_chains(tmp_path / name, [col], **kw)


@pytest.mark.parametrize("rule", ["sample", "mean"])
def test_ar1_fit_recovers_the_gaussian_agent(rule, tmp_path):
    mu0, s0, s = 0.3, 0.2, 0.15
    agent = Agent(GaussianMixturePrior([[mu0]], [s0**2]), "gaussian", s, rule)
    start = torch.linspace(-0.5, 1.1, 400, dtype=torch.float64).unsqueeze(-1)
    states = particle_chains(agent, start, 15, seed=4)[:, :, 0].numpy()
    t = _to_table(states, tmp_path)
    x, xn, chain = t.transitions()
    w = cluster_weights(t.cluster_codes, 100, 1)[:, chain]
    fit = fit_ar1(x[:, 0], xn[:, 0], w)
    est = dict(zip(fit["quantity"], fit["estimate"], strict=True))
    ar = gaussian_chain_ar1(mu0, s0**2, s**2, rule)
    assert fit.attrs["stationary"]
    assert est["slope"] == pytest.approx(ar.slope, abs=0.02)
    assert est["fixed_point"] == pytest.approx(mu0, abs=0.01)
    assert est["noise_var"] == pytest.approx(ar.noise_var, rel=0.05)
    assert est[f"prior_var[{rule}]"] == pytest.approx(s0**2, rel=0.15)
    assert est[f"perceptual_noise_var[{rule}]"] == pytest.approx(s**2, rel=0.15)
    row = fit.set_index("quantity").loc["slope"]
    assert row["lower"] < ar.slope < row["upper"]


def _wrapped_ar1(mu, lam, sd, n_chains, n_it, seed):
    rng = np.random.default_rng(seed)
    u = np.empty((n_chains, n_it))
    u[:, 0] = rng.uniform(-0.5, 0.5, n_chains)
    for n in range(1, n_it):  # the data-generating process, written out for the test
        dev = np.mod(u[:, n - 1] - mu + 0.5, 1) - 0.5
        u[:, n] = np.mod(mu + lam * dev + sd * rng.standard_normal(n_chains) + 0.5, 1) - 0.5
    return u


def test_circular_ar1_fit_recovers_a_fixed_point_across_the_seam():
    """Wrapped AR(1) around 170° (0.472 turn): many transitions cross ±180°; with data in
    0–360 the fixed point is reported in that range."""
    mu, lam, sd, period = 170 / 360, 0.7, 0.04, 360.0
    n_chains, n_it = 300, 12
    u = _wrapped_ar1(mu, lam, sd, n_chains, n_it, 0)
    x, xn = u[:, :-1].reshape(-1), u[:, 1:].reshape(-1)
    w = cluster_weights(np.repeat(np.arange(n_chains), n_it - 1), 30, 0)
    est = fit_circular_ar1(x, xn, w, period, origin=-180.0).set_index("quantity")
    assert est.loc["fixed_point", "estimate"] == pytest.approx(170, abs=1.0)
    assert est.loc["slope", "estimate"] == pytest.approx(lam, abs=0.03)
    assert est.loc["noise_var", "estimate"] == pytest.approx((sd * period) ** 2, rel=0.08)
    assert est.loc["fixed_point", "lower"] < 170 < est.loc["fixed_point", "upper"]
    u2 = _wrapped_ar1(-0.45, lam, sd, n_chains, n_it, 1)  # −162° = 198° in 0–360
    fit2 = fit_circular_ar1(u2[:, :-1].reshape(-1), u2[:, 1:].reshape(-1), w, period, 0.0)
    assert fit2.set_index("quantity").loc["fixed_point", "estimate"] == pytest.approx(
        198, abs=1.5)


def test_a_random_walk_is_flagged_non_stationary():
    """λ = 1 (a random walk, linear and wrapped): no stationary variance, no fixed point,
    no prior inversion; the slope and noise are still reported."""
    rng = np.random.default_rng(5)
    c, n = 200, 15
    x = np.cumsum(rng.normal(0, 1, (c, n + 1)), axis=1) + rng.normal(0, 5, (c, 1))
    w = cluster_weights(np.repeat(np.arange(c), n), 100, 0)
    fit = fit_ar1(x[:, :-1].reshape(-1), x[:, 1:].reshape(-1), w)
    est = fit.set_index("quantity")
    assert not fit.attrs["stationary"]
    assert est.loc["slope", "upper"] >= 1
    for q in ("stationary_var", "fixed_point", "prior_var[sample]"):
        assert math.isnan(est.loc[q, "estimate"])
    assert est.loc["noise_var", "estimate"] == pytest.approx(1.0, rel=0.1)
    u = np.mod(x / 50 + 0.5, 1) - 0.5
    cfit = fit_circular_ar1(u[:, :-1].reshape(-1), u[:, 1:].reshape(-1), w, 360.0)
    assert not cfit.attrs["stationary"]
    assert math.isnan(cfit.set_index("quantity").loc["stationary_var", "estimate"])


def test_random_walk_summary_is_strict_json_with_null_variance(tmp_path):
    rng = np.random.default_rng(6)
    states = np.cumsum(rng.normal(0, 1, (13, 120)), axis=0)
    a = analyze_chains(_to_table(states, tmp_path), n_boot=40, fit_model=False)
    assert a.summary["ar1"]["stationary"] is False
    assert a.summary["ar1"]["stationary_var"] is None
    assert any("non-stationary" in w for w in a.summary["warnings"])
    json.dumps(a.summary, allow_nan=False)


def test_maximum_likelihood_sigma_recovers_the_true_level_with_an_interval(tmp_path):
    """Chains of a Bayesian agent with a bimodal prior; the fit sees only the table."""
    sigma = 0.06
    prior = GaussianMixturePrior([[-0.15], [0.12]], [0.002, 0.003], n_support=3000)
    agent = Agent(prior, "gaussian", sigma)
    start = torch.linspace(-0.35, 0.35, 300, dtype=torch.float64).unsqueeze(-1)
    states = particle_chains(agent, start, 12, seed=3)[:, :, 0].numpy() * 50.0  # data units
    a = analyze_chains(_to_table(states, tmp_path), n_boot=40, seed=0)
    nf = a.summary["noise_fit"]
    assert nf["sigma_data"] == pytest.approx(sigma * 50.0, rel=0.10)
    lo, hi = nf["sigma_ci"]
    assert lo <= nf["sigma_data"] <= hi and hi - lo < 0.5 * nf["sigma_data"]
    assert nf["at_bound"] is False
    assert a.model_unit.shape == a.unit.shape
    # keys kept from before, and the new ones
    for k in ("chains", "iterations", "dims", "transitions", "late_iterations", "circular",
              "coordinates", "convergence_metric", "initial_distance", "final_distance",
              "load", "ar1", "noise_fit", "convergence", "warnings"):
        assert k in a.summary, k
    assert a.summary["iterations"] == 12  # reproductions, not counting the start
    assert a.summary["late_density"]["modes"] == 2
    assert any("2 modes" in n for n in a.notes)


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


def test_circular_coordinates_keep_the_data_range():
    c = Coordinates.fit(np.array([[0.0], [359.0]]), circular=True, period=360.0)
    assert c.origin == 0.0 and c.domain == (0.0, 360.0)
    x = np.array([0.0, 90.0, 181.0, 359.0])
    back = c.from_unit(c.to_unit(x))
    assert np.allclose(back, x) and (back >= 0).all()
    neg = Coordinates.fit(np.array([[-170.0], [100.0]]), circular=True, period=360.0)
    assert neg.domain == (-180.0, 180.0)
    # chords: opposite points are one diameter apart
    e = c.embed(c.to_unit(np.array([[0.0], [180.0]])))
    assert np.linalg.norm(e[0] - e[1]) == pytest.approx(360 / np.pi)


def test_no_bootstrap_gives_null_intervals_and_a_verdict(tmp_path):
    rng = np.random.default_rng(8)
    x = np.empty((11, 100))
    x[0] = rng.normal(0, 3, 100)
    for n in range(10):  # slow AR(1): remembers its start
        x[n + 1] = 0.95 * x[n] + rng.normal(0, 0.3, 100)
    a = analyze_chains(_to_table(x, tmp_path), n_boot=0, fit_model=False)
    dep = a.summary["convergence"]["start_dependence"]
    assert dep["lower"] is None and dep["upper"] is None
    assert a.summary["convergence"]["converged"] is False
    assert "no interval" in a.summary["convergence"]["reasons"][0]
    json.dumps(a.summary, allow_nan=False)


def test_fast_chains_are_converged_and_their_late_density_is_called_the_prior(tmp_path):
    from serialrepro.chains.outputs import write_analysis

    rng = np.random.default_rng(9)
    x = np.empty((16, 300))
    x[0] = rng.uniform(-10, 10, 300)
    for n in range(15):  # λ = 0.3: the start is forgotten within a few iterations
        x[n + 1] = 0.3 * x[n] + rng.normal(0, 1, 300)
    a = analyze_chains(_to_table(x, tmp_path), n_boot=100, fit_model=False)
    assert a.summary["convergence"]["converged"] is True
    assert a.summary["late_density"]["name"] == "prior"
    write_analysis(a, tmp_path / "out")
    text = (tmp_path / "out" / "report.html").read_text()
    assert "Stationary prior" in text and "the agents&#x27; prior, since the chains" in text
