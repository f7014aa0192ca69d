"""Priors on grids: the paper's Swiss roll and three modes (docs/design.md §2), mixtures,
histograms of samples, greyscale images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import multivariate_normal

from serialrepro.errors import UserInputError
from serialrepro.grid import (
    GridSpace,
    from_image,
    from_samples,
    gaussian_mixture,
    limit_distribution,
    make_prior,
    swiss_roll,
    three_modes,
)
from serialrepro.grid.priors import three_mode_components

W = 8 * 0.04**2


def _assert_distribution(p: torch.Tensor, space: GridSpace) -> None:
    assert p.shape == space.shape and p.dtype == torch.float64
    assert (p >= 0).all()
    assert abs(p.sum().item() - 1) < 1e-12


def _swiss_roll_mask_numpy(space: GridSpace) -> np.ndarray:
    """An independent re-implementation of the authors' Swiss-roll support (plain loops)."""
    s = np.arange(101) / 100
    tt = 1.5 * np.pi * (1 + 2 * s)
    cx, cy = tt * np.sin(tt), -tt * np.cos(tt)
    cx = (cx - cx.min()) / (cx.max() - cx.min()) * 0.8 - 0.4
    cy = (cy - cy.min()) / (cy.max() - cy.min()) * 0.8 - 0.4
    c = -0.5 + np.arange(space.n) * space.spacing
    mask = np.zeros((space.n, space.n), dtype=bool)
    for i in range(space.n):
        for j in range(space.n):
            mask[i, j] = np.min(np.hypot(c[i] - cx, c[j] - cy)) < 0.04
    return mask


@pytest.mark.parametrize(("h", "support"), [(0.04, 153), (0.025, 380)])
def test_swiss_roll_support_and_values(h: float, support: int) -> None:
    space = GridSpace.paper(h)
    p = swiss_roll(space)
    _assert_distribution(p, space)
    mask = _swiss_roll_mask_numpy(space)
    assert mask.sum() == support
    m = space.size
    on = 0.9 / support + 0.1 / m
    want = torch.full(space.shape, 0.1 / m, dtype=torch.float64)
    want[torch.from_numpy(mask)] = on
    assert torch.allclose(p, want, rtol=0, atol=1e-15)
    # the roll is inside [−0.4, 0.4]² and winds around the centre
    assert p[0, 0].item() == pytest.approx(0.1 / m)
    unmixed = swiss_roll(space, mix=0.0)
    assert torch.equal(unmixed > 0, torch.from_numpy(mask))


def test_three_modes_matches_scipy() -> None:
    space = GridSpace.paper(0.04)
    pts = space.points().numpy()
    dens = (multivariate_normal([0.1, 0.2], W * np.eye(2)).pdf(pts)
            + multivariate_normal([-0.2, -0.1], W * np.eye(2)).pdf(pts)
            + multivariate_normal([0.2, -0.2], W * np.array([[2, 1], [1, 2]])).pdf(pts))
    dens = dens / dens.sum()
    want = torch.from_numpy(0.9 * dens + 0.1 / space.size).reshape(space.shape)
    p = three_modes(space)
    _assert_distribution(p, space)
    assert torch.allclose(p, want, rtol=1e-12, atol=0)
    assert torch.allclose(three_modes(space, mix=0.0),
                          torch.from_numpy(dens).reshape(space.shape), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dims", [1, 3])
def test_three_mode_components_in_other_dimensions(dims: int) -> None:
    w, means, covs = three_mode_components(dims)
    assert means.shape == (3, dims) and covs.shape == (3, dims, dims)
    assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(means[:, 0], torch.tensor([0.1, -0.2, 0.2], dtype=torch.float64))
    _assert_distribution(three_modes(GridSpace.torus(12, dims)), GridSpace.torus(12, dims))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gaussian_mixture_in_any_dimension(dims: int) -> None:
    space = GridSpace.torus(16, dims)
    mean = [0.125] * dims
    p = gaussian_mixture(space, [mean], [0.01])
    _assert_distribution(p, space)
    # peak at the mean's grid point: coordinate −0.5 + i/16 = 0.125 ⇒ i = 10
    assert np.unravel_index(int(p.argmax()), space.shape) == (10,) * dims
    # moments of a wide-enough Gaussian on a fine grid (no wrap-around)
    if dims == 1:
        fine = GridSpace.torus(512, 1)
        q = gaussian_mixture(fine, [[0.05]], [0.06**2])
        x = fine.coords()
        mu = (q * x).sum().item()
        assert mu == pytest.approx(0.05, abs=1e-10)
        assert (q * (x - mu) ** 2).sum().item() == pytest.approx(0.06**2, rel=1e-8)


def test_gaussian_mixture_weights_and_errors() -> None:
    space = GridSpace.torus(32, 1)
    p = gaussian_mixture(space, [[-0.25], [0.25]], [0.001, 0.001], weights=[3, 1])
    left, right = p[:16].sum().item(), p[16:].sum().item()
    assert left == pytest.approx(0.75, abs=1e-6) and right == pytest.approx(0.25, abs=1e-6)
    with pytest.raises(UserInputError, match="dimension 2 but the grid has 1"):
        gaussian_mixture(space, [[0.0, 0.0]], [0.01])
    with pytest.raises(UserInputError, match="non-negative"):
        gaussian_mixture(space, [[0.0]], [0.01], weights=[-1])
    with pytest.raises(UserInputError, match="positive definite"):
        gaussian_mixture(GridSpace.torus(8), [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(UserInputError, match="mix"):
        gaussian_mixture(space, [[0.0]], [0.01], mix=1.5)


def test_from_samples_is_a_nearest_point_histogram() -> None:
    space = GridSpace.torus(4, 2)  # coordinates −0.5, −0.25, 0, 0.25
    samples = torch.tensor([[0.0, 0.0], [0.01, -0.02], [0.25, -0.5], [0.5, 0.26]],
                           dtype=torch.float64)
    p = from_samples(space, samples)
    _assert_distribution(p, space)
    want = torch.zeros(4, 4, dtype=torch.float64)
    want[2, 2] = 0.5  # two samples near (0, 0)
    want[3, 0] = 0.25  # (0.25, −0.5)
    want[0, 3] = 0.25  # x = 0.5 wraps to −0.5
    assert torch.equal(p, want)
    w = from_samples(space, samples, weights=[1, 1, 2, 0])
    assert w[3, 0].item() == 0.5
    paper = GridSpace.paper(0.25)  # −0.5 … 0.5, 5 points
    assert from_samples(paper, torch.tensor([[0.24, -0.49]]))[3, 0].item() == 1.0
    with pytest.raises(UserInputError, match=r"\[N, 2\]"):
        from_samples(space, torch.zeros(3, 3))
    with pytest.raises(UserInputError, match="NaN"):
        from_samples(space, torch.tensor([[float("nan"), 0.0]]))


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)
    return path


def test_from_image_orientation(tmp_path: Path) -> None:
    """A bright square in the image's top-right corner is mass at large x and large y."""
    img = np.zeros((40, 40))
    img[2:12, 28:38] = 255  # rows from the top, columns from the left
    space = GridSpace.torus(20)
    p = from_image(space, _png(tmp_path / "square.png", img))
    _assert_distribution(p, space)
    assert p[10:, 10:].sum().item() == pytest.approx(1.0)  # axis 0 = x high, axis 1 = y high
    inv = from_image(space, tmp_path / "square.png", invert=True)
    # inverted: the quadrant keeps its 300 dark pixels of the image's 1500
    assert inv[10:, 10:].sum().item() == pytest.approx(300 / 1500)


def test_from_image_round_trip(tmp_path: Path) -> None:
    gen = np.random.default_rng(0)
    img = gen.integers(1, 256, size=(16, 16))
    space = GridSpace.torus(16)
    p = from_image(space, _png(tmp_path / "noise.png", img))
    want = torch.from_numpy(np.flipud(img).T.astype(np.float64).copy())
    assert torch.allclose(p, want / want.sum(), rtol=1e-12, atol=0)
    # make_prior's image:PATH spec is the same density with the paper's 0.1 uniform data mix
    assert torch.allclose(make_prior(f"image:{tmp_path / 'noise.png'}", space),
                          0.9 * p + 0.1 / space.size, rtol=1e-12, atol=0)
    assert torch.equal(make_prior(f"image:{tmp_path / 'noise.png'}", space, mix=0.0), p)


def test_bad_images(tmp_path: Path) -> None:
    space = GridSpace.torus(8)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(UserInputError, match="not a readable image"):
        from_image(space, text)
    with pytest.raises(UserInputError, match="does not exist"):
        from_image(space, tmp_path / "missing.png")
    black = _png(tmp_path / "black.png", np.zeros((8, 8)))
    with pytest.raises(UserInputError, match="no mass"):
        from_image(space, black)
    with pytest.raises(UserInputError, match="2-D grid"):
        from_image(GridSpace.torus(8, 1), black)


def test_make_prior_names() -> None:
    space = GridSpace.paper(0.04)
    assert torch.equal(make_prior("three-modes", space), three_modes(space))
    assert torch.equal(make_prior("swiss-roll", space, mix=0.0), swiss_roll(space, mix=0.0))
    with pytest.raises(UserInputError) as err:
        make_prior("moons", space)
    assert "'moons'" in str(err.value) and "swiss-roll" in str(err.value)
    assert "three-modes" in str(err.value) and "image:PATH" in str(err.value)
    with pytest.raises(UserInputError, match="2-D"):
        swiss_roll(GridSpace.torus(8, 3))


def test_limit_distributions() -> None:
    """A family's p_F on a grid: uniform for the fade to uniform, the unmixed three-mode
    density (bit for bit what the prior computes) for the fade to a fixed target."""
    for space in (GridSpace.torus(10), GridSpace.paper(0.04), GridSpace.torus(6, 3)):
        assert torch.equal(limit_distribution("fade-uniform", space), space.uniform())
        assert torch.equal(limit_distribution("fade-fixed", space), three_modes(space, mix=0))
    space = GridSpace.torus(10)
    assert math.isclose(space.uniform().sum().item(), 1.0)
    fresh = limit_distribution("fade-fixed", space)
    fresh.zero_()  # a copy: the cached density is not changed through it
    assert limit_distribution("fade-fixed", space).sum().item() == pytest.approx(1.0)
    with pytest.raises(UserInputError, match="valid choices"):
        limit_distribution("gamma", space)
