"""serialrepro.circular: one wrap and one circular mean per array library, and they agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serialrepro.circular import (
    circular_difference,
    circular_mean,
    weighted_circular_mean,
    wrap,
    wrap_tensor,
)


def test_wraps_agree_and_land_in_the_half_open_turn():
    x = np.linspace(-3.2, 3.2, 641)
    w = wrap(x)
    assert np.all((w >= -0.5) & (w < 0.5))
    np.testing.assert_allclose(np.cos(2 * np.pi * w), np.cos(2 * np.pi * x), atol=1e-12)
    np.testing.assert_array_equal(wrap_tensor(torch.from_numpy(x)).numpy(), w)
    assert np.allclose(wrap(370.0, 360.0), 10.0)
    assert circular_difference(np.array([359.0]), np.array([1.0]), 360.0)[0] == -2.0
    assert circular_difference(np.array([359.0]), np.array([1.0]), None)[0] == 358.0


def test_circular_means_cross_the_wrap_and_agree_across_libraries():
    # 0.45 and −0.45 are 0.1 apart across the wrap: their mean is the wrap point, not 0
    assert abs(abs(circular_mean(np.array([0.45, -0.45]))) - 0.5) < 1e-12
    rng = np.random.default_rng(0)
    pts = wrap(0.48 + 0.03 * rng.standard_normal((200, 2)))
    weights = torch.full((1, 200), 1 / 200, dtype=torch.float64)
    tm = weighted_circular_mean(weights, torch.from_numpy(pts))[0].numpy()
    nm = np.array([circular_mean(pts[:, k]) for k in range(2)])
    np.testing.assert_allclose(wrap(tm - nm), 0.0, atol=1e-12)
    assert np.all(np.abs(wrap(nm - 0.48)) < 0.01)


@pytest.mark.parametrize("centre", [-0.49, 0.0, 0.3])
def test_a_weighted_mean_follows_the_weights(centre):
    pts = torch.tensor([[centre], [wrap(centre + 0.25)]], dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    m = weighted_circular_mean(w, pts)[:, 0].numpy()
    np.testing.assert_allclose(wrap(m - np.array([centre, centre + 0.125])), 0.0, atol=1e-12)
