"""One contract over every trained-model sampler × every tensor noise family (diffusers'
shared scheduler tests are the model): output shape, dtype and device follow the input,
a seed fixes the result, a list of generators gives sample i the same result whatever else
is in the batch, and one pinned full-loop value per (sampler, family) catches any change
in the numerics. Samplers that need a variance-preserving family refuse the others with a
one-line error.

The denoiser is analytic (:class:`AnalyticDenoiser`): elementwise in x, so it cannot be the
source of batch dependence, and it needs no training.
"""

from __future__ import annotations

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.noise import TENSOR_FAMILIES
from serialrepro.models.samplers import SAMPLERS

SHAPE = (1, 4, 4)  # images, so that every family (blur included) applies
NUM_TIMESTEPS, STRIDE = 100, 10  # ten sampling steps


class AnalyticDenoiser:
    """A smooth, bounded, time-dependent output: 0.5 tanh(x + 0.25) (1 + t / T). For
    ε-prediction it reads as ε̂, for x0-prediction as x̂_0; both stay finite at every step,
    and no family's start (the mask's zeros included) is a fixed point of it."""

    def __call__(self, x, t):
        scale = 1.0 + t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))) / NUM_TIMESTEPS
        return 0.5 * torch.tanh(x + 0.25) * scale


def _process(family: str) -> Diffusion:
    process = Diffusion.create(family, "linear", NUM_TIMESTEPS).respace(STRIDE)
    train = torch.rand((8, *SHAPE), generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64) * 2 - 1
    process.family.fit(train)  # blur's limit needs the training images' mean colours
    return process


def _start(process: Diffusion, n: int, dtype=torch.float64, device="cpu", seed=1):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(n)]
    return process.family.limit_sample((n, *SHAPE), gens, dtype, device)


def _sample(sampler: str, process: Diffusion, x, generator):
    return SAMPLERS[sampler](AnalyticDenoiser(), x, process, generator).samples


def _refuses(sampler: str, family: str) -> bool:
    """Whether the sampler refuses the family (it needs a variance-preserving one)."""
    try:
        _sample(sampler, _process(family), _start(_process(family), 1),
                torch.Generator().manual_seed(0))
    except UserInputError as exc:
        assert "variance-preserving" in str(exc)
        assert not TENSOR_FAMILIES[family].variance_preserving
        return True
    return False


def golden_value(sampler: str, family: str) -> float:
    """Σ of the final samples of four float64 samples, one generator seeded 0."""
    process = _process(family)
    x = _start(process, 4)
    return float(_sample(sampler, process, x, torch.Generator().manual_seed(0)).sum())


#: golden_value(sampler, family), None where the sampler refuses the family. Produced once
#: by ``PYTHONPATH=src python tests/test_models_sampler_contract.py`` (prints this table)
#: on the implementation of each step in serialrepro.models.diffusion at the time.
GOLDEN: dict[tuple[str, str], float | None] = {
    ('cold', 'blur'): -4.059924102159919,
    ('cold', 'resample-uniform'): 3.2028920346836656,
    ('cold', 'gaussian'): -529.6316756234398,
    ('cold', 'laplace'): -623.5868730512655,
    ('cold', 'mask'): 12.106656058638308,
    ('cold', 'student-t'): -127.84420180668305,
    ('cold', 'uniform'): -635.8922981783584,
    ('ddim', 'blur'): None,
    ('ddim', 'resample-uniform'): None,
    ('ddim', 'gaussian'): -529.6316756234398,
    ('ddim', 'laplace'): -623.5868730512655,
    ('ddim', 'mask'): None,
    ('ddim', 'student-t'): -127.84420180668305,
    ('ddim', 'uniform'): -635.8922981783584,
    ('ddpm', 'blur'): None,
    ('ddpm', 'resample-uniform'): None,
    ('ddpm', 'gaussian'): -601.0714790941611,
    ('ddpm', 'laplace'): -535.2582603049784,
    ('ddpm', 'mask'): None,
    ('ddpm', 'student-t'): -235.7082968393235,
    ('ddpm', 'uniform'): -634.7971298484571,
    ('x0-renoise', 'blur'): 15.775515875859824,
    ('x0-renoise', 'resample-uniform'): 13.214204125218817,
    ('x0-renoise', 'gaussian'): -416.6574942727256,
    ('x0-renoise', 'laplace'): -361.0763126828507,
    ('x0-renoise', 'mask'): 14.090900575066925,
    ('x0-renoise', 'student-t'): -123.23122396864287,
    ('x0-renoise', 'uniform'): -455.6309654646465,
    ('serial', 'blur'): 15.787775500174456,
    ('serial', 'resample-uniform'): 13.268915260528889,
    ('serial', 'gaussian'): -12.278087729704836,
    ('serial', 'laplace'): -10.375815850806012,
    ('serial', 'mask'): 13.430215334554877,
    ('serial', 'student-t'): -36.24366970835155,
    ('serial', 'uniform'): -22.50721159681133,
}

PAIRS = [(s, f) for s in sorted(SAMPLERS) for f in sorted(TENSOR_FAMILIES)]


def test_every_pair_has_a_golden_value():
    assert sorted(GOLDEN) == sorted(PAIRS)


@pytest.mark.parametrize("sampler, family", PAIRS)
def test_full_loop_value_is_pinned(sampler, family):
    want = GOLDEN[(sampler, family)]
    if want is None:
        assert _refuses(sampler, family)
        return
    assert golden_value(sampler, family) == pytest.approx(want, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("sampler, family", PAIRS)
def test_shape_dtype_device_and_seed(sampler, family):
    if GOLDEN.get((sampler, family), 0.0) is None:
        pytest.skip("the sampler refuses this family (test_full_loop_value_is_pinned)")
    process = _process(family)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            x = _start(process, 3, dtype).to(device)
            a = _sample(sampler, process, x, torch.Generator(device=device).manual_seed(5))
            b = _sample(sampler, process, x, torch.Generator(device=device).manual_seed(5))
            assert a.shape == x.shape and a.dtype == dtype and a.device == x.device
            assert torch.isfinite(a).all()
            assert torch.equal(a, b)


@pytest.mark.parametrize("sampler, family", PAIRS)
def test_per_sample_generators_make_sample_i_independent_of_the_batch(sampler, family):
    """With one generator per sample, sample i is the same alone and in a batch of three;
    the denoiser is elementwise, so only the batched arithmetic of a family (blur's DCT
    products) can differ, by float64 round-off (≤ 1e−12 here)."""
    if GOLDEN.get((sampler, family), 0.0) is None:
        pytest.skip("the sampler refuses this family (test_full_loop_value_is_pinned)")
    process = _process(family)
    x = _start(process, 3)
    batch = _sample(sampler, process, x,
                    [torch.Generator().manual_seed(20 + i) for i in range(3)])
    alone = _sample(sampler, process, x[1:2], [torch.Generator().manual_seed(21)])
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=1e-12)


if __name__ == "__main__":
    for pair in PAIRS:
        value = None if _refuses(*pair) else golden_value(*pair)
        print(f"    {pair!r}: {value!r},")
