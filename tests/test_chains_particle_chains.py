"""Monte-Carlo chains in continuous space: agreement with grid-exact chains, log-space
posteriors, closed-form mixture posteriors, any dimension, seeded determinism."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.chains.agents import Agent
from serialrepro.chains.grid_chains import grid_chain_marginals, nearest_index, point_masses
from serialrepro.chains.particle_chains import particle_chains
from serialrepro.errors import UserInputError
from serialrepro.families import get_family
from serialrepro.grid.space import GridSpace
from serialrepro.particles.posterior import respond, support_log_posterior
from serialrepro.particles.priors import (
    GaussianMixturePrior,
    GridDensityPrior,
    PointSetPrior,
    Support,
)
from serialrepro.particles.rng import gumbel_argmax

GEN = torch.Generator



def _moments(p: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    m = float((p * x).sum())
    return m, float((p * x * x).sum()) - m * m


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
@pytest.mark.parametrize("rule", ["sample", "mean"])
def test_monte_carlo_agrees_with_grid_exact(family, rule):
    """Same prior (a grid density), family and level: the Monte-Carlo histogram at each
    iteration matches the exact marginal within sampling error."""
    space = GridSpace.torus(256, dims=1)
    q = GaussianMixturePrior([[-0.15], [0.12]], [0.003, 0.004], [0.4, 0.6]).on_grid(space)
    agent = Agent(GridDensityPrior(space, q), family, 0.06, rule, circular=True)
    n = 4000
    states = particle_chains(agent, torch.full((n, 1), 0.3), 3, seed=7)
    exact = grid_chain_marginals(agent, space, point_masses(space, torch.tensor([[0.3]])), 3)
    x = space.points()[:, 0]
    for it in (1, 3):
        freq = torch.bincount(nearest_index(space, states[it]), minlength=space.size).double() / n
        p = exact[it, 0]
        # Kolmogorov distance of the cell CDFs: the 1 % critical value 1.63/√n, plus 0.01
        # for the exact chain perceiving on grid points and the Monte-Carlo one in
        # continuous space (the mean rule's grid response hits only some cells)
        ks = (torch.cumsum(freq, 0) - torch.cumsum(p, 0)).abs().max()
        assert ks < 1.63 / math.sqrt(n) + 0.01
        m_exact, v_exact = _moments(p, x)
        m4 = float((p * (x - m_exact) ** 4).sum())
        m_mc, v_mc = float(states[it].mean()), float(states[it].var())
        assert abs(m_mc - m_exact) < 5 * math.sqrt(v_exact / n) + 2e-3
        # the variance's standard error from the exact fourth central moment (the rare
        # percepts that wrap round the circle make it heavy-tailed)
        assert abs(v_mc - v_exact) < 5 * math.sqrt((m4 - v_exact**2) / n) + 0.02 * v_exact


def test_gaussian_mixture_closed_form_agrees_with_grid_exact():
    prior = GaussianMixturePrior([[-0.1, 0.05], [0.12, -0.08]], [0.002, 0.003])
    agent = Agent(prior, "gaussian", 0.05, "sample")
    n = 3000
    states = particle_chains(agent, torch.tensor([[0.25, 0.25]]).expand(n, 2), 4, seed=1)
    space = GridSpace.torus(40, dims=2)
    exact = grid_chain_marginals(agent, space, point_masses(space, torch.tensor([[0.25, 0.25]])),
                                 4)
    pts = space.points()
    for it in (1, 4):
        p = exact[it, 0].reshape(-1)
        mean = p @ pts
        cov = (pts - mean).T @ ((pts - mean) * p[:, None])
        mc_mean = states[it].mean(0)
        se = torch.sqrt(torch.diagonal(cov) / n)
        assert ((mc_mean - mean).abs() / se).max() < 5
        assert torch.allclose(torch.cov(states[it].T), cov, rtol=0.12, atol=2e-4)


def test_support_posterior_is_log_space_and_exact():
    """A likelihood far below the float range: naive exp() gives 0/0; the log-space weights
    equal the analytic log-odds."""
    fam = get_family("gaussian")
    pts = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    sup = Support(pts, torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)))
    y = torch.tensor([[0.55]], dtype=torch.float64)
    sigma = 1e-3
    naive = torch.exp(fam.log_prob(y.unsqueeze(-2), pts, sigma))
    assert naive.sum() == 0  # everything underflows
    logw = support_log_posterior(y, sup, fam, sigma)
    assert torch.isfinite(logw[:, :2]).all()
    odds = (math.log(0.3 / 0.5) - ((0.55 - 1) ** 2 - 0.55**2) / (2 * sigma**2))
    assert float(logw[0, 1] - logw[0, 0]) == pytest.approx(odds, rel=1e-12)
    assert float(torch.logsumexp(logw, -1)) == pytest.approx(0.0, abs=1e-12)
    # and a sample from it lands on the analytically dominant point
    agent_prior = PointSetPrior(pts, torch.tensor([0.5, 0.3, 0.2]))
    out = respond(y, agent_prior, fam, sigma, "sample", GEN().manual_seed(0))
    assert float(out) == 1.0


def test_gumbel_sampling_matches_the_categorical():
    logits = torch.log(torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)) - 800.0
    idx = gumbel_argmax(logits.expand(60000, 3), GEN().manual_seed(3))
    freq = torch.bincount(idx, minlength=3).double() / 60000
    p = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)
    assert ((freq - p).abs() / torch.sqrt(p * (1 - p) / 60000)).max() < 4.5


def test_closed_form_posterior_agrees_with_importance_weights_over_the_prior():
    prior = GaussianMixturePrior([[-0.2], [0.15]], [0.004, 0.002], [0.3, 0.7],
                                 n_support=200_000, support_seed=4)
    fam = get_family("gaussian")
    y = torch.linspace(-0.4, 0.4, 9, dtype=torch.float64).unsqueeze(-1)
    closed = respond(y, prior, fam, 0.08, "mean", GEN().manual_seed(0))
    logw = support_log_posterior(y, prior.support(), fam, 0.08)
    importance = torch.exp(logw) @ prior.support().points
    assert torch.allclose(closed, importance, atol=2e-3)


def test_map_of_a_mixture_posterior_is_its_highest_mode():
    prior = GaussianMixturePrior([[-0.2, 0.0], [0.2, 0.1], [0.0, 0.2]], [0.01, 0.005, 0.02],
                                 [0.3, 0.5, 0.2])
    fam = get_family("gaussian")
    y = torch.tensor([[-0.3, 0.3], [0.0, 0.05], [0.4, -0.4], [0.1, 0.1]], dtype=torch.float64)
    mode = respond(y, prior, fam, 0.05, "map", GEN().manual_seed(0))
    c = torch.linspace(-0.6, 0.6, 601, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    logpost = prior.log_prob(grid) + fam.log_prob(y.unsqueeze(1), grid, 0.05)
    brute = grid[logpost.argmax(1)]
    assert (mode - brute).abs().max() < 2.5e-3  # the brute-force grid spacing is 2e-3


def test_any_dimension_and_general_families_converge_to_the_prior():
    """3-D, laplace noise, a Gaussian-mixture prior through its importance support: the
    `sample` chain's stationary law is the support's weighted empirical distribution."""
    prior = GaussianMixturePrior([[0.06, -0.06, 0.0], [-0.06, 0.06, 0.03]], [0.002, 0.003],
                                 n_support=1000)
    agent = Agent(prior, "laplace", 0.08)
    n = 1000
    states = particle_chains(agent, torch.full((n, 3), 0.3, dtype=torch.float64), 30, seed=2)
    assert states.shape == (31, n, 3)
    sup = prior.support()
    w = torch.exp(sup.log_weights)
    mean = w @ sup.points
    var = w @ (sup.points - mean) ** 2
    assert ((states[-1].mean(0) - mean).abs() / torch.sqrt(var / n)).max() < 5
    assert torch.allclose(states[-1].var(0), var, rtol=0.2)
    assert ((states[0].mean(0) - mean).abs() / torch.sqrt(var / n)).min() > 50


def test_seeded_determinism_and_chains_independent_of_batch_size():
    space = GridSpace.torus(32, dims=1)
    prior = GridDensityPrior(space, GaussianMixturePrior([[0.0]], [0.01]).on_grid(space))
    agent = Agent(prior, "student-t", 0.05, production_sigma=0.01)
    start = torch.linspace(-0.4, 0.4, 700, dtype=torch.float64).unsqueeze(-1)
    a = particle_chains(agent, start, 3, seed=5)
    assert torch.equal(a, particle_chains(agent, start, 3, seed=5))
    assert not torch.equal(a, particle_chains(agent, start, 3, seed=6))
    assert torch.equal(particle_chains(agent, start[:3], 3, seed=5), a[:, :3])
    assert torch.equal(particle_chains(agent, start[:600], 3, seed=5), a[:, :600])


def test_bad_inputs_are_refused():
    prior = GaussianMixturePrior([[0.0]], [0.01])
    with pytest.raises(UserInputError, match="response rule"):
        Agent(prior, "gaussian", 0.1, "median")
    with pytest.raises(UserInputError, match="noise family"):
        Agent(prior, "cauchy", 0.1)
    with pytest.raises(UserInputError, match="σ > 0"):
        Agent(prior, "gaussian", -1)
    with pytest.raises(UserInputError, match="production noise"):
        Agent(prior, "gaussian", 0.1, production_sigma=-0.1)
    with pytest.raises(UserInputError, match="shape"):
        particle_chains(Agent(prior, "gaussian", 0.1), torch.zeros(4, 2), 2)
    with pytest.raises(UserInputError, match="positive definite"):
        GaussianMixturePrior([[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(UserInputError, match="circle"):
        particle_chains(Agent(prior, "fade-uniform", 0.5, circular=True), torch.zeros(2, 1), 1)
