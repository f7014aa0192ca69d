"""Noise families as kernels: dense against FFT, column-stochasticity, entropies, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.families import FAMILIES, GRID, family_names
from serialrepro.grid import (
    DenseKernel,
    FFTKernel,
    GridSpace,
    KernelSchedule,
    check_schedule,
    make_kernel,
)

ALL = sorted(family_names(GRID))
#: levels exercising each family: narrow and wide (fades: the end points and between)
LEVELS = {name: ((0.0, 0.35, 1.0) if name.startswith("fade") else (0.03, 0.11)) for name in ALL}
TORI = [GridSpace.torus(16, 1), GridSpace.torus(16, 2), GridSpace.torus(6, 3)]


def _levels(name: str):
    return LEVELS[name]


@pytest.mark.parametrize("space", TORI, ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_fft_equals_dense(name: str, space: GridSpace) -> None:
    gen = torch.Generator().manual_seed(0)
    for sigma in _levels(name):
        dense = make_kernel(space, name, sigma, "dense")
        fft = make_kernel(space, name, sigma, "fft")
        assert isinstance(dense, DenseKernel) and isinstance(fft, FFTKernel)
        assert torch.allclose(fft.matrix(), dense.matrix(), rtol=0, atol=1e-10)
        # batches of (unnormalised, signed) inputs: the maps are linear
        p = torch.randn((3, *space.shape), generator=gen, dtype=torch.float64)
        assert torch.allclose(fft.apply(p), dense.apply(p), rtol=0, atol=1e-10)
        assert torch.allclose(fft.apply_t(p), dense.apply_t(p), rtol=0, atol=1e-10)
        assert torch.allclose(fft.column_entropy_bits(), dense.column_entropy_bits(),
                              rtol=0, atol=1e-9)


@pytest.mark.parametrize("space", [GridSpace.paper(0.1, 1), GridSpace.paper(0.2, 2),
                                   GridSpace.paper(0.25, 3), GridSpace.torus(9, 2)],
                         ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_separable_dense_build_equals_direct_evaluation(name: str, space: GridSpace) -> None:
    """The Kronecker build (grid_axis_terms) equals grid_parts at all M² offsets."""
    for sigma in _levels(name):
        fast = DenseKernel(space, FAMILIES[name], sigma)
        direct = DenseKernel(space, FAMILIES[name], sigma, separable=False)
        assert torch.allclose(fast.matrix(), direct.matrix(), rtol=0, atol=1e-12)
        assert torch.allclose(fast.column_entropy_bits(), direct.column_entropy_bits(),
                              rtol=0, atol=1e-10)


@pytest.mark.parametrize("space", [GridSpace.paper(0.04), *TORI], ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_columns_are_distributions(name: str, space: GridSpace) -> None:
    for sigma in _levels(name):
        k = make_kernel(space, name, sigma).matrix()
        assert k.shape == (space.size, space.size) and k.dtype == torch.float64
        # FFT round-off leaves |entries| ~1e−17 where the exact value is 0
        assert k.min() >= (0 if space.kind == "paper" else -1e-15)
        assert torch.allclose(k.sum(dim=0), torch.ones(space.size, dtype=torch.float64),
                              rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_apply_and_apply_t_are_the_matrix_and_its_transpose(name: str) -> None:
    space = GridSpace.paper(0.1)
    k = make_kernel(space, name, _levels(name)[1])
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(space.shape, generator=gen, dtype=torch.float64)
    m = k.matrix()
    assert torch.allclose(k.apply(p).reshape(-1), m @ p.reshape(-1), atol=1e-14)
    assert torch.allclose(k.apply_t(p).reshape(-1), m.T @ p.reshape(-1), atol=1e-14)


def test_gaussian_kernel_values_on_the_paper_grid() -> None:
    """K(y|x) ∝ exp(−|d|²/2σ²) at the minimum-image offset, checked at explicit points."""
    space = GridSpace.paper(0.1)
    sigma = 0.15
    k = make_kernel(space, "gaussian", sigma).matrix()
    pts = space.points()
    x = 5 * space.n + 0  # the point (0, −0.5)
    d = pts - pts[x]
    d = torch.where(d.abs() > 0.5, d - torch.sign(d), d)  # minimum image (no ties here)
    w = torch.exp(-(d * d).sum(-1) / (2 * sigma**2))
    assert torch.allclose(k[:, x], w / w.sum(), atol=1e-15)


@pytest.mark.parametrize("name", ["gaussian", "laplace", "uniform", "student-t", "bimodal",
                                  "trimodal"])
def test_circulant_column_entropy_is_constant(name: str) -> None:
    space = GridSpace.torus(12, 2)
    k = make_kernel(space, name, 0.07)
    h = k.column_entropy_bits()
    col = k.matrix()[:, 0]
    direct = -(col[col > 0] * torch.log2(col[col > 0])).sum()
    assert torch.allclose(h, torch.full_like(h, float(direct)), atol=1e-12)


def test_entropy_of_fade_columns() -> None:
    """Fade to uniform at σ = 1 is the constant kernel 1/M: every column has log₂ M bits."""
    space = GridSpace.torus(8, 2)
    for backend in ("dense", "fft"):
        k = make_kernel(space, "fade-uniform", 1.0, backend)
        assert torch.allclose(k.column_entropy_bits(),
                              torch.full(space.shape, math.log2(space.size), dtype=torch.float64))


def test_unnormalised_batches_keep_leading_dimensions() -> None:
    space = GridSpace.torus(8, 2)
    for backend in ("dense", "fft"):
        k = make_kernel(space, "gaussian", 0.05, backend)
        p = torch.rand(2, 3, *space.shape, dtype=torch.float64)
        out = k.apply(p)
        assert out.shape == p.shape
        assert torch.allclose(out.sum(dim=(-2, -1)), p.sum(dim=(-2, -1)))
        with pytest.raises(UserInputError, match="grid shape"):
            k.apply(torch.rand(7, 8, dtype=torch.float64))


def test_auto_backend_picks_fft_on_tori_and_dense_on_the_paper_grid() -> None:
    assert make_kernel(GridSpace.torus(8), "gaussian", 0.1).backend == "fft"
    assert make_kernel(GridSpace.paper(0.1), "gaussian", 0.1).backend == "dense"


def test_schedule_keeps_its_kernels() -> None:
    sched = KernelSchedule(GridSpace.torus(8), "laplace", [0.01, 0.02, 0.02, 0.05])
    assert len(sched) == 4 and sched.backend == "fft"
    assert sched[1] is sched[1]
    assert [k.sigma for k in sched] == [0.01, 0.02, 0.02, 0.05]


# -- bad input ---------------------------------------------------------------------------

def test_unknown_family_lists_valid_choices() -> None:
    with pytest.raises(UserInputError) as err:
        make_kernel(GridSpace.torus(8), "cauchy", 0.1)
    msg = str(err.value)
    assert "'cauchy'" in msg and all(name in msg for name in ALL)


def test_unknown_backend_lists_valid_choices() -> None:
    with pytest.raises(UserInputError, match="'gpu'.*auto, dense, fft"):
        make_kernel(GridSpace.torus(8), "gaussian", 0.1, backend="gpu")


def test_fft_on_the_paper_grid_is_refused() -> None:
    with pytest.raises(UserInputError, match="torus grid.*paper:0.04"):
        make_kernel(GridSpace.paper(0.04), "gaussian", 0.1, backend="fft")
    with pytest.raises(UserInputError, match="torus grid"):
        FFTKernel(GridSpace.paper(0.04), FAMILIES["gaussian"], 0.1)


@pytest.mark.parametrize("sigma", [0.0, -0.1, float("nan"), float("inf"), "abc"])
def test_bad_sigma(sigma) -> None:
    with pytest.raises(UserInputError, match="σ > 0|not a number"):
        make_kernel(GridSpace.torus(8), "gaussian", sigma)


@pytest.mark.parametrize("sigma", [-0.01, 1.01, float("nan")])
@pytest.mark.parametrize("name", ["fade-uniform", "fade-fixed"])
def test_fade_sigma_outside_unit_interval(name: str, sigma: float) -> None:
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        make_kernel(GridSpace.torus(8), name, sigma)


def test_bad_schedules() -> None:
    fam = FAMILIES["gaussian"]
    with pytest.raises(UserInputError, match="empty"):
        check_schedule(fam, [])
    with pytest.raises(UserInputError, match="non-decreasing.*level 3 is 0.02 after 0.03"):
        check_schedule(fam, [0.01, 0.03, 0.02])
    with pytest.raises(UserInputError, match="list of numbers"):
        check_schedule(fam, ["a", "b"])
    with pytest.raises(UserInputError, match="σ > 0"):
        check_schedule(fam, [0.0, 0.1])
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        KernelSchedule(GridSpace.torus(8), "fade-uniform", [0.5, 1.5])
    assert check_schedule(fam, [0.01, 0.01, 0.02]) == [0.01, 0.01, 0.02]


def test_dense_kernel_too_large_for_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERIALREPRO_MEMORY_LIMIT", "1MiB")  # the one memory limit (budget)
    with pytest.raises(UserInputError) as err:
        make_kernel(GridSpace.torus(64), "gaussian", 0.1, backend="dense")
    msg = str(err.value)
    assert "M=4096" in msg and "needs about 640 MiB" in msg and "the limit is 1 MiB" in msg
    assert "fft" in msg and "\n" not in msg
    # the FFT path needs no dense matrix, so it still works
    assert make_kernel(GridSpace.torus(64), "gaussian", 0.1).backend == "fft"


# -- issue 11: spectra from 1-D transforms, real spectra, a non-symmetric kernel ------------

@pytest.mark.parametrize("space", TORI, ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_spectrum_from_axis_transforms_equals_rfftn_of_the_family_weights(
    name: str, space: GridSpace
) -> None:
    """The outer product of 1-D transforms is rfftn of the kernel the family defines at every
    offset (grid_parts, normalised); symmetric kernels store it real."""
    if FAMILIES[name].grid_axis_terms(space.axis_offsets(), _levels(name)[0],
                                      space.spacing) is None:
        pytest.skip("not separable: the spectrum is rfftn of grid_parts by construction")
    for sigma in _levels(name):
        k = make_kernel(space, name, sigma, "fft")
        d = space.circulant_offsets()
        parts = FAMILIES[name].grid_parts(d, sigma, tuple(range(space.dims)), space.spacing,
                                          lambda k=k: k._tgt)
        c = parts.offset_weights
        z = c.sum() + (parts.coef * parts.target.sum() if parts.target is not None else 0.0)
        if k.target is None and parts.target is not None:  # constant target folded into c
            c = c + parts.coef * parts.target
        direct = torch.fft.rfftn(c / z, dim=tuple(range(space.dims)))
        # stored real exactly when the kernel is symmetric: all but the shifted mixtures,
        # whose components' normalisers differ where the minimum image cuts them (−½)
        assert k.symmetric == bool(direct.imag.abs().max() < 1e-13)
        assert k.symmetric or name in ("bimodal", "trimodal")
        assert k.symmetric != k.spectrum.is_complex()
        assert torch.allclose(k.spectrum.to(direct.dtype), direct, rtol=0, atol=1e-13)
        assert torch.allclose(k.c, (c / z), rtol=0, atol=1e-15)


class _Drift(FAMILIES["gaussian"].__class__, register=False):
    """A Gaussian centred at x + 0.1 per axis: not symmetric, so its spectrum is complex."""

    name = "drift-test"

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        return super().grid_parts([di - 0.1 for di in d], sigma, y_dims, spacing, target)

    def grid_axis_terms(self, d, sigma, spacing):
        return super().grid_axis_terms(d - 0.1, sigma, spacing)


@pytest.mark.parametrize("separable", [True, False])
def test_a_non_symmetric_kernel_keeps_its_complex_spectrum(separable: bool) -> None:
    fam = _Drift()
    if not separable:
        fam.grid_axis_terms = lambda d, sigma, spacing: None
    space = GridSpace.torus(12, 2)
    fft = make_kernel(space, fam, 0.05, "fft")
    dense = make_kernel(space, fam, 0.05, "dense")
    assert not fft.symmetric and fft.spectrum.is_complex()
    assert torch.allclose(fft.matrix(), dense.matrix(), rtol=0, atol=1e-12)
    p = torch.rand(2, *space.shape, dtype=torch.float64)
    assert torch.allclose(fft.apply_t(p), dense.apply_t(p), rtol=0, atol=1e-12)
    assert not torch.allclose(fft.apply_t(p), fft.apply(p), atol=1e-3)


def test_apply_writes_into_out() -> None:
    space = GridSpace.torus(8, 2)
    p = torch.rand(space.shape, dtype=torch.float64)
    for name in ("gaussian", "fade-fixed"):
        for backend in ("fft", "dense"):
            k = make_kernel(space, name, 0.3, backend)
            out = torch.empty_like(p)
            assert k.apply(p, out=out) is out and torch.allclose(out, k.apply(p))
            assert k.apply_t(p, out=out) is out and torch.allclose(out, k.apply_t(p))


def test_uncached_schedule_rebuilds_equal_kernels() -> None:
    space = GridSpace.torus(16, 2)
    sched = KernelSchedule(space, "bimodal", [0.02, 0.05], keep_bytes=0)
    assert sched[0] is not sched[0]
    assert torch.equal(sched[1].spectrum, sched[1].spectrum)
