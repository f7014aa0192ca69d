"""Training and sampling: resume gives identical losses, seeded determinism, a 2-D toy model
that generates, sampler identities, every family trains and samples on toys and digits."""

from __future__ import annotations

import pytest
import torch

from serialrepro.data import load_dataset
from serialrepro.errors import UserInputError
from serialrepro.metrics import energy_distance
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.networks import make_denoiser
from serialrepro.models.noise import TENSOR_FAMILIES
from serialrepro.models.samplers import SAMPLERS, get_sampler
from serialrepro.models.training import TrainConfig, load_trained, sample_from, train

TINY = {"hidden": 32, "depth": 1}


def _cfg(**kw) -> TrainConfig:
    base = dict(dataset="two-moons", family="gaussian", num_timesteps=50, steps=20,
                batch_size=32, n_train=500, denoiser_options=TINY, checkpoint_every=10)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_gives_identical_losses(tmp_path):
    straight = train(_cfg(steps=20), tmp_path / "a", device="cpu", progress=False)
    half = train(_cfg(steps=10), tmp_path / "b", device="cpu", progress=False)
    assert half.step == 10
    resumed = train(_cfg(steps=20), tmp_path / "b", device="cpu", progress=False)
    assert resumed.step == 20
    assert resumed.losses == straight.losses  # bit-identical, step for step
    for p, q in zip(straight.denoiser.parameters(), resumed.denoiser.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_refuses_a_different_config(tmp_path):
    train(_cfg(steps=5), tmp_path, device="cpu", progress=False)
    with pytest.raises(UserInputError, match="family"):
        train(_cfg(steps=5, family="laplace"), tmp_path, device="cpu", progress=False)


def test_same_seed_same_samples_and_per_sample_seeds(tmp_path):
    m = train(_cfg(steps=5), tmp_path, device="cpu", progress=False)
    a = sample_from(m, 6, seed=3)
    b = sample_from(m, 6, seed=3)
    c = sample_from(m, 6, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # per-sample seeds: sample i does not depend on the batch it was drawn in
    full = sample_from(m, 6, seed=3, per_sample_seeds=True, batch_size=6)
    split = sample_from(m, 6, seed=3, per_sample_seeds=True, batch_size=4)
    torch.testing.assert_close(full, split, atol=1e-5, rtol=1e-5)


def test_toy_model_generates(tmp_path):
    """A small gaussian DDPM on eight Gaussians, trained for seconds, must beat its own
    starting (limit) distribution by a wide margin in energy distance to held-out data."""
    cfg = TrainConfig(dataset="eight-gaussians", family="gaussian", num_timesteps=100,
                      steps=1200, batch_size=256, n_train=4000, lr=3e-3,
                      denoiser_options={"hidden": 64, "depth": 2}, checkpoint_every=1200)
    m = train(cfg, tmp_path, device="cpu", progress=False)
    ref = load_dataset("eight-gaussians", seed=99, n_train=1000, n_test=1).train
    samples = sample_from(m, 1000, seed=1)
    limit = m.process.family.limit_sample((1000, 2), torch.Generator().manual_seed(2))
    ed_model, ed_limit = energy_distance(samples, ref), energy_distance(limit, ref)
    assert ed_model < ed_limit / 5, (ed_model, ed_limit)
    # the loaded checkpoint (EMA weights) samples the same as the in-memory model
    torch.testing.assert_close(sample_from(load_trained(tmp_path, "cpu"), 50, seed=5),
                               sample_from(m, 50, seed=5))


def test_cold_step_equals_ddim_eta0_for_vp_families():
    """Bansal et al.: Algorithm 2 with the noise inferred from x_t is DDIM (η = 0)."""
    torch.manual_seed(0)
    net = make_denoiser("mlp", (3,), **TINY).eval()
    proc = Diffusion.create("laplace", "cosine", 100).respace(5)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    a = get_sampler("cold")(net, x, proc, torch.Generator().manual_seed(2))
    b = get_sampler("ddim")(net, x, proc, torch.Generator().manual_seed(2), eta=0.0)
    torch.testing.assert_close(a.samples, b.samples, atol=1e-5, rtol=1e-5)


def test_reproduction_step_renoises_with_the_family():
    """x_{t−1} = D(x̂_0, t−1; fresh noise): for gaussian √ᾱ_prev x̂_0 + √(1−ᾱ_prev) z."""
    proc = Diffusion.create("gaussian", "linear", 1000, prediction_type="sample").respace(10)
    x0 = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    xt = torch.randn(4, 5, dtype=torch.float64)
    out, x0hat = proc.reproduction_step(x0, 500, xt, torch.Generator().manual_seed(7))
    z = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ac_prev = proc.alphas_cumprod[490]  # the training table, as diffusers
    torch.testing.assert_close(out, ac_prev.sqrt() * x0 + (1 - ac_prev).sqrt() * z)
    assert torch.equal(x0hat, x0)
    last, _ = proc.reproduction_step(x0, 0, xt, torch.Generator().manual_seed(7))
    torch.testing.assert_close(last, x0)  # ᾱ_prev = 1 at the last step: the reconstruction


def test_trajectory_and_callback():
    net = make_denoiser("mlp", (2,), **TINY).eval()
    proc = Diffusion.create("gaussian", "linear", 40).respace(4)
    seen = []
    traj = get_sampler("ddpm")(net, torch.randn(3, 2), proc, torch.Generator().manual_seed(0),
                               callback=lambda d: seen.append(d["t"]), keep_states=True)
    assert traj.timesteps == list(range(36, -1, -4)) == seen
    assert len(traj.states) == len(traj.x0_preds) == 10 and traj.samples.shape == (3, 2)


@pytest.mark.parametrize("family", sorted(TENSOR_FAMILIES))
def test_every_family_trains_and_samples_on_toys_and_digits(family, tmp_path):
    for dataset in ("two-moons", "digits"):
        if family == "blur" and dataset == "two-moons":
            with pytest.raises(UserInputError, match="images"):
                train(_cfg(family=family, steps=2), tmp_path / dataset, device="cpu",
                      progress=False)
            continue
        opts = TINY if dataset == "two-moons" else {"base": 8, "channel_mults": (1, 2)}
        m = train(_cfg(family=family, dataset=dataset, steps=3, denoiser_options=opts),
                  tmp_path / dataset, device="cpu", progress=False)
        assert all(torch.isfinite(torch.tensor(m.losses)))
        samplers = ["reproduction", "cold"] + (
            ["ddpm", "ddim"] if TENSOR_FAMILIES[family].variance_preserving else [])
        for name in samplers:
            x = sample_from(m, 4, sampler=name, stride=10)
            assert x.shape == (4, *m.data_shape) and torch.isfinite(x).all()
        if not TENSOR_FAMILIES[family].variance_preserving:
            with pytest.raises(UserInputError, match="variance-preserving"):
                sample_from(m, 2, sampler="ddpm", stride=10)


def test_unknown_sampler_lists_choices():
    with pytest.raises(UserInputError, match=", ".join(sorted(SAMPLERS))):
        get_sampler("euler")
