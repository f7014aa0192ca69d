"""Diffusion called as diffusers' schedulers, held to DDPMScheduler and DDIMScheduler (a dev
extra): timesteps of every spacing, add_noise, get_velocity, and whole sampling loops for
every prediction type x spacing x (DDPM small/large variance, DDIM η = 0 and 1), with the
same "network" (a fixed function of x and t) and the same generator; then the deprecated
names and the migration errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.models import DDIMDiffusion, Diffusion, SchedulerOutput
from serialrepro.models.losses import diffusion_loss
from serialrepro.models.samplers import ddim_sampler, ddpm_sampler
from serialrepro.models.schedules import TIMESTEP_SPACINGS, make_schedule, spaced_timesteps

diffusers = pytest.importorskip("diffusers")

PREDICTIONS = ("epsilon", "sample", "v_prediction")
F, D, TOL = "gaussian", torch.float64, 1e-9
BETA_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def net(x: torch.Tensor, t) -> torch.Tensor:
    """A fixed "network": smooth in x, different at every t, bounded."""
    t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return 0.8 * torch.tanh(0.7 * x + torch.sin(t / 37.0)) + 0.1 * torch.cos(x * t / 300.0)


def _x(seed: int = 1, shape=(6, 2, 3, 3), dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _reference(cls, ours: Diffusion, **config):
    """diffusers' scheduler ``cls`` for our process's schedule, its tables in float64.

    diffusers keeps betas and their float32 cumprod; ᾱ near T then carries ~1e−4 of
    relative error, which a 20-step loop turns into ~1e−4 differences in the samples. So
    after checking the betas agree to float32 precision, the loops run diffusers' own step
    code on float64 samples with its tables in float64: the implementations then agree
    to ~1e−12, and any slip in a formula shows as a difference of order 1e−2 or more.
    """
    if "trained_betas" not in config:
        config["beta_schedule"] = {"linear": "linear",
                                   "cosine": "squaredcos_cap_v2"}[ours.schedule.name]
    ref = cls(num_train_timesteps=ours.num_train_timesteps, **config)
    torch.testing.assert_close(ours.betas.float(), ref.betas, rtol=1e-6, atol=1e-9)
    ref.betas = ours.betas.clone()
    ref.alphas = 1.0 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, dim=0)
    ref.one = torch.tensor(1.0, dtype=torch.float64)
    if hasattr(ref, "final_alpha_cumprod"):
        ref.final_alpha_cumprod = ref.one if ref.config.set_alpha_to_one else \
            ref.alphas_cumprod[0]
    return ref


# -- timesteps -----------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1000, 37])
@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0),
                                            ("linspace", 0)])
def test_set_timesteps_gives_diffusers_timesteps_for_every_n(T, spacing, offset):
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, timestep_spacing=spacing,
                                  steps_offset=offset)
    ddim = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing,
                                   steps_offset=offset)
    proc = Diffusion("gaussian", make_schedule("cosine", T), timestep_spacing=spacing,
                     steps_offset=offset)
    for n in range(1, T + 1 - offset):
        ref.set_timesteps(n)
        ddim.set_timesteps(n)
        proc.set_timesteps(n)
        want = ref.timesteps.tolist()
        assert ddim.timesteps.tolist() == want
        got = proc.timesteps.tolist()
        if len(want) == n + 1 and want[-1] == -1:
            # diffusers' np.arange(T, 0, -T/n) quirk: an extra value ~1e-13 becomes t = -1
            assert spacing == "trailing" and got == want[:-1], n
        else:
            assert got == want, n
        assert proc.num_steps == proc.num_inference_steps == n


def test_trailing_quirk_is_real_and_kept_out():
    ref = diffusers.DDPMScheduler(timestep_spacing="trailing")
    ref.set_timesteps(61)
    assert len(ref.timesteps) == 62 and ref.timesteps[-1] == -1
    assert spaced_timesteps(1000, 61, "trailing")[-1] == 15


def test_set_timesteps_recomputes_betas_and_respace_is_a_stride():
    proc = Diffusion.create("gaussian", "linear", 1000)
    proc.set_timesteps(10)
    assert proc.timesteps.tolist() == list(range(900, -1, -100))
    ac = make_schedule("linear", 1000).alphas_cumprod
    kept = torch.arange(0, 1000, 100)
    prev = torch.cat([torch.ones(1, dtype=ac.dtype), ac[kept][:-1]])
    torch.testing.assert_close(proc.schedule.betas, 1 - ac[kept] / prev, rtol=1e-12, atol=0)
    # the tables users index stay the training ones, as in diffusers
    assert proc.alphas_cumprod.shape == (1000,) and torch.equal(proc.alphas_cumprod, ac)
    # respace is ours: a new process striding the current one; set_timesteps again
    # starts from the training schedule
    assert proc.respace(2).timesteps.tolist() == list(range(800, -1, -200))
    proc.set_timesteps(4, timestep_spacing="trailing")
    assert proc.timesteps.tolist() == [999, 749, 499, 249]
    proc.set_timesteps(timesteps=[700, 300, 5])
    assert proc.timesteps.tolist() == [700, 300, 5] and proc.previous_timestep(300) == 5
    assert proc.previous_timestep(5) == -1


def test_set_timesteps_refuses_bad_requests_in_one_line():
    proc = Diffusion.create("gaussian", "linear", 100)
    for kwargs, match in [({"num_inference_steps": 0}, "1..100"),
                          ({"num_inference_steps": 101}, "1..100"),
                          ({"num_inference_steps": 10, "timestep_spacing": "uniform"},
                           "leading, linspace, trailing"),
                          ({"num_inference_steps": 100, "steps_offset": 1}, "beyond"),
                          ({"timesteps": [3, 5]}, "descending"),
                          ({"timesteps": [100, 5]}, "0..99"),
                          ({}, "exactly one")]:
        with pytest.raises(UserInputError, match=match) as info:
            proc.set_timesteps(**kwargs)
        assert "\n" not in str(info.value)


# -- forward process, v target ---------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_add_noise_and_get_velocity_equal_diffusers(schedule):
    ref = diffusers.DDPMScheduler(beta_schedule=BETA_SCHEDULE[schedule])
    proc = Diffusion.create("gaussian", schedule, 1000)
    torch.testing.assert_close(proc.betas.float(), ref.betas, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(proc.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-5,
                               atol=1e-9)
    x0, noise = _x(2), _x(3)
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    for p in (proc, proc.respace(7)):  # any training timestep, respaced or not
        torch.testing.assert_close(p.add_noise(x0, noise, t), ref.add_noise(x0, noise, t))
        torch.testing.assert_close(p.get_velocity(x0, noise, t),
                                   ref.get_velocity(x0, noise, t))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.testing.assert_close(proc.add_noise_from(x0, t, g1),
                               ref.add_noise(x0, torch.randn(x0.shape, generator=g2), t))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_training_loss_regresses_the_diffusers_target(prediction):
    """diffusion_loss with a network that outputs 0 is the mean square of the target:
    ε, x_0, or diffusers' get_velocity for the same timesteps and noise."""
    proc = Diffusion.create("gaussian", "linear", 1000, prediction_type=prediction)
    x0 = _x(5)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    loss = diffusion_loss(zero, proc, x0, torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(6)
    t = torch.randint(1000, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    target = {"epsilon": noise, "sample": x0,
              "v_prediction": diffusers.DDPMScheduler().get_velocity(x0, noise, t)}[prediction]
    torch.testing.assert_close(loss, torch.mean(target**2))
    # x_t and v determine x_0 and ε back, exactly (Salimans & Ho 2022, eq. 10)
    x_t = proc.add_noise(x0, noise, t)
    v = proc.get_velocity(x0, noise, t)
    vproc = Diffusion.create("gaussian", "linear", 1000, prediction_type="v_prediction")
    x0_hat, eps_hat = vproc._predict(v, t, x_t)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_hat, noise, atol=1e-5, rtol=1e-5)


# -- whole loops against the schedulers ------------------------------------------------------
def _loop(scheduler, model, x, generator, **step_kwargs):
    x0s = []
    for t in scheduler.timesteps:
        out = scheduler.step(model(x, t), t, x, generator=generator, **step_kwargs)
        x0s.append(out.pred_original_sample)
        x = out.prev_sample
    return x, x0s


SAMPLERS = [("ddpm", "fixed_small", None), ("ddpm", "fixed_small_log", None),
            ("ddpm", "fixed_large", None), ("ddim", None, 0.0), ("ddim", None, 1.0)]


@pytest.mark.parametrize("kind,variance,eta", SAMPLERS)
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("clip", [False, True])
def test_full_loop_equals_diffusers(kind, variance, eta, spacing, prediction, clip):
    config = dict(prediction_type=prediction, clip_sample=clip, clip_sample_range=1.5,
                  timestep_spacing=spacing)
    if kind == "ddpm":
        ours = Diffusion(F, make_schedule("linear", 1000), variance_type=variance, **config)
        ref = _reference(diffusers.DDPMScheduler, ours, variance_type=variance, **config)
        kwargs = {}
    else:
        ours = DDIMDiffusion(F, make_schedule("linear", 1000), **config)
        ref = _reference(diffusers.DDIMScheduler, ours, **config)
        kwargs = {"eta": eta}
    n = 23  # does not divide T: trailing and linspace land off the stride
    ref.set_timesteps(n)
    ours.set_timesteps(n)
    assert ours.timesteps.tolist() == ref.timesteps.tolist()
    x = _x(7, dtype=D)
    want, want_x0 = _loop(ref, net, x, torch.Generator().manual_seed(8), **kwargs)
    got, got_x0 = _loop(ours, net, x, torch.Generator().manual_seed(8), **kwargs)
    assert torch.isfinite(want).all() and want.dtype == D
    for a, b in zip(got_x0, want_x0, strict=True):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    torch.testing.assert_close(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("use_clipped", [False, True])
def test_ddim_options_equal_diffusers(use_clipped):
    """set_alpha_to_one=False, use_clipped_model_output and variance_noise, as diffusers."""
    config = dict(prediction_type="epsilon", clip_sample=True, clip_sample_range=0.5)
    ours = DDIMDiffusion(F, make_schedule("cosine", 1000), set_alpha_to_one=False, **config)
    ref = _reference(diffusers.DDIMScheduler, ours, set_alpha_to_one=False, **config)
    ref.set_timesteps(15)
    ours.set_timesteps(15)
    x = _x(9, dtype=D)
    kwargs = dict(eta=0.5, use_clipped_model_output=use_clipped, variance_noise=_x(10, dtype=D))
    want, _ = _loop(ref, net, x, None, **kwargs)
    got, _ = _loop(ours, net, x, None, **kwargs)
    torch.testing.assert_close(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("spacing", TIMESTEP_SPACINGS)
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_our_samplers_on_set_timesteps_equal_diffusers(prediction, spacing, variance):
    """The internal ddpm sampler (any spacing) and ddim sampler (leading, where DDIM's
    t − T//n is the next kept timestep; ε from the clipped x̂_0) run diffusers' loops."""
    config = dict(prediction_type=prediction, clip_sample=True, clip_sample_range=1.0,
                  timestep_spacing=spacing, variance_type=variance)
    proc = Diffusion(F, make_schedule("cosine", 1000), **config)
    proc.set_timesteps(20)
    x = _x(11, dtype=D)
    ref = _reference(diffusers.DDPMScheduler, proc, **config)
    ref.set_timesteps(20)
    want, _ = _loop(ref, net, x, torch.Generator().manual_seed(12))
    got = ddpm_sampler(net, x, proc, torch.Generator().manual_seed(12)).samples
    torch.testing.assert_close(got, want, rtol=TOL, atol=TOL)
    if spacing == "leading" and variance == "fixed_small":
        config.pop("variance_type")
        ref = _reference(diffusers.DDIMScheduler, proc, **config)
        ref.set_timesteps(20)
        want, _ = _loop(ref, net, x, torch.Generator().manual_seed(13), eta=1.0,
                        use_clipped_model_output=True)
        got = ddim_sampler(net, x, proc, torch.Generator().manual_seed(13), eta=1.0).samples
        torch.testing.assert_close(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_a_step_with_one_timestep_per_sample_is_each_samples_step(variance):
    """No noise where t = 0, the posterior's elsewhere, row by row."""
    proc = Diffusion.create(F, "linear", 1000, variance_type=variance)
    proc.set_timesteps(50)
    x = _x(19, (4, 3), dtype=D)
    t = torch.tensor([0, 20, 0, 980])
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=D)
    got = proc.ddpm_step(net(x, t), t, x, torch.Generator().manual_seed(3)).prev_sample
    for i, ti in enumerate(t.tolist()):
        xi = x[i:i + 1]
        mean, var = proc.posterior_mean_variance(proc.predict_x0(net(xi, ti), ti, xi), xi, ti)
        if variance == "fixed_large":
            var = proc.schedule.betas[proc.index_of(ti)]
        want = mean + (var.sqrt() * z[i:i + 1] if ti > 0 else 0)
        torch.testing.assert_close(got[i:i + 1], want, rtol=1e-12, atol=1e-12)
        # diffusers' step with that one timestep: no noise drawn at t = 0
        if ti == 0:
            torch.testing.assert_close(proc.step(net(xi, ti), ti, xi).prev_sample, want)


def test_unrespaced_thousand_step_loop_equals_diffusers_in_float32():
    """diffusers' own float32 tables, 1000 steps: agreement to float32 round-off."""
    ref = diffusers.DDPMScheduler(clip_sample=True)
    proc = Diffusion.create(F, "linear", 1000, clip_sample=True)
    x = _x(14, (4, 3))
    want, _ = _loop(ref, net, x, torch.Generator().manual_seed(15))
    got, _ = _loop(proc, net, x, torch.Generator().manual_seed(15))
    # measured 1.7e−4 (diffusers' float32 ᾱ vs our float64 one); a slip is O(1e−2)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


# -- outputs, aliases, migration -------------------------------------------------------------
def test_step_output_is_named_and_a_plain_tuple_without_return_dict():
    proc = Diffusion.create("gaussian", "linear", 1000)
    x = _x(16)
    out = proc.step(net(x, 999), 999, x, torch.Generator().manual_seed(0))
    assert isinstance(out, SchedulerOutput)
    assert out.prev_sample is out[0] and out.pred_original_sample is out[1]
    prev, x0 = out  # our samplers unpack it
    plain = proc.step(net(x, 999), torch.tensor(999), x, torch.Generator().manual_seed(0),
                      return_dict=False)
    assert type(plain) is tuple and torch.equal(plain[0], prev) and torch.equal(plain[1], x0)
    ddim = DDIMDiffusion("gaussian", make_schedule("linear", 1000))
    assert type(ddim.step(net(x, 999), 999, x, return_dict=False)) is tuple


def test_ddim_process_runs_every_internal_sampler_as_the_ddpm_one():
    a = Diffusion.create("gaussian", "linear", 100).respace(10)
    b = DDIMDiffusion("gaussian", make_schedule("linear", 100)).respace(10)
    assert isinstance(b, DDIMDiffusion)
    x = _x(17, (5, 2))
    for sampler in (ddpm_sampler, ddim_sampler):
        torch.testing.assert_close(sampler(net, x, a, torch.Generator().manual_seed(1)).samples,
                                   sampler(net, x, b, torch.Generator().manual_seed(1)).samples,
                                   rtol=0, atol=0)


def test_old_prediction_names_warn_and_map():
    for old, new in (("eps", "epsilon"), ("x0", "sample")):
        with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated; use '{new}'"):
            assert Diffusion.create("gaussian", prediction_type=old).prediction_type == new
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a family's default is not the caller's old name
        assert Diffusion.create("gaussian").prediction_type == "epsilon"
        assert Diffusion.create("mask").prediction_type == "sample"
    with pytest.raises(UserInputError, match="v_prediction") as info:
        Diffusion.create("gaussian", prediction_type="velocity")
    assert "\n" not in str(info.value)
    for pred in ("epsilon", "v_prediction"):
        with pytest.raises(UserInputError, match="variance-preserving"):
            Diffusion.create("blur", prediction_type=pred)


def test_clip_sample_bool_and_range_and_the_old_float():
    x = torch.full((2, 3), 10.0)
    new = Diffusion.create("gaussian", prediction_type="sample", clip_sample=True,
                           clip_sample_range=0.5)
    assert new.predict_x0(x, 3, x).max() == 0.5
    with pytest.warns(DeprecationWarning, match="clip_sample=True, clip_sample_range=0.5"):
        old = Diffusion.create("gaussian", prediction_type="sample", clip_sample=0.5)
    assert old.clip_sample is True and old.clip_sample_range == 0.5
    assert Diffusion.create("gaussian", prediction_type="sample").predict_x0(x, 3, x).max() == 10
    assert old.respace(2).clip_sample_range == 0.5
    for bad in (0.0, float("nan"), -1.0):
        with pytest.raises(UserInputError, match="clip_sample_range"):
            Diffusion.create("gaussian", clip_sample=True, clip_sample_range=bad)


def test_add_noise_the_old_way_names_the_new_method():
    proc = Diffusion.create("gaussian", "linear", 1000)
    x0, g = _x(18), torch.Generator().manual_seed(0)
    t = torch.full((x0.shape[0],), 10)
    for args in ((t, g), (g, t), (10,), (t, [g] * x0.shape[0])):
        with pytest.raises(UserInputError, match=r"add_noise_from\(original_samples, "
                                                 r"timesteps, generator\)") as info:
            proc.add_noise(x0, *args)
        assert "\n" not in str(info.value)
    with pytest.raises(UserInputError, match="integers"):
        proc.add_noise(x0, torch.zeros_like(x0), torch.full((6,), 0.5))


def test_runs_saved_with_the_old_names_load_and_resume(tmp_path):
    from serialrepro.models.training import TrainConfig, load_trained, train

    cfg = dict(dataset="two-moons", family="gaussian", num_timesteps=50, steps=4,
               batch_size=16, n_train=200, denoiser_options={"hidden": 16, "depth": 1},
               checkpoint_every=2, prediction_type="sample")
    train(TrainConfig(**cfg), tmp_path, device="cpu", progress=False)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    assert saved["prediction_type"] == "sample"
    path.write_text(json.dumps({**saved, "prediction_type": "x0"}))  # a run of before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading the user's old file warns about nothing
        m = load_trained(tmp_path, "cpu")
    assert m.process.prediction_type == "sample" and m.config.prediction_type == "sample"
    with pytest.warns(DeprecationWarning):  # resuming with the old name given again
        resumed = train(TrainConfig(**{**cfg, "steps": 6, "prediction_type": "x0"}), tmp_path,
                        device="cpu", progress=False)
    assert resumed.step == 6
    assert json.loads(path.read_text())["prediction_type"] == "sample"


def test_v_prediction_trains_and_samples(tmp_path):
    from serialrepro.models.training import TrainConfig, load_trained, sample_from, train

    cfg = TrainConfig(dataset="two-moons", family="gaussian", num_timesteps=50, steps=3,
                      batch_size=16, n_train=200, denoiser_options={"hidden": 16, "depth": 1},
                      prediction_type="v_prediction")
    train(cfg, tmp_path, device="cpu", progress=False)
    m = load_trained(tmp_path, "cpu")
    assert m.process.prediction_type == "v_prediction"
    for sampler in ("ddpm", "ddim", "x0-renoise", "cold"):
        assert torch.isfinite(sample_from(m, 4, sampler=sampler, stride=5)).all()


# -- scheduler configs -------------------------------------------------------------------------
@pytest.mark.parametrize("beta_schedule,T", [("linear", 1000), ("linear", 100),
                                             ("scaled_linear", 1000),
                                             ("squaredcos_cap_v2", 1000), ("sigmoid", 500)])
def test_from_config_reads_a_diffusers_scheduler_config(beta_schedule, T):
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=beta_schedule,
                                  beta_start=0.00085, beta_end=0.012, prediction_type="sample",
                                  clip_sample_range=2.0, timestep_spacing="trailing")
    ours = Diffusion.from_config(dict(ref.config))
    torch.testing.assert_close(ours.betas.float(), ref.betas, rtol=2e-6, atol=1e-9)
    assert (ours.prediction_type, ours.clip_sample, ours.clip_sample_range,
            ours.timestep_spacing) == ("sample", True, 2.0, "trailing")
    again = Diffusion.from_config(ours.config)  # our config round-trips
    assert torch.equal(again.betas, ours.betas) and again.config == ours.config
    assert ours.config.prediction_type == "sample"  # read as attributes too
    ours.set_timesteps(10)
    x = _x(20, dtype=D)
    ref = _reference(diffusers.DDPMScheduler, ours, **{k: v for k, v in ours.config.items()
                                                       if k != "num_train_timesteps"})
    ref.set_timesteps(10)
    want, _ = _loop(ref, net, x, torch.Generator().manual_seed(1))
    got, _ = _loop(ours, net, x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want, rtol=TOL, atol=TOL)


def test_from_config_builds_ddim_and_refuses_what_it_cannot_honour():
    cfg = dict(diffusers.DDIMScheduler(set_alpha_to_one=False).config)
    ddim = DDIMDiffusion.from_config(cfg)
    assert isinstance(ddim, DDIMDiffusion) and ddim.set_alpha_to_one is False
    for key, value, match in [("thresholding", True, "thresholding"),
                              ("rescale_betas_zero_snr", True, "rescale_betas_zero_snr"),
                              ("variance_type", "learned_range", "fixed_large, fixed_small, "),
                              ("beta_schedule", "laplace", "squaredcos_cap_v2"),
                              ("prediction_type", "flow", "v_prediction")]:
        with pytest.raises(UserInputError, match=match) as info:
            Diffusion.from_config({**cfg, key: value})
        assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_process_follows_its_input_onto_cuda():
    cpu = DDIMDiffusion(F, make_schedule("cosine", 1000), prediction_type="v_prediction",
                        clip_sample=True)
    gpu = DDIMDiffusion(F, make_schedule("cosine", 1000), prediction_type="v_prediction",
                        clip_sample=True)
    cpu.set_timesteps(25)
    gpu.set_timesteps(25, device="cuda")
    x0, noise, t = _x(21, dtype=D), _x(22, dtype=D), torch.tensor([0, 5, 500, 999, 3, 7])
    torch.testing.assert_close(gpu.add_noise(x0.cuda(), noise.cuda(), t.cuda()).cpu(),
                               cpu.add_noise(x0, noise, t), rtol=1e-12, atol=1e-12)
    want, _ = _loop(cpu, net, x0, None, eta=0.0)
    got, _ = _loop(gpu, net, x0.cuda(), None, eta=0.0)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)
    g = torch.Generator(device="cuda").manual_seed(0)
    out = ddpm_sampler(net, x0.cuda(), gpu, g).samples
    assert out.device.type == "cuda" and torch.isfinite(out).all()
