"""Grid-exact chains: transition matrices against dense references, invariants, and
convergence to the prior (``sample``) versus not (``mean``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from serialrepro.chains.agents import Agent
from serialrepro.chains.closed_form import stationary_var
from serialrepro.chains.grid_chains import (
    grid_chain_marginals,
    nearest_index,
    point_masses,
    sample_grid_chains,
    transition_matrix,
)
from serialrepro.errors import UserInputError
from serialrepro.grid.kernels import make_kernel
from serialrepro.grid.scores import jsd_bits
from serialrepro.grid.space import GridSpace
from serialrepro.particles.priors import GaussianMixturePrior, GridDensityPrior


def _bimodal_1d(space):
    return GaussianMixturePrior([[-0.15], [0.12]], [0.002, 0.003], [0.4, 0.6]).on_grid(space)


@pytest.mark.parametrize("family", ["gaussian", "laplace", "bimodal", "fade-uniform"])
def test_sample_rule_matrix_is_post_times_k_and_reversible(family):
    space = GridSpace.torus(40, dims=1)
    q = _bimodal_1d(space)
    sigma = 0.3 if family.startswith("fade") else 0.05
    agent = Agent(GridDensityPrior(space, q), family, sigma, "sample")
    t = transition_matrix(agent, space)
    k = make_kernel(space, family, sigma, "dense").matrix()
    qf = q.reshape(-1)
    post = qf[:, None] * k.T / (k @ qf)[None, :]  # Post(x'|y), rows x', columns y
    assert torch.allclose(t, post @ k, atol=1e-12)
    assert torch.allclose(t.sum(0), torch.ones(space.size, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(t @ qf, qf, atol=1e-12)  # the prior is stationary
    flow = t * qf[None, :]  # q(x) T(x'|x)
    assert torch.allclose(flow, flow.T, atol=1e-14)  # detailed balance


@pytest.mark.parametrize("rule", ["mean", "map"])
@pytest.mark.parametrize("circular", [False, True])
def test_deterministic_rules_match_a_loop_over_percepts(rule, circular):
    space = GridSpace.torus(24, dims=1)
    q = _bimodal_1d(space)
    agent = Agent(GridDensityPrior(space, q), "laplace", 0.06, rule, circular=circular)
    t = transition_matrix(agent, space)
    k = make_kernel(space, "laplace", 0.06, "dense").matrix().numpy()
    qn, pts = q.numpy(), space.points().numpy()[:, 0]
    ref = np.zeros((space.size, space.size))
    for y in range(space.size):  # reference: one percept at a time
        post = qn * k[y]
        post = post / post.sum()
        if rule == "map":
            r = int(np.argmax(post))
        else:
            if circular:
                a = 2 * np.pi * pts
                m = np.arctan2(post @ np.sin(a), post @ np.cos(a)) / (2 * np.pi)
            else:
                m = post @ pts
            r = int(np.round((m + 0.5) * space.n)) % space.n
        ref[r] += k[y]
    assert np.allclose(t.numpy(), ref, atol=1e-13)


def test_production_noise_and_two_dimensions():
    space = GridSpace.torus(12, dims=2)
    prior = GaussianMixturePrior([[0.1, 0.0], [-0.1, 0.1]], [0.004, 0.006])
    agent = Agent(prior, "gaussian", 0.08, "mean", production_sigma=0.05)
    t = transition_matrix(agent, space)
    plain = transition_matrix(Agent(prior, "gaussian", 0.08, "mean"), space)
    prod = make_kernel(space, "gaussian", 0.05, "dense").matrix()
    assert torch.allclose(t, prod @ plain, atol=1e-12)
    assert torch.allclose(t.sum(0), torch.ones(space.size, dtype=torch.float64), atol=1e-12)
    start = point_masses(space, torch.tensor([[0.3, -0.3], [0.0, 0.0]]))
    m = grid_chain_marginals(agent, space, start, 3)
    ref = start.reshape(2, -1)
    for n in range(1, 4):
        ref = ref @ t.T
        assert torch.allclose(m[n].reshape(2, -1), ref, atol=1e-12)


def test_level_schedule_uses_one_kernel_per_iteration():
    space = GridSpace.torus(32, dims=1)
    agent = Agent(GaussianMixturePrior([[0.0]], [0.01]), "gaussian", 0.05)
    levels = [0.02, 0.05, 0.1]
    m = grid_chain_marginals(agent, space, point_masses(space, torch.tensor([[0.3]])), 3,
                             levels)
    p = m[0, 0].reshape(-1)
    for n, s in enumerate(levels):
        p = transition_matrix(agent, space, s) @ p
        assert torch.allclose(m[n + 1, 0].reshape(-1), p, atol=1e-12)
    with pytest.raises(UserInputError, match="one level per iteration"):
        grid_chain_marginals(agent, space, m[0], 2, levels)


def test_sample_converges_to_the_prior_and_mean_does_not():
    space = GridSpace.torus(128, dims=1)
    s0, s = 0.05, 0.06
    agent_s = Agent(GaussianMixturePrior([[0.0]], [s0**2]), "gaussian", s, "sample")
    agent_m = Agent(GaussianMixturePrior([[0.0]], [s0**2]), "gaussian", s, "mean")
    q = agent_s.prior.on_grid(space)
    start = space.uniform()
    ps = grid_chain_marginals(agent_s, space, start, 60)
    pm = grid_chain_marginals(agent_m, space, start, 60)
    js = jsd_bits(ps, q.expand_as(ps), ndim=1)
    jm = jsd_bits(pm, q.expand_as(pm), ndim=1)
    assert js[-1] < 1e-9 and js[0] > 0.5
    assert jm[-1] > 0.05  # the mean rule settles on a narrower law
    x = space.points()[:, 0]
    var_m = float((pm[-1] * x**2).sum() - (pm[-1] * x).sum() ** 2)
    assert var_m == pytest.approx(stationary_var(s0**2, s**2, "mean"), rel=0.02)


def test_circular_chains_wrap_around_the_seam():
    """A prior centred on the seam (0.45 turn, i.e. 162° wrapped to −198°...): the sample
    chain converges to it; the mean chain's circular mean stays there."""
    space = GridSpace.torus(90, dims=1)
    x = space.points()[:, 0]
    kappa = 40.0
    q = torch.exp(kappa * torch.cos(2 * math.pi * (x - 0.45)))
    q = q / q.sum()
    prior = GridDensityPrior(space, q)
    start = point_masses(space, torch.tensor([[0.0]]))
    for rule in ("sample", "mean"):
        agent = Agent(prior, "gaussian", 0.05, rule, circular=True)
        p = grid_chain_marginals(agent, space, start, 40)[-1, 0]
        ang = 2 * math.pi * x
        centre = math.atan2(float(p @ torch.sin(ang)), float(p @ torch.cos(ang))) / (2 * math.pi)
        assert centre == pytest.approx(0.45, abs=0.012)
        if rule == "sample":
            assert float(jsd_bits(p, q, ndim=1)) < 1e-8


def test_sampled_grid_chains_follow_the_exact_marginals_and_are_seeded():
    space = GridSpace.torus(30, dims=1)
    agent = Agent(GridDensityPrior(space, _bimodal_1d(space)), "laplace", 0.05)
    t = transition_matrix(agent, space)
    start = nearest_index(space, torch.full((3000, 1), 0.3))
    idx = sample_grid_chains(t, start, 4, seed=3)
    exact = grid_chain_marginals(agent, space, point_masses(space, torch.tensor([[0.3]])), 4)
    freq = torch.bincount(idx[4], minlength=space.size).double() / idx.shape[1]
    # multinomial sampling error: every cell within 4.5 standard errors
    p = exact[4, 0]
    se = torch.sqrt(p * (1 - p) / idx.shape[1]) + 1e-12
    assert ((freq - p).abs() / se).max() < 4.5
    assert torch.equal(idx, sample_grid_chains(t, start, 4, seed=3))
    assert not torch.equal(idx, sample_grid_chains(t, start, 4, seed=4))
    # chain i does not depend on how many chains run (crosses a block boundary)
    few = sample_grid_chains(t, start[:7], 4, seed=3)
    assert torch.equal(few, idx[:, :7])
    assert torch.equal(sample_grid_chains(t, start[:600], 4, seed=3), idx[:, :600])


@pytest.mark.parametrize("dims, n", [(1, 101), (2, 24)])
@pytest.mark.parametrize("rule", ["mean", "map"])
def test_deterministic_responses_agree_across_backends_where_the_prior_is_empty(dims, n, rule):
    """The responses come from the engine's posterior, so a percept the prior cannot
    explain (K q = 0 exactly, FFT round-off ±1e−18) is reported as perceived on both
    backends, instead of a response to round-off on the FFT path."""
    from serialrepro.chains.grid_chains import response_indices

    space = GridSpace.torus(n, dims)
    prior = GaussianMixturePrior([[0.1] * dims, [-0.2] * dims], [0.004, 0.01])
    q = prior.on_grid(space).reshape(-1)
    q[: space.size // 3] = 0.0
    q = (q / q.sum()).reshape(space.shape)
    fft = response_indices(space, make_kernel(space, "uniform", 0.05, "fft"), q, rule)
    dense = response_indices(space, make_kernel(space, "uniform", 0.05, "dense"), q, rule)
    assert torch.equal(fft, dense)
    own = torch.arange(space.size)
    assert (dense == own).sum() > 0  # some percepts are unexplained and kept as perceived
