"""The one reconstruction interface (serialrepro.reconstruction) and its engines: the exact
grid, the empirical particles and the trained network perform the same step.

Cross-engine check: one serial-reproduction step from a point x with prior N(0, s0²) and
gaussian noise σ has the closed form of docs/design.md §1, x' ~ N(λ x, λ(1 + λ) σ²),
λ = s0²/(s0² + σ²); the grid's exact distribution and the particles' samples must both
give it. For a non-conjugate family (laplace) the two engines share the prior on the grid's
points and must agree with each other.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

import serialrepro.reconstruction as reconstruction
from serialrepro.families import get_family
from serialrepro.grid.kernels import make_kernel
from serialrepro.grid.priors import gaussian_mixture
from serialrepro.grid.process import (
    GridReconstructor,
    forward_marginals,
    posterior,
    reproduce,
)
from serialrepro.grid.space import GridSpace
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.reconstruct import NetworkReconstructor
from serialrepro.particles.posterior import EmpiricalReconstructor
from serialrepro.particles.priors import GaussianMixturePrior, GridDensityPrior
from serialrepro.reconstruction import Reconstructor, ancestral, serial

N = 40000


def test_the_interface_module_sits_at_the_bottom():
    tree = ast.parse(Path(reconstruction.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.startswith("serialrepro")]


def test_the_three_engines_implement_it():
    space = GridSpace.torus(16, 1)
    kernels = [make_kernel(space, "gaussian", 0.05)]
    engines = [
        GridReconstructor(kernels, forward_marginals(space.uniform(), kernels)),
        EmpiricalReconstructor(GaussianMixturePrior([[0.0]], [0.01]), get_family("gaussian"),
                               [0.05]),
        NetworkReconstructor(lambda x, t: x, Diffusion.create("gaussian", num_timesteps=50)),
    ]
    assert all(isinstance(e, Reconstructor) for e in engines)
    assert set(reconstruction.STEPS) == {"serial", "ancestral"}


def test_grid_steps_are_the_engine_reproduction():
    space = GridSpace.torus(32, 2)
    data = gaussian_mixture(space, [[0.1, 0.0], [-0.2, 0.1]], [0.004, 0.008], mix=0.1)
    kernels = [make_kernel(space, "bimodal", s) for s in (0.02, 0.05)]
    marg = forward_marginals(data, kernels)
    recon = GridReconstructor(kernels, marg)
    r = space.uniform()
    assert torch.equal(serial(recon, r, 2), reproduce(r, kernels[1], marg[1], marg[2]))
    assert torch.equal(ancestral(recon, r, 1), posterior(r, kernels[0], marg[0], marg[1]))


def _grid_step_moments(space, family, sigma, prior, x):
    """Mean and variance of one exact serial step from the point mass at x."""
    kernel = make_kernel(space, family, sigma, "dense")
    pts = space.points().reshape(-1)
    start = torch.zeros(space.size, dtype=torch.float64)
    start[int(torch.argmin((pts - x).abs()))] = 1.0
    out = reproduce(start, kernel, prior)
    mean = float((out * pts).sum())
    return mean, float((out * (pts - mean) ** 2).sum()), float(pts[start.argmax()])


def _particle_step_moments(prior, family, sigma, x):
    recon = EmpiricalReconstructor(prior, get_family(family), [sigma])
    start = torch.full((N, 1), x, dtype=torch.float64)
    out = serial(recon, start, 1, torch.Generator().manual_seed(0)).reshape(-1)
    return float(out.mean()), float(out.var())


def test_grid_and_particles_perform_the_closed_form_serial_step():
    s0sq, sigma, x = 0.01, 0.05, 0.15
    space = GridSpace.torus(512, 1)
    grid_prior = gaussian_mixture(space, [[0.0]], [s0sq])
    g_mean, g_var, x_grid = _grid_step_moments(space, "gaussian", sigma, grid_prior, x)
    lam = s0sq / (s0sq + sigma**2)
    want_mean, want_var = lam * x_grid, lam * (1 + lam) * sigma**2
    assert g_mean == pytest.approx(want_mean, abs=1e-6)
    assert g_var == pytest.approx(want_var, rel=1e-3)
    p_mean, p_var = _particle_step_moments(GaussianMixturePrior([[0.0]], [s0sq]), "gaussian",
                                           sigma, x_grid)
    assert abs(p_mean - want_mean) < 5 * math.sqrt(want_var / N)
    assert abs(p_var - want_var) < 5 * want_var * math.sqrt(2 / N)


def test_grid_and_particles_agree_for_a_non_conjugate_family():
    """Laplace noise, prior on the grid's points: the particle engine's posterior over the
    support is the grid's posterior; only the continuous percept differs from the grid's
    (a discretisation of 1/256 against σ = 0.05)."""
    space = GridSpace.torus(256, 1)
    q = gaussian_mixture(space, [[0.05], [-0.1]], [0.002, 0.004])
    g_mean, g_var, x_grid = _grid_step_moments(space, "laplace", 0.05, q, 0.12)
    p_mean, p_var = _particle_step_moments(GridDensityPrior(space, q), "laplace", 0.05, x_grid)
    assert abs(p_mean - g_mean) < 5 * math.sqrt(g_var / N) + 1e-3
    assert abs(p_var - g_var) < 5 * g_var * math.sqrt(2 / N) + 0.02 * g_var
