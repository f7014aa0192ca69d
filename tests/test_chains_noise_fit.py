"""The noise fit without dense matrices: likelihood paths against the dense transition
matrix, recovery of known σ (1-D, 2-D, circular von Mises), refinement below the default
grid cell, bounds, interval coverage, determinism and simulation of the fitted agent."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from serialrepro.chains import noise_fit
from serialrepro.chains.agents import Agent
from serialrepro.chains.grid_chains import sample_grid_chains, transition_matrix
from serialrepro.chains.noise_fit import (
    DEFAULT_GRID_N,
    NoiseFit,
    fit_noise_level,
    grid_prior,
    simulate_fitted,
    transition_probs,
)
from serialrepro.chains.particle_chains import particle_chains
from serialrepro.errors import UserInputError
from serialrepro.families import FAMILIES, GRID, family_names, von_mises_kappa
from serialrepro.grid.space import GridSpace
from serialrepro.particles.priors import GaussianMixturePrior, GridDensityPrior

ALL = sorted(family_names(GRID))
#: rules and production noise levels the general path must match the dense matrix for
RULE_CASES = [("sample", 0.0), ("sample", 0.05), ("mean", 0.0), ("mean", 0.04), ("map", 0.0)]


def _mixed_prior(space: GridSpace, seed: int) -> torch.Tensor:
    """A rough prior mixed with uniform: K q stays far above the FFT round-off floor, where
    the FFT and dense paths agree to 1e−10 (grid/kernels.py)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(space.shape, generator=g, dtype=torch.float64) ** 3
    return 0.9 * q / q.sum() + 0.1 / space.size


def _dense_probs(space, family, sigma, q, i, j, rule="sample", tau=0.0, circular=False):
    agent = Agent(GridDensityPrior(space, q), family, sigma, rule, tau, circular=circular)
    return transition_matrix(agent, space, prior=q)[j, i]


@pytest.mark.parametrize("space", [GridSpace.torus(24, 1), GridSpace.torus(10, 2)],
                         ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_paths_equal_the_dense_transition_matrix(name: str, space: GridSpace) -> None:
    q = _mixed_prior(space, 1)
    g = torch.Generator().manual_seed(2)
    i = torch.randint(0, space.size, (400,), generator=g)
    j = torch.randint(0, space.size, (400,), generator=g)
    sigma = 0.3 if name.startswith("fade") else 0.07
    for rule, tau in RULE_CASES:
        ref = _dense_probs(space, name, sigma, q, i, j, rule, tau)
        got = transition_probs(space, name, sigma, q, i, j, rule=rule, production_sigma=tau,
                               path="general")
        assert torch.allclose(got, ref, rtol=0, atol=1e-10), (rule, tau)
    if space.dims == 1:  # the circular mean response
        ref = _dense_probs(space, name, sigma, q, i, j, "mean", 0.0, circular=True)
        got = transition_probs(space, name, sigma, q, i, j, rule="mean", circular=True)
        assert torch.allclose(got, ref, rtol=0, atol=1e-10)
    ref = _dense_probs(space, name, sigma, q, i, j)
    if FAMILIES[name].grid_axis_terms(space.axis_offsets(), sigma, space.spacing) is None or (
            FAMILIES[name].grid_rank_one_coef(sigma) != 0):
        with pytest.raises(UserInputError, match="separable"):
            transition_probs(space, name, sigma, q, i, j, path="separable")
    else:
        got = transition_probs(space, name, sigma, q, i, j, path="separable")
        assert torch.allclose(got, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["gaussian", "trimodal", "student-t"])
def test_chunked_computations_give_the_same_probabilities(name, monkeypatch) -> None:
    """Tiny chunks (many blocks of pairs, starts and replicates) change nothing."""
    space = GridSpace.torus(12, 2)
    q = _mixed_prior(space, 3)
    g = torch.Generator().manual_seed(5)
    i = torch.randint(0, space.size, (500,), generator=g)
    j = torch.randint(0, space.size, (500,), generator=g)
    whole = [transition_probs(space, name, 0.06, q, i, j, rule=r, production_sigma=t)
             for r, t in (("sample", 0.0), ("sample", 0.03), ("mean", 0.0))]
    monkeypatch.setattr(noise_fit, "CHUNK", 40)
    parts = [transition_probs(space, name, 0.06, q, i, j, rule=r, production_sigma=t)
             for r, t in (("sample", 0.0), ("sample", 0.03), ("mean", 0.0))]
    for a, b in zip(whole, parts, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_separable_path_keeps_the_tails_exact() -> None:
    """Where K q is far below an FFT's round-off (a prior with empty regions, a narrow
    kernel), the separable path still equals the dense matrix, relatively."""
    space = GridSpace.torus(40, 1)
    q = torch.zeros(space.shape, dtype=torch.float64)
    q[5:12] = 1.0
    q[25:30] = 2.0
    q = q / q.sum()
    i = torch.arange(space.size).repeat_interleave(space.size)
    j = torch.arange(space.size).repeat(space.size)
    ref = _dense_probs(space, "gaussian", 0.02, q, i, j)
    got = transition_probs(space, "gaussian", 0.02, q, i, j, path="separable")
    keep = ref > 1e-250
    assert torch.allclose(got[keep], ref[keep], rtol=1e-9, atol=0)


def _gmm_chains(prior, family, sigma, n_chains, n_iterations, seed):
    agent = Agent(prior, family, sigma)
    start = prior.sample(n_chains, torch.Generator().manual_seed(seed))
    traj = particle_chains(agent, start, n_iterations, seed=seed + 1).numpy()  # [I+1, C, D]
    x = traj[:-1].reshape(-1, prior.dims)
    xn = traj[1:].reshape(-1, prior.dims)
    chain = np.tile(np.arange(n_chains), n_iterations)
    return x, xn, chain


def _density(prior):
    return lambda pts: torch.exp(prior.log_prob(torch.from_numpy(pts))).numpy()


def test_recovers_sigma_in_1d() -> None:
    prior = GaussianMixturePrior([[-0.15], [0.12]], [0.003, 0.002])
    x, xn, chain = _gmm_chains(prior, "gaussian", 0.03, 200, 10, seed=3)
    fit = fit_noise_level(x, xn, cluster=chain, prior_density=_density(prior), dims=1)
    assert fit.ci_method == "bootstrap" and fit.n_clusters == 200
    assert fit.sigma_unit == pytest.approx(0.03, rel=0.05)
    assert fit.sigma_ci_unit[0] < 0.03 < fit.sigma_ci_unit[1]
    assert fit.sigma_ci_unit[0] <= fit.sigma_unit <= fit.sigma_ci_unit[1]
    assert not fit.at_bound and fit.warnings == []
    assert fit.cell_unit <= fit.sigma_unit / 4 and fit.n_transitions == len(x)
    assert fit.sigma_data(360.0) == pytest.approx(360 * fit.sigma_unit)
    d = fit.as_dict(scale=2.0)
    assert d["sigma_ci"] == [2 * fit.sigma_ci_unit[0], 2 * fit.sigma_ci_unit[1]]


def test_sigma_below_one_default_cell_is_recovered_by_refinement_in_2d() -> None:
    sigma = 0.012  # below the old default cell 1/48 ≈ 0.0208
    prior = GaussianMixturePrior([[0.1, 0.08], [-0.1, -0.05]], [0.002, 0.003])
    x, xn, chain = _gmm_chains(prior, "gaussian", sigma, 250, 10, seed=5)
    fit = fit_noise_level(x, xn, cluster=chain, prior_density=_density(prior), dims=2)
    first_n, first_sigma = fit.refinements[0]
    assert first_n == DEFAULT_GRID_N[2] == 48
    assert first_sigma < 2 / 48  # the default grid cannot resolve it: within one cell
    assert len(fit.refinements) >= 2 and fit.grid_n >= 4 / fit.sigma_unit
    assert fit.cell_unit <= fit.sigma_unit / 4
    assert not fit.at_bound
    assert fit.sigma_unit == pytest.approx(sigma, rel=0.05)
    assert fit.sigma_ci_unit[0] < sigma < fit.sigma_ci_unit[1]


def test_at_bound_without_refinement_and_at_the_grid_limit() -> None:
    prior = GaussianMixturePrior([[0.1, 0.08], [-0.1, -0.05]], [0.002, 0.003])
    x, xn, chain = _gmm_chains(prior, "gaussian", 0.012, 100, 5, seed=7)
    fit = fit_noise_level(x, xn, prior_density=_density(prior), dims=2, refine=False)
    assert fit.at_bound and fit.grid_n == 48 and fit.ci_method == "profile"
    assert any("resolution limit" in w for w in fit.warnings)
    fit = fit_noise_level(x, xn, prior_density=_density(prior), dims=2, max_grid_n=56)
    assert fit.at_bound and fit.grid_n == 56
    assert any("refinement stopped at the grid limit 56" in w for w in fit.warnings)


def test_at_bound_at_the_upper_search_bound() -> None:
    """Responses independent of the stimulus: σ̂ runs to the upper bound, flagged."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.3, 0.3, (400, 1))
    xn = rng.uniform(-0.3, 0.3, (400, 1))
    fit = fit_noise_level(x, xn, prior_density=lambda p: (np.abs(p[:, 0]) <= 0.3) * 1.0,
                          dims=1)
    assert fit.at_bound and fit.sigma_unit == pytest.approx(0.5, rel=1e-2)
    assert any("upper search bound" in w for w in fit.warnings)


def _vm_mixture(space: GridSpace, centres, kappa) -> torch.Tensor:
    u = space.points()[:, 0]
    dens = sum(torch.exp(kappa * (torch.cos(2 * math.pi * (u - c)) - 1)) for c in centres)
    return (dens / dens.sum()).reshape(space.shape)


def _exact_transitions(agent, space, q, n_chains: int, n_iterations: int, seed: int):
    """Transitions (x_n, x_n+1) [C·I, 1] of chains drawn exactly from the agent's dense
    transition matrix on a 1-D grid, started from the prior q."""
    t = transition_matrix(agent, space, prior=q)
    start = torch.multinomial(q.reshape(-1), n_chains, replacement=True,
                              generator=torch.Generator().manual_seed(seed))
    idx = sample_grid_chains(t, start, n_iterations, seed=seed).numpy()  # [I+1, C]
    pts = space.points().numpy()[:, 0]
    return pts[idx[:-1]].reshape(-1, 1), pts[idx[1:]].reshape(-1, 1)


def test_recovers_von_mises_noise_on_the_circle_with_several_attractors() -> None:
    space = GridSpace.torus(360, 1)  # one cell per degree
    centres = (-0.35, -0.05, 0.25)
    q = _vm_mixture(space, centres, 60.0)
    sigma = 0.03  # circular std in turns (10.8°)
    agent = Agent(GridDensityPrior(space, q), "von-mises", sigma, circular=True)
    x, xn = _exact_transitions(agent, space, q, 150, 12, seed=4)
    chain = np.tile(np.arange(150), 12)

    def dens(p):
        return _vm_mixture_np(p[:, 0], centres, 60.0)

    fit = fit_noise_level(x, xn, cluster=chain, prior_density=dens, family="von-mises",
                          dims=1, circular=True, grid_n=360)
    assert fit.grid_n == 360 and not fit.at_bound
    assert fit.sigma_unit == pytest.approx(sigma, rel=0.06)
    assert fit.sigma_ci_unit[0] < sigma < fit.sigma_ci_unit[1]
    # the chains really visit several attractors
    visited = {int(np.argmin(np.abs(((v - np.array(centres) + 0.5) % 1) - 0.5)))
               for v in xn[:, 0]}
    assert visited == {0, 1, 2}


def _vm_mixture_np(u, centres, kappa):
    return sum(np.exp(kappa * (np.cos(2 * np.pi * (u - c)) - 1)) for c in centres)


def test_mean_rule_with_production_noise_is_recovered() -> None:
    """The general path inside the fit: a posterior-mean agent with motor noise."""
    space = GridSpace.torus(120, 1)
    q = _vm_mixture(space, (-0.2, 0.15), 30.0)
    agent = Agent(GridDensityPrior(space, q), "gaussian", 0.05, "mean", 0.02)
    x, xn = _exact_transitions(agent, space, q, 200, 8, seed=8)
    fit = fit_noise_level(x, xn,
                          prior_density=lambda p: _vm_mixture_np(p[:, 0], (-0.2, 0.15), 30.0),
                          rule="mean", production_sigma_unit=0.02, dims=1, grid_n=120,
                          refine=False)
    assert fit.sigma_unit == pytest.approx(0.05, rel=0.08)
    assert fit.sigma_ci_unit[0] < 0.05 < fit.sigma_ci_unit[1]


def test_weight_levels_are_searched_in_the_unit_interval() -> None:
    """A fade level is a mixture weight: searched in [10⁻³, 1], never refined."""
    space = GridSpace.torus(64, 1)
    q = _vm_mixture(space, (-0.2, 0.15), 30.0)
    agent = Agent(GridDensityPrior(space, q), "fade-uniform", 0.3)
    x, xn = _exact_transitions(agent, space, q, 300, 6, seed=9)
    fit = fit_noise_level(x, xn,
                          prior_density=lambda p: _vm_mixture_np(p[:, 0], (-0.2, 0.15), 30.0),
                          family="fade-uniform", dims=1, grid_n=64)
    assert not fit.level_is_scale and fit.refinements == [(64, fit.sigma_unit)]
    assert fit.sigma_ci_unit[0] < 0.3 < fit.sigma_ci_unit[1]
    assert fit.sigma_data(360.0) is None and fit.as_dict(360.0)["sigma_ci"] is None


def test_interval_coverage_over_100_replications(capsys) -> None:
    """Coverage of the 95 % clustered-bootstrap (and profile) σ intervals on simulated
    chains with known σ: 100 replications of 30 chains × 8 iterations."""
    prior = GaussianMixturePrior([[-0.12], [0.1]], [0.002, 0.003])
    dens = _density(prior)
    sigma = 0.05
    hits_boot = hits_prof = 0
    reps = 100
    for r in range(reps):
        x, xn, chain = _gmm_chains(prior, "gaussian", sigma, 30, 8, seed=1000 + 7 * r)
        fit = fit_noise_level(x, xn, cluster=chain, prior_density=dens, dims=1, grid_n=120,
                              n_boot=200, seed=r)
        hits_boot += fit.sigma_ci_unit[0] <= sigma <= fit.sigma_ci_unit[1]
        hits_prof += fit.profile_ci_unit[0] <= sigma <= fit.profile_ci_unit[1]
    with capsys.disabled():
        print(f"\n95 % σ interval coverage over {reps} replications: clustered bootstrap "
              f"{hits_boot / reps:.2f}, profile likelihood {hits_prof / reps:.2f}")
    assert 0.90 <= hits_boot / reps <= 0.99
    assert 0.90 <= hits_prof / reps <= 0.99


def test_fit_is_deterministic_with_a_seed(monkeypatch) -> None:
    prior = GaussianMixturePrior([[-0.12], [0.1]], [0.002, 0.003])
    x, xn, chain = _gmm_chains(prior, "gaussian", 0.05, 30, 6, seed=11)
    kw = dict(cluster=chain, prior_density=_density(prior), dims=1, n_boot=100)
    a = fit_noise_level(x, xn, seed=1, **kw)
    b = fit_noise_level(x, xn, seed=1, **kw)
    c = fit_noise_level(x, xn, seed=2, **kw)
    assert a.sigma_unit == b.sigma_unit and a.sigma_ci_unit == b.sigma_ci_unit
    assert a.sigma_unit == c.sigma_unit and a.sigma_ci_unit != c.sigma_ci_unit
    monkeypatch.setattr(noise_fit, "CHUNK", 1000)  # replicates in blocks of a few
    d = fit_noise_level(x, xn, seed=1, **kw)
    assert d.sigma_ci_unit == pytest.approx(a.sigma_ci_unit, rel=1e-9)


def _fit_record(space: GridSpace, family: str, sigma: float, rule="sample", tau=0.0,
                circular=False) -> NoiseFit:
    return NoiseFit(family=family, rule=rule, sigma_unit=sigma, sigma_ci_unit=(sigma, sigma),
                    ci_method="profile", at_bound=False, grid_n=space.n,
                    cell_unit=space.spacing, refinements=[(space.n, sigma)], profile=None,
                    loglik=0.0, n_transitions=0, warnings=[], dims=space.dims,
                    circular=circular, production_sigma_unit=tau)


@pytest.mark.parametrize("family,rule,tau", [("gaussian", "sample", 0.0),
                                             ("von-mises", "sample", 0.03),
                                             ("student-t", "mean", 0.03)])
def test_simulated_one_step_law_is_the_transition_column(family, rule, tau) -> None:
    space = GridSpace.torus(40, 1)
    q = _vm_mixture(space, (-0.2, 0.2), 8.0)
    dens = lambda p: _vm_mixture_np(p[:, 0], (-0.2, 0.2), 8.0)  # noqa: E731
    fit = _fit_record(space, family, 0.06, rule, tau, circular=True)
    n = 20_000
    start = np.full((n, 1), space.points()[7, 0].item())
    sims = simulate_fitted(fit, start, 1, prior_density=dens, seed=3)
    assert sims.shape == (n, 2, 1)
    agent = Agent(GridDensityPrior(space, q), family, 0.06, rule, tau, circular=True)
    col = transition_matrix(agent, space, prior=q)[:, 7].numpy()
    hits = np.round((sims[:, 1, 0] + 0.5) * space.n).astype(int) % space.n
    freq = np.bincount(hits, minlength=space.size) / n
    assert np.all(np.abs(freq - col) <= 5 * np.sqrt(col * (1 - col) / n) + 1e-12)


def test_simulate_fitted_reproduces_the_stationary_prior_and_is_seeded() -> None:
    space = GridSpace.torus(24, 2)
    prior = GaussianMixturePrior([[0.12, 0.1], [-0.1, -0.12]], [0.004, 0.006])
    dens = _density(prior)
    fit = _fit_record(space, "gaussian", 0.08)
    n = 12_000
    start = np.zeros((n, 2))  # every chain from the same point
    sims = simulate_fitted(fit, start, 25, prior_density=dens, seed=1)
    assert sims.shape == (n, 26, 2)
    again = simulate_fitted(fit, start[:700], 25, prior_density=dens, seed=1)
    assert np.array_equal(again, sims[:700])  # chain c depends on (seed, c) only
    other = simulate_fitted(fit, start[:700], 25, prior_density=dens, seed=2)
    assert not np.array_equal(other, again)
    q = grid_prior(space, dens).reshape(space.shape).numpy()

    def coarse(p):  # 6 × 6 blocks of 4 × 4 cells
        return p.reshape(6, 4, 6, 4).sum((1, 3))

    def hist(pts):
        idx = np.round((pts + 0.5) * space.n).astype(int) % space.n
        return np.bincount(idx[:, 0] * space.n + idx[:, 1], minlength=space.size).reshape(
            space.shape) / len(idx)

    # multinomial noise of 12 000 draws over ~20 occupied blocks: total variation ≈ 0.015
    assert 0.5 * np.abs(coarse(hist(sims[:, -1])) - coarse(q)).sum() < 0.035
    assert 0.5 * np.abs(coarse(hist(sims[:, 1])) - coarse(q)).sum() > 0.2  # one step: not yet


def test_von_mises_level_is_the_circular_standard_deviation() -> None:
    fam = FAMILIES["von-mises"]
    g = torch.Generator().manual_seed(0)
    for level in (0.01, 0.08, 0.3):
        d = fam.sample(torch.zeros(100_000, 1, dtype=torch.float64), level, g)
        assert d.min() >= -0.5 and d.max() < 0.5
        r = torch.cos(2 * math.pi * d).mean().item()
        assert math.sqrt(-2 * math.log(r)) / (2 * math.pi) == pytest.approx(level, rel=0.02)
    # small levels: the Gaussian of the same std; large: uniform
    assert von_mises_kappa(1e-4) == pytest.approx(1 / (2 * math.pi * 1e-4) ** 2, rel=1e-3)
    assert von_mises_kappa(5.0) == 0.0


def test_bad_input_is_refused() -> None:
    x = np.zeros((10, 1))
    dens = lambda p: np.ones(len(p))  # noqa: E731
    with pytest.raises(UserInputError, match="interval method"):
        fit_noise_level(x, x, prior_density=dens, ci="jackknife")
    with pytest.raises(UserInputError, match="response rule"):
        fit_noise_level(x, x, prior_density=dens, rule="guess")
    with pytest.raises(UserInputError, match="noise family"):
        fit_noise_level(x, x, prior_density=dens, family="pink")
    with pytest.raises(UserInputError, match=r"inside \(−0.5, 0.5\)"):
        fit_noise_level(x + 0.7, x, prior_density=dens)
    with pytest.raises(UserInputError, match="1-D or 2-D"):
        fit_noise_level(np.zeros((10, 3)), np.zeros((10, 3)), prior_density=dens)
    with pytest.raises(UserInputError, match="cluster has 3 entries"):
        fit_noise_level(x, x, prior_density=dens, cluster=np.arange(3))
    with pytest.raises(UserInputError, match="no mass"):
        fit_noise_level(x, x, prior_density=lambda p: np.zeros(len(p)))
