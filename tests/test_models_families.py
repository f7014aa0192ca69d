"""Contracts of every tensor noise family, run by parametrisation: identity at t = 0,
the limit distribution at t = T (a permutation energy test), shapes, dtypes, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.data import load_dataset
from serialrepro.errors import UserInputError
from serialrepro.families import get_family
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.noise import TENSOR_FAMILIES, make_family
from serialrepro.models.schedules import make_schedule

FAMILIES = sorted(TENSOR_FAMILIES)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_dataset("digits").train


def _process(name: str, data: torch.Tensor, schedule: str = "linear") -> Diffusion:
    fam = make_family(name)
    fam.fit(data)
    return Diffusion(fam, make_schedule(schedule, 1000))


def permutation_energy_pvalue(x: torch.Tensor, y: torch.Tensor, n_perm: int = 199,
                              seed: int = 0) -> float:
    """p-value of the energy two-sample test (Székely & Rizzo 2004) by permutation.

    All permutations are scored at once: with group indicators A (and B = 1 − A), the
    statistic is 2·aᵀDb/(nm) − aᵀDa/n² − bᵀDb/m² for each row a of A.
    """
    x, y = x.reshape(x.shape[0], -1).double(), y.reshape(y.shape[0], -1).double()
    pooled = torch.cat([x, y])
    d = torch.cdist(pooled, pooled)
    n, m = x.shape[0], y.shape[0]
    g = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(n + m, generator=g) for _ in range(n_perm)])
    order = torch.cat([torch.arange(n + m)[None], perms])
    a = (order < n).double()  # the observed split is row 0
    b = 1 - a
    da, db = a @ d, b @ d
    stat = 2 * (da * b).sum(1) / (n * m) - (da * a).sum(1) / n**2 - (db * b).sum(1) / m**2
    return float((stat[1:] >= stat[0]).sum() + 1) / (n_perm + 1)


@pytest.mark.parametrize("name", FAMILIES)
def test_identity_at_clean_level_and_t0(name, digits):
    proc = _process(name, digits)
    x0 = digits[:200]
    g = torch.Generator().manual_seed(0)
    noise = proc.family.sample_noise(x0.shape, g, x0.dtype)
    # ᾱ = 1 is exactly the identity (cold diffusion's D(x, 0) = x)
    torch.testing.assert_close(proc.family.degrade(x0, torch.ones(200), noise), x0,
                               atol=1e-6, rtol=0)
    # t = 0 (ᾱ_0 = 1 − 1e-4): VP adds √1e-4 = 0.01 std noise; fade/mask change ~1e-4 of the
    # coordinates; blur is a 1e-4-level blur plus 1e-4 jitter (documented in noise.py)
    xt = proc.add_noise_from(x0, torch.zeros(200, dtype=torch.long), g)
    dev = (xt - x0).abs()
    assert dev.mean() < 0.02
    assert (dev > 0.1).float().mean() < 5e-3


@pytest.mark.parametrize("name", FAMILIES)
def test_t_equal_T_matches_the_limit_distribution(name, digits):
    # cosine schedule: ᾱ_T ≈ 2e-9, so q_T is the limit up to a residual far below what
    # 300 samples can see (the linear schedule's ᾱ_T = 4e-5 leaves a 0.006·x_0 trace)
    proc = _process(name, digits, "cosine")
    assert proc.alphas_cumprod[-1] < 1e-8
    n = 300
    x0 = digits[:n]
    g = torch.Generator().manual_seed(1)
    xT = proc.add_noise_from(x0, torch.full((n,), 999), g)
    limit = proc.family.limit_sample(x0.shape, g, x0.dtype)
    if name == "mask":  # point-mass limit: every coordinate hidden up to ᾱ_T ≈ 4e-5
        assert (xT == 0).float().mean() > 0.999
        assert (limit == 0).all()
        return
    assert permutation_energy_pvalue(xT, limit) > 0.01
    # the test has power: it rejects a limit that is off by a modest amount
    wrong = 1.3 * limit if name != "blur" else limit + 0.2
    assert permutation_energy_pvalue(xT, wrong) <= 0.01


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_dtypes_and_determinism(name, dtype, digits):
    proc = _process(name, digits)
    x0 = digits[:5].to(dtype)
    t = torch.tensor([0, 10, 100, 500, 999])
    a = proc.add_noise_from(x0, t, torch.Generator().manual_seed(3))
    b = proc.add_noise_from(x0, t, torch.Generator().manual_seed(3))
    c = proc.add_noise_from(x0, t, torch.Generator().manual_seed(4))
    assert a.shape == x0.shape and a.dtype == dtype
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    if name != "mask":
        assert not torch.equal(a, c)
    lim = proc.family.limit_sample((3, 1, 8, 8), torch.Generator().manual_seed(0), dtype)
    assert lim.shape == (3, 1, 8, 8) and lim.dtype == dtype


@pytest.mark.parametrize("name", FAMILIES)
def test_per_sample_generators_make_rows_batch_independent(name, digits):
    proc = _process(name, digits)
    gens = lambda k: [torch.Generator().manual_seed(100 + i) for i in range(k)]  # noqa: E731
    full = proc.family.sample_noise((4, 1, 8, 8), gens(4))
    part = proc.family.sample_noise((2, 1, 8, 8), gens(2))
    torch.testing.assert_close(full[:2], part, rtol=0, atol=0)


def test_vector_families_work_on_2d_points_and_blur_refuses():
    x0 = torch.randn(10, 2)
    for name in FAMILIES:
        if name == "blur":
            with pytest.raises(UserInputError, match="images"):
                Diffusion.create(name).add_noise_from(x0, 5)
        else:
            assert Diffusion.create(name).add_noise_from(x0, 5).shape == (10, 2)


def test_blur_is_the_heat_equation():
    """Exact checks: the mean colour is preserved, strong blur reaches the per-image mean,
    and blurring twice composes (heat-flow semigroup: τ(ᾱ₁ᾱ₂) = τ(ᾱ₁) + τ(ᾱ₂))."""
    fam = get_family("blur")
    x = torch.randn(4, 3, 8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = fam.blur(x, torch.full((4,), 0.5))
    torch.testing.assert_close(y.mean((-2, -1)), x.mean((-2, -1)))
    far = fam.blur(x, torch.full((4,), 1e-12))
    torch.testing.assert_close(far, x.mean((-2, -1), keepdim=True).expand_as(x), atol=1e-6,
                               rtol=0)
    twice = fam.blur(fam.blur(x, torch.full((4,), 0.8)), torch.full((4,), 0.5))
    torch.testing.assert_close(twice, fam.blur(x, torch.full((4,), 0.4)))


def test_blur_jitter_is_gaussian_with_std_one_percent_times_sqrt_one_minus_abar():
    """What blur adds to the noiseless blur is N(0, (0.01·√(1−ᾱ))²) per pixel, independent
    of the image (none at ᾱ = 1), and the limit is the mean colour plus N(0, 0.01²)."""
    fam = make_family("blur")
    g = torch.Generator().manual_seed(5)
    x = torch.rand(64, 3, 8, 8, dtype=torch.float64, generator=g) * 2 - 1
    fam.fit(x)
    for abar in (1.0, 0.75, 1e-6):
        a = torch.full((64,), abar, dtype=torch.float64)
        noise = fam.sample_noise(x.shape, g, torch.float64)
        resid = fam.degrade(x, a, noise) - fam.family.blur(x, a)
        want = 0.01 * math.sqrt(1 - abar)
        if abar == 1.0:
            assert torch.equal(resid, torch.zeros_like(resid))
            continue
        assert resid.mean().abs().item() < 4 * want / math.sqrt(resid.numel())
        assert resid.std().item() == pytest.approx(want, rel=0.03)
        z = resid / want  # Gaussian: fourth moment 3
        assert (z**4).mean().item() == pytest.approx(3.0, abs=0.15)
        # independent of the image: the same draw on another image gives the same residual
        other = fam.degrade(-x, a, noise) - fam.family.blur(-x, a)
        torch.testing.assert_close(other, resid)
    lim = fam.limit_sample((500, 3, 8, 8), g, torch.float64)
    dev = lim - lim.mean((-2, -1), keepdim=True)
    assert dev.std().item() == pytest.approx(0.01, rel=0.03)


def test_unknown_family_lists_choices():
    with pytest.raises(UserInputError, match="blur, gaussian, laplace, mask, resample-uniform"):
        make_family("pink")
    with pytest.raises(UserInputError, match="no tensor representation.*families that do: "
                       "gaussian, laplace"):
        make_family("fade-uniform")
    with pytest.raises(UserInputError, match="mean colours"):
        make_family("blur").limit_sample((2, 1, 8, 8))
