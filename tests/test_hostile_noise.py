"""Every noise draw is finite by construction, and samplers refuse what would be NaN.

Inverse-CDF draws must use an open interval: ``torch.rand`` returns exactly 0 with
probability 2⁻²⁴ per float32 draw, which made Laplace noise −inf about once per 2,000
training steps. The boundary is forced here by patching ``torch.rand``, and millions of
ordinary draws are checked as well.
"""

from __future__ import annotations

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.families import FAMILIES, PARTICLES, family_names
from serialrepro.models.diffusion import Diffusion, check_eta
from serialrepro.models.noise import TENSOR_FAMILIES, make_family
from serialrepro.models.samplers import SAMPLERS, ddim_sampler

UNIT = [n for n, f in FAMILIES.items() if f.has_unit_noise]
LEVEL = {n: (0.5 if not f.sigma_is_std else 0.05) for n, f in FAMILIES.items()}


def _boundary_rand(value: float):
    real = torch.rand

    def rand(*size, generator=None, dtype=None, device=None, **kw):
        out = real(*size, generator=generator, dtype=dtype, device=device, **kw)
        edge = 0.0 if value == 0.0 else 1.0 - torch.finfo(out.dtype).eps / 2
        return torch.full_like(out, edge)

    return rand


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", UNIT)
def test_unit_noise_is_finite_at_both_ends_of_rand(monkeypatch, name, dtype):
    for edge in (0.0, 1.0):
        monkeypatch.setattr(torch, "rand", _boundary_rand(edge))
        x = FAMILIES[name].unit_noise((4096,), torch.Generator().manual_seed(0), dtype)
        assert torch.isfinite(x).all(), (name, edge)


def test_laplace_at_rand_zero_was_infinite_and_is_now_its_extreme_quantile(monkeypatch):
    monkeypatch.setattr(torch, "rand", _boundary_rand(0.0))
    x = FAMILIES["laplace"].unit_noise((8,), None, torch.float32)
    # u = −0.5 (lower tail) maps to the quantile at 2|u| = 1 − 2⁻²⁴: −log(2²⁴)/√2 ≈ −11.76
    assert torch.allclose(x, torch.full_like(x, -24 * 0.6931471805599453 / 2**0.5), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(family_names(PARTICLES)))
def test_family_samples_are_finite_when_rand_returns_zero(monkeypatch, name):
    monkeypatch.setattr(torch, "rand", _boundary_rand(0.0))
    fam = FAMILIES[name]
    x = torch.zeros((2048, 2), dtype=torch.float64)
    y = fam.sample(x, LEVEL[name], torch.Generator().manual_seed(1))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", UNIT)
def test_millions_of_float32_draws_are_finite(name):
    gen = torch.Generator().manual_seed(123)
    # Laplace: 2^26 draws, so rand() = 0 (p = 2^-24 each) occurs about 4 times
    chunks = 16 if name == "laplace" else 2
    for _ in range(chunks):
        x = FAMILIES[name].unit_noise((1 << 22,), gen, torch.float32)
        assert bool(torch.isfinite(x).all()), name


@pytest.mark.parametrize("name", sorted(TENSOR_FAMILIES))
def test_tensor_family_noise_is_finite(monkeypatch, name):
    fam = make_family(name)
    if name == "blur":
        fam.fit(torch.zeros((2, 1, 4, 4)))
    shape = (2, 1, 4, 4)
    for edge in (0.0, 1.0):
        monkeypatch.setattr(torch, "rand", _boundary_rand(edge))
        assert torch.isfinite(fam.sample_noise(shape, None)).all()
        assert torch.isfinite(fam.limit_sample(shape, None)).all()


@pytest.mark.parametrize("eta", [float("nan"), float("inf"), -0.5, "x", None])
def test_ddim_refuses_non_finite_or_negative_eta(eta):
    with pytest.raises(UserInputError, match="eta"):
        check_eta(eta)
    process = Diffusion.create("gaussian", num_timesteps=50)
    x = torch.zeros((3, 2))
    with pytest.raises(UserInputError, match="eta"):
        ddim_sampler(lambda x_t, t: torch.zeros_like(x_t), x, process, eta=eta)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_a_nan_model_is_refused_not_sampled(name):
    process = Diffusion.create("gaussian", num_timesteps=50).respace(10)
    x = torch.zeros((3, 2))
    with pytest.raises(UserInputError, match="non-finite"):
        SAMPLERS[name](lambda x_t, t: torch.full_like(x_t, float("nan")), x, process)
    out = SAMPLERS[name](lambda x_t, t: torch.zeros_like(x_t), x, process,
                         generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.samples).all()


def test_levels_whose_square_underflows_are_refused_and_the_smallest_allowed_is_finite():
    from serialrepro.experiments.config import MIN_STD_LEVEL, expand, parse_config
    from serialrepro.experiments.runner import _payload, compute_cell

    def cells(value):
        return expand(parse_config({"name": "tiny", "sweeps": [{
            "T": 2, "grid": "torus:8", "schedule": {"kind": "constant", "value": value}}]}))

    with pytest.raises(UserInputError, match="underflows"):
        cells(1e-163)  # scored NaN everywhere before
    record, _ = compute_cell(_payload(cells(MIN_STD_LEVEL)[0]))
    assert all(v is not None and v == v for v in record["scores"].values())
