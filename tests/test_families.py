"""Noise families, one definition in every representation: continuous sampling and
densities, unit-variance noise, and the grid kernel they induce."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from serialrepro.errors import UserInputError
from serialrepro.families import FAMILIES, GRID, PARTICLES, family_names, get_family
from serialrepro.grid import GridSpace, make_kernel

#: the families with grid and continuous forms (the tensor-only ones: tests/test_models_*)
ALL = sorted(set(family_names(GRID)) & set(family_names(PARTICLES)))
STD = ["gaussian", "laplace", "student-t", "uniform"]
#: scipy's per-axis marginal of each σ-is-the-std family (standard deviation σ)
MARGINAL = {
    "gaussian": lambda s: stats.norm(scale=s),
    "laplace": lambda s: stats.laplace(scale=s / math.sqrt(2)),
    "uniform": lambda s: stats.uniform(loc=-s * math.sqrt(3), scale=2 * s * math.sqrt(3)),
    "student-t": lambda s: stats.t(df=3, scale=s / math.sqrt(3)),
}


def _level(name: str) -> float:
    return 0.3 if name.startswith("fade") else 0.05


def test_registry() -> None:
    assert set(ALL) == {"gaussian", "bimodal", "trimodal", "fade-uniform", "fade-fixed",
                        "laplace", "uniform", "student-t", "von-mises"}
    assert set(FAMILIES) - set(ALL) == {"resample-uniform", "mask", "blur"}
    fam = get_family("laplace")
    assert get_family(fam) is fam and fam.name == "laplace"
    with pytest.raises(UserInputError) as err:
        get_family("pink")
    assert "'pink'" in str(err.value) and all(n in str(err.value) for n in FAMILIES)


@pytest.mark.parametrize("name", ALL)
def test_check_sigma(name: str) -> None:
    fam = FAMILIES[name]
    assert fam.check_sigma("0.5") == 0.5
    for bad in (-1.0, float("nan"), "x"):
        with pytest.raises(UserInputError, match=name):
            fam.check_sigma(bad)
    if name.startswith("fade"):
        assert fam.check_sigma(0) == 0.0 and fam.check_sigma(1) == 1.0
        with pytest.raises(UserInputError, match=r"\[0, 1\]"):
            fam.check_sigma(1.5)
    else:
        with pytest.raises(UserInputError, match="σ > 0"):
            fam.check_sigma(0)
        assert fam.check_sigma(7.0) == 7.0


@pytest.mark.parametrize("name", ALL)
def test_log_prob_is_a_density_in_1d(name: str) -> None:
    fam = FAMILIES[name]
    y = torch.linspace(-4, 4, 160_001, dtype=torch.float64).unsqueeze(-1)
    x = torch.tensor([0.1], dtype=torch.float64)
    dens = torch.exp(fam.log_prob(y, x, _level(name)))
    assert torch.isfinite(dens).all() and (dens >= 0).all()
    mass = torch.trapezoid(dens, y[:, 0]).item()
    # the discontinuous densities (box, fade-uniform) cost O(h·density) in the trapezoid rule
    assert mass == pytest.approx(1.0, abs=1e-3 if name in ("uniform", "fade-uniform") else 1e-6)


@pytest.mark.parametrize("name", ALL)
def test_samples_follow_log_prob(name: str) -> None:
    """The empirical CDF of ``sample`` equals the integral of exp(``log_prob``) (1-D)."""
    fam = FAMILIES[name]
    sigma = _level(name)
    gen = torch.Generator().manual_seed(11)
    x = torch.full((100_000, 1), 0.1, dtype=torch.float64)
    ys = fam.sample(x, sigma, gen)[:, 0]
    assert ys.shape == (100_000,)
    grid = torch.linspace(-4, 4, 160_001, dtype=torch.float64)
    dens = torch.exp(fam.log_prob(grid.unsqueeze(-1), x[:1], sigma))
    cdf = torch.cumulative_trapezoid(dens, grid)
    for q in (-0.05, 0.0, 0.08, 0.1, 0.13, 0.2, 0.3):
        want = cdf[torch.searchsorted(grid, torch.tensor(q, dtype=torch.float64)) - 1].item()
        got = (ys <= q).double().mean().item()
        # binomial standard error ≤ 0.0016 at n = 1e5
        assert got == pytest.approx(want, abs=0.008), q


@pytest.mark.parametrize("name", STD)
def test_sigma_is_the_per_axis_standard_deviation(name: str) -> None:
    fam = FAMILIES[name]
    sigma = 0.07
    gen = torch.Generator().manual_seed(5)
    x = torch.zeros(80_000, 2, dtype=torch.float64)
    noise = fam.sample(x, sigma, gen)
    marginal = MARGINAL[name](sigma)
    for axis in range(2):
        # Kolmogorov–Smirnov against scipy's marginal (robust to the t's heavy tails)
        assert stats.kstest(noise[:, axis].numpy(), marginal.cdf).pvalue > 1e-3
        if name != "student-t":  # the t₃'s sample variance converges too slowly to test
            assert noise[:, axis].var().item() == pytest.approx(sigma**2, rel=0.03)
    # x + noise: the sample is centred on x
    shifted = fam.sample(torch.full((80_000, 2), 0.3, dtype=torch.float64), sigma, gen)
    assert shifted.median(dim=0).values.sub(0.3).abs().max().item() < 0.01
    # and log_prob is the product of those marginals
    y = torch.tensor([[0.03, -0.05], [0.1, 0.0]], dtype=torch.float64)
    if name == "student-t":  # isotropic multivariate t: not a product; check it in 1-D
        y1 = y[:, :1]
        want = marginal.logpdf(y1[:, 0].numpy())
        assert np.allclose(fam.log_prob(y1, torch.zeros(1, dtype=torch.float64),
                                        sigma).numpy(), want)
    else:
        want = marginal.logpdf(y.numpy()).sum(-1)
        got = fam.log_prob(y, torch.zeros(2, dtype=torch.float64), sigma).numpy()
        assert np.allclose(got, want)


@pytest.mark.parametrize("name", STD)
def test_unit_noise(name: str) -> None:
    gen = torch.Generator().manual_seed(2)
    z = FAMILIES[name].unit_noise((200_000,), gen, dtype=torch.float64)
    assert z.dtype == torch.float64 and z.shape == (200_000,)
    assert abs(z.mean().item()) < 0.01
    if name == "student-t":  # unit variance of t₃: KS against the rescaled t₃ instead
        assert stats.kstest(z.numpy(), stats.t(df=3, scale=math.sqrt(1 / 3)).cdf).pvalue > 1e-3
    else:
        assert z.var().item() == pytest.approx(1.0, rel=0.02)
    again = FAMILIES[name].unit_noise((200_000,), torch.Generator().manual_seed(2),
                                      dtype=torch.float64)
    assert torch.equal(z, again)  # seeded


@pytest.mark.parametrize("name", sorted(set(ALL) - set(STD)))
def test_unit_noise_refused_where_there_is_none(name: str) -> None:
    with pytest.raises(UserInputError, match="no additive unit-variance form.*gaussian"):
        FAMILIES[name].unit_noise((3,))


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_seeded(name: str) -> None:
    fam = FAMILIES[name]
    x = torch.zeros(500, 2, dtype=torch.float64)
    a = fam.sample(x, _level(name), torch.Generator().manual_seed(9))
    b = fam.sample(x, _level(name), torch.Generator().manual_seed(9))
    c = fam.sample(x, _level(name), torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", STD)
def test_grid_kernel_has_the_same_standard_deviation(name: str) -> None:
    """The grid kernel of a σ-is-the-std family has per-axis variance ≈ σ² (fine grid)."""
    space = GridSpace.torus(1001, 1)  # odd: every offset has its mirror image
    sigma = 0.03
    k = make_kernel(space, name, sigma, "fft")
    col = k.c  # the column of x = 0, indexed by offsets
    d = space.circulant_offsets()[0]
    assert abs((col * d).sum().item()) < 1e-15
    # the kernel is the continuous marginal truncated to the torus [−½, ½] (which costs the
    # heavy-tailed t₃ 8% of its variance; the others nothing measurable), then discretised
    want = MARGINAL[name](sigma).expect(lambda y: y * y, lb=-0.5, ub=0.5, conditional=True)
    if name == "student-t":
        assert want < 0.95 * sigma**2
    else:
        assert want == pytest.approx(sigma**2, rel=1e-6)
    assert (col * d * d).sum().item() == pytest.approx(want, rel=2e-3)


@pytest.mark.parametrize("name", ["bimodal", "trimodal"])
def test_stretch_families_put_modes_at_the_shift(name: str) -> None:
    fam = FAMILIES[name]
    gen = torch.Generator().manual_seed(4)
    y = fam.sample(torch.zeros(60_000, 2, dtype=torch.float64), 0.005, gen)
    near = {c: ((y - c).abs() < 0.02).all(-1).double().mean().item() for c in (-0.05, 0.0, 0.05)}
    if name == "bimodal":
        assert near[0.0] == 0 and near[0.05] == pytest.approx(0.5, abs=0.01)
        assert near[-0.05] == pytest.approx(0.5, abs=0.01)
    else:
        assert near[0.0] == pytest.approx(0.5, abs=0.01)
        assert near[0.05] == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("name", ALL)
def test_gaussian_variance_only_where_the_kernel_is_gaussian(name: str) -> None:
    """Conjugacy is declared by the family: σ² exactly when log_prob is N(x, σ²I)."""
    fam = get_family(name)
    sigma = 0.3 if name.startswith("fade") else 0.07
    var = fam.gaussian_variance(sigma)
    if name != "gaussian":
        assert var is None
        return
    assert var == pytest.approx(sigma**2)
    x = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.tensor([[0.05, -0.02]], dtype=torch.float64)
    want = stats.multivariate_normal(mean=[0, 0], cov=var).logpdf(y[0].numpy())
    assert float(fam.log_prob(y, x, sigma)) == pytest.approx(want, rel=1e-12)


def test_aliases_name_the_registered_family_everywhere():
    from serialrepro.families import FAMILY_ALIASES, get_family

    for alias, name in FAMILY_ALIASES.items():
        assert alias not in FAMILIES and get_family(alias) is FAMILIES[name]
