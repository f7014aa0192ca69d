"""Densities of chain values integrate to 1 over the data's domain in data units; modes
are counted; the cross-validated bandwidth resolves several modes."""

from __future__ import annotations

import numpy as np
import pytest

from serialrepro.chains.coordinates import Coordinates
from serialrepro.chains.prior import (
    count_modes,
    density_grid_1d,
    density_grid_2d,
    estimate_prior,
    iteration_densities,
)


def _hues(rng, n=600):
    """Three categories on a colour wheel (degrees 0–359, integers), one near the wrap."""
    centres = rng.choice([10.0, 130.0, 250.0], n)
    return np.mod(np.round(centres + rng.normal(0, 12, n)), 360)


def test_circular_density_integrates_to_one_over_the_period_in_data_units():
    rng = np.random.default_rng(0)
    x = _hues(rng)
    c = Coordinates.fit(x[:, None], circular=True, period=360.0)
    p = estimate_prior(c.to_unit(x)[:, None], circular=True)
    gx, dens = density_grid_1d(p, c, c.to_unit(x))
    assert gx[0] == 0.0 and gx[-1] == 360.0  # the data's own range
    assert np.trapezoid(dens, gx) == pytest.approx(1.0, abs=1e-6)
    assert dens[0] == pytest.approx(dens[-1], rel=1e-9)  # no seam
    assert count_modes(dens, circular=True) == 3
    # the cross-validated bandwidth is far below Scott's on the wrapped spread (≈ 0.1 turn)
    assert p.bandwidth * 360 < 12


def test_linear_densities_integrate_to_one_in_data_units():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(-40, 3, 300), rng.normal(25, 5, 300)]  # data units
    c = Coordinates.fit(x[:, None])
    u = c.to_unit(x[:, None])
    p = estimate_prior(u)
    gx, dens = density_grid_1d(p, c, u[:, 0])
    assert np.trapezoid(dens, gx) == pytest.approx(1.0, abs=1e-4)
    assert count_modes(dens) == 2
    xy = np.c_[rng.normal(0, 2, 500), rng.normal(10, 4, 500)]
    c2 = Coordinates.fit(xy)
    p2 = estimate_prior(c2.to_unit(xy))
    gx, gy, d2 = density_grid_2d(p2, c2, c2.to_unit(xy))
    assert np.trapezoid(np.trapezoid(d2, gy, axis=1), gx) == pytest.approx(1.0, abs=1e-3)
    assert count_modes(d2) == 1


def test_iteration_densities_integrate_to_one_per_iteration():
    rng = np.random.default_rng(2)
    x = np.mod(rng.normal(350, 20, (100, 5)), 360)
    c = Coordinates.fit(x.reshape(-1, 1), circular=True, period=360.0)
    edges, d = iteration_densities(c.to_unit(x)[..., None], c, 36)
    assert edges[0] == 0 and edges[-1] == 360
    assert np.allclose((d * np.diff(edges)).sum(1), 1.0)


def test_a_wiggle_on_a_flat_top_is_not_a_mode():
    x = np.linspace(-3, 3, 601)
    flat = np.exp(-0.5 * (x / 1.5) ** 8) * (1 + 0.03 * np.cos(6 * x))
    assert count_modes(flat) == 1
    two = np.exp(-0.5 * ((x - 1.2) / 0.4) ** 2) + 0.6 * np.exp(-0.5 * ((x + 1.2) / 0.4) ** 2)
    assert count_modes(two) == 2
    ring = np.r_[two, two[0]]  # periodic copy: the seam is no mode
    assert count_modes(ring, circular=True) == 2
