"""Grids: the authors' paper grid (both endpoints) and torus grids; minimum-image offsets."""

from __future__ import annotations

import itertools

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.grid import GridSpace, parse_grid


@pytest.mark.parametrize(("h", "n"), [(0.04, 26), (0.025, 41), (0.1, 11), (0.5, 3)])
def test_paper_grid_has_both_endpoints(h: float, n: int) -> None:
    # MATLAB's -0.5:h:0.5 includes 0.5 when it is within rounding of the last step
    space = GridSpace.paper(h)
    assert space.n == n and space.size == n * n and space.shape == (n, n)
    c = space.coords()
    assert c[0].item() == -0.5
    assert abs(c[-1].item() - 0.5) < 1e-12
    assert torch.allclose(torch.diff(c), torch.full((n - 1,), h, dtype=torch.float64))


def test_torus_grid_coordinates() -> None:
    space = GridSpace.torus(8, dims=3)
    assert space.shape == (8, 8, 8) and space.size == 512 and space.spacing == 1 / 8
    c = space.coords()
    assert c[0].item() == -0.5 and abs(c[-1].item() - (0.5 - 1 / 8)) < 1e-15
    pts = space.points()
    assert pts.shape == (512, 3)
    # row-major: the last axis varies fastest, matching reshape of a grid tensor
    mesh = space.axis_meshes()
    for axis in range(3):
        assert torch.equal(mesh[axis].reshape(-1), pts[:, axis])


def _brute_force_offset(y: float, x: float) -> float:
    """The authors' loop: among (y − x) + {−1, 0, 1} keep the first of least magnitude."""
    best = None
    for s in (-1.0, 0.0, 1.0):
        cand = (y - x) + s
        if best is None or abs(cand) < abs(best):
            best = cand
    return best


def test_paper_grid_minimum_image_matches_the_loop() -> None:
    space = GridSpace.paper(0.1)
    c = space.coords().tolist()
    d = space.axis_offsets()
    for i, j in itertools.product(range(space.n), repeat=2):
        assert d[i, j].item() == _brute_force_offset(c[i], c[j])
    # the two endpoints −0.5 and 0.5 are the same point of the torus
    assert d[0, -1].item() == 0.0 and d[-1, 0].item() == 0.0
    assert d.abs().max().item() <= 0.5


@pytest.mark.parametrize("space", [GridSpace.paper(0.1, 1), GridSpace.paper(0.2, 2),
                                   GridSpace.paper(0.25, 3), GridSpace.torus(7, 1),
                                   GridSpace.torus(6, 2), GridSpace.torus(4, 3)],
                         ids=lambda s: s.label)
def test_dense_offsets_agree_with_axis_offsets(space: GridSpace) -> None:
    """dense_offsets()[axis][i, j] = axis_offsets()[i_axis, j_axis] bitwise (Kronecker build)."""
    dense = space.dense_offsets()
    axis = space.axis_offsets()
    idx = torch.arange(space.size)
    for a in range(space.dims):
        ia = (idx // space.n ** (space.dims - 1 - a)) % space.n
        assert torch.equal(dense[a], axis[ia.unsqueeze(1), ia.unsqueeze(0)])


@pytest.mark.parametrize("n", [6, 7])
def test_torus_offsets_are_circulant(n: int) -> None:
    space = GridSpace.torus(n, 2)
    dense = space.dense_offsets()
    circ = space.circulant_offsets()
    for a in range(2):
        # column 0 of the dense offsets (x = point 0) is the circulant offset table
        assert torch.equal(dense[a][:, 0].reshape(space.shape), circ[a])
        # minimum image: every offset lies in [−1/2, 1/2)
        assert dense[a].min() >= -0.5 and dense[a].max() < 0.5
    # offsets equal (y − x) up to a whole number of periods
    pts = space.points()
    raw = pts.unsqueeze(1) - pts.unsqueeze(0)
    for a in range(2):
        k = dense[a] - raw[..., a]
        assert torch.allclose(k, torch.round(k), atol=1e-12)


def test_parse_grid() -> None:
    assert parse_grid("paper:0.04") == GridSpace.paper(0.04)
    assert parse_grid("torus:64", dims=3) == GridSpace.torus(64, 3)
    assert GridSpace.torus(16).supports_fft and not GridSpace.paper(0.04).supports_fft


@pytest.mark.parametrize("spec", ["square:10", "torus", "torus:abc", "paper:x", "", "paper:0"])
def test_parse_grid_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UserInputError) as err:
        parse_grid(spec)
    assert "\n" not in str(err.value)
    if spec.startswith(("square", "torus:abc")) or spec in ("torus", ""):
        assert "paper:H" in str(err.value) and "torus:N" in str(err.value)


def test_bad_grid_parameters() -> None:
    with pytest.raises(UserInputError, match="valid choices: paper, torus"):
        GridSpace("hexagonal", 10)
    with pytest.raises(UserInputError, match="1, 2 or 3"):
        GridSpace.torus(8, dims=4)
    with pytest.raises(UserInputError, match="at least 2"):
        GridSpace.torus(1)
    with pytest.raises(UserInputError, match=r"\(0, 0.5\]"):
        GridSpace.paper(-0.1)
    with pytest.raises(UserInputError, match="torus"):
        GridSpace.paper(0.1).circulant_offsets()


@pytest.mark.parametrize("spec,dims", [("torus:8", 2), ("torus:5", 3), ("paper:0.25", 2),
                                       ("torus:16", 1)])
def test_nearest_index_finds_each_grid_point_and_wraps(spec, dims):
    """Every grid point maps to its own flat index, also when jittered by less than half a
    cell or shifted by a whole period; the priors' histograms and the chains use this."""
    space = parse_grid(spec, dims=dims)
    pts = space.points()
    want = torch.arange(space.size)
    if space.kind == "paper":  # its end point +0.5 is the torus point −0.5: not unique
        inner = (pts < 0.5 - 1e-9).all(-1)
        pts, want = pts[inner], want[inner]
    assert torch.equal(space.nearest_index(pts), want)
    jitter = (torch.rand(pts.shape, generator=torch.Generator().manual_seed(0)) - 0.5) \
        * 0.8 * space.spacing
    if space.kind == "torus":
        assert torch.equal(space.nearest_index(pts + jitter), want)
        assert torch.equal(space.nearest_index(pts + 1.0), want)
        assert torch.equal(space.nearest_index(pts - 3.0), want)
    with pytest.raises(UserInputError, match="dimension"):
        space.nearest_index(torch.zeros(3, dims + 1))
