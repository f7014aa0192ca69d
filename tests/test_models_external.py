"""Someone's own diffusers model (``models.external``): a tiny randomly initialised
UNet2DModel saved with ``save_pretrained`` is wrapped as our denoiser; the installed
console script samples from it exactly as our samplers do in-process, every sampler and
stride runs on it, and what cannot be represented or is missing is one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from serialrepro.errors import UserInputError

diffusers = pytest.importorskip("diffusers")

from serialrepro.models.external import (  # noqa: E402 (after the optional import)
    DiffusersDenoiser,
    find_model_files,
    load_diffusers_model,
    process_from_scheduler_config,
)
from serialrepro.models.samplers import SAMPLERS, get_sampler  # noqa: E402
from serialrepro.models.training import sample_from  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def _unet(seed: int = 0, channels: int = 1, size: int = 8):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels,
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"))


def _save(folder: Path, pipeline: bool = False, **scheduler) -> Path:
    unet = _unet()
    sched = diffusers.DDPMScheduler(num_train_timesteps=scheduler.pop("T", 100), **scheduler)
    if pipeline:
        diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(folder)
    else:
        unet.save_pretrained(folder)
        sched.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("own") / "unet")


def _console_script() -> str:
    here = Path(sys.executable).parent / "serialrepro"
    return str(here) if here.exists() else shutil.which("serialrepro")


def test_the_console_script_samples_the_saved_model_as_our_sampler_does(tmp_path, model_dir):
    out = tmp_path / "own.npz"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([_console_script(), "sample", "--diffusers-model", str(model_dir),
                        "--out", str(out), "--n", "6", "--sampler", "ddim", "--stride", "10",
                        "--seed", "3", "--device", "cpu"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # diffusers' own notices stay off the terminal
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    got = np.load(out)["samples"]
    assert got.shape == (6, 1, 8, 8) and np.isfinite(got).all()
    # in-process: our DDIM sampler on the wrapped model, same seed, same strided schedule
    model = load_diffusers_model(model_dir, "cpu")
    proc = model.process.respace(10)
    g = torch.Generator().manual_seed(3)
    x = proc.family.limit_sample((6, 1, 8, 8), g, torch.float32, "cpu")
    want = get_sampler("ddim")(model.denoiser, x, proc, g).samples.numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.abs(got - x.numpy()).max() > 0.1  # the steps moved the samples


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("stride", [1, 7])
def test_every_sampler_and_stride_runs_on_it(model_dir, sampler, stride):
    model = load_diffusers_model(model_dir, "cpu")
    x = sample_from(model, 3, sampler=sampler, stride=stride, seed=0, respace="recompute")
    assert x.shape == (3, 1, 8, 8) and bool(torch.isfinite(x).all())


def test_the_adapter_maps_timesteps_betas_and_predictions_to_diffusers():
    """Our process for a scheduler config is that scheduler's: same ᾱ, and one DDPM step
    from the same generator is diffusers' own ``step`` (ε and x_0 predictions)."""
    for pred, ours in (("epsilon", "eps"), ("sample", "x0")):
        ref = diffusers.DDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2",
                                      prediction_type=pred, clip_sample_range=0.8)
        proc, p = process_from_scheduler_config(dict(ref.config))
        assert p == pred and proc.prediction_type in (ours, pred)
        big = torch.full((1, 1, 8, 8), 10.0)
        assert float(proc.predict_x0(big, 20, -big).abs().max()) == pytest.approx(0.8)
        torch.testing.assert_close(proc.alphas_cumprod, ref.alphas_cumprod.double())
        x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        out = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
        # the DDPM step from our process's parts (DDPM eqs. 6-7), z drawn as diffusers does
        mean, var = proc.posterior_mean_variance(proc.predict_x0(out, 20, x), x, 20)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
        mine = mean + var.sqrt() * z
        theirs = ref.step(out, 20, x, generator=torch.Generator().manual_seed(2)).prev_sample
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_v_prediction_becomes_epsilon():
    """ε = √ᾱ v + √(1−ᾱ) x_t (Salimans & Ho 2022): x̂_0 of the converted output equals
    diffusers' x̂_0 from v."""
    ref = diffusers.DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    proc, pred = process_from_scheduler_config(dict(ref.config))
    unet = _unet().eval()
    den = DiffusersDenoiser(unet, pred, proc.alphas_cumprod).eval()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([30, 30])
    with torch.no_grad():
        v = unet(x, t).sample
        x0_ours = proc.predict_x0(den(x, t), 30, x)
    theirs = ref.step(v, 30, x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x0_ours, theirs.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_a_pipeline_folder_loads_too(tmp_path):
    folder = _save(tmp_path / "pipe", pipeline=True)
    files = find_model_files(folder)
    assert files.unet_dir == folder / "unet"
    assert load_diffusers_model(folder).data_shape == (1, 8, 8)


@pytest.mark.parametrize("what,needle", [
    ("no folder", "does not exist"),
    ("empty", "is not a diffusers model: "),
    ("no weights", "the model's weights are missing"),
    ("no scheduler", "scheduler_config.json is missing"),
    ("fixed_large", "variance_type 'fixed_large' cannot be represented"),
    ("thresholding", "thresholding = true cannot be represented"),
    ("learned", "out_channels 2 differs from in_channels 1"),
    ("conditional", "describes a UNet2DConditionModel"),
])
def test_missing_files_and_what_cannot_be_represented_are_one_line(tmp_path, what, needle):
    folder = tmp_path / "m"
    if what != "no folder":
        folder.mkdir()
    if what in ("no weights", "no scheduler", "fixed_large", "thresholding", "learned",
                "conditional"):
        _save(folder, variance_type="fixed_large" if what == "fixed_large" else "fixed_small",
              thresholding=what == "thresholding")
    if what == "no weights":
        next(folder.glob("diffusion_pytorch_model.*")).unlink()
    if what == "no scheduler":
        (folder / "scheduler_config.json").unlink()
    if what in ("learned", "conditional"):
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update({"learned": {"out_channels": 2},
                    "conditional": {"_class_name": "UNet2DConditionModel"}}[what])
        (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserInputError, match=needle) as e:
        load_diffusers_model(folder)
    assert "\n" not in str(e.value)


def test_without_diffusers_the_error_names_the_install(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now fails
    with pytest.raises(UserInputError, match="pip install diffusers"):
        load_diffusers_model(model_dir)


def test_cli_refuses_both_or_neither_model(tmp_path, model_dir):
    from tests.test_models_cli import run

    r = run("sample", "--out", str(tmp_path / "s.npz"))
    assert r.returncode == 2 and "give either --run-dir" in r.stderr
    r = run("sample", "--out", str(tmp_path / "s.npz"), "--run-dir", str(tmp_path),
            "--diffusers-model", str(model_dir))
    assert r.returncode == 2 and "not both" in r.stderr


def test_evaluate_scores_samples_of_the_saved_model(tmp_path, model_dir):
    from tests.test_models_cli import run

    out = tmp_path / "s.npz"
    assert run("sample", "--diffusers-model", str(model_dir), "--out", str(out), "--n", "40",
               "--stride", "20", "--device", "cpu").returncode == 0
    r = run("evaluate", "--diffusers-model", str(model_dir), "--samples", str(out))
    assert r.returncode == 2 and "needs --dataset NAME" in r.stderr
    r = run("evaluate", "--diffusers-model", str(model_dir), "--samples", str(out),
            "--dataset", "digits", "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    scores = json.loads(r.stdout)
    assert scores["fid"] > scores["real_vs_real"]["fid"]  # an untrained net draws noise
    assert scores["fid_features"] == "local classifier features"
    assert (tmp_path / "fid-classifier-digits-seed0" / "classifier.pt").exists()
    r = run("evaluate", "--diffusers-model", str(model_dir), "--samples", str(out),
            "--dataset", "digits", "--fid-features", "inception", "--inception-weights",
            str(tmp_path / "none.pth"))
    assert r.returncode == 2 and "pt_inception-2015-12-05-6726825d.pth" in r.stderr


@torch.no_grad()
@pytest.mark.parametrize("steps", [100, 10])
def test_ddpm_on_the_wrapped_model_is_the_diffusers_loop(model_dir, steps):
    """Timesteps, betas and the ε mapping together: our DDPM sampler on the wrapped model
    gives the samples of diffusers' own loop (its UNet, its DDPMScheduler.step) from the
    same generator, at T = 100 steps and strided to 10."""
    model = load_diffusers_model(model_dir, "cpu")
    proc = model.process.respace(100 // steps)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = get_sampler("ddpm")(model.denoiser, x, proc, torch.Generator().manual_seed(1))
    unet = diffusers.UNet2DModel.from_pretrained(model_dir).eval()
    sched = diffusers.DDPMScheduler.from_pretrained(model_dir)
    sched.set_timesteps(steps)
    assert sched.timesteps.tolist() == ours.timesteps
    y, g = x.clone(), torch.Generator().manual_seed(1)
    for t in sched.timesteps:
        y = sched.step(unet(y, t).sample, t, y, generator=g).prev_sample
    # float32 diffusers tables against our float64 ones: ~2e-4 after 100 steps; a timestep
    # off by one or a wrong beta moves the samples by far more
    torch.testing.assert_close(ours.samples, y, rtol=0, atol=1e-3)


def test_fig4_runs_the_protocol_on_the_saved_model(tmp_path, model_dir):
    from tests.test_models_cli import run

    from serialrepro.models.fig4 import run_fig4

    out = tmp_path / "fig4"
    res = run_fig4(out, preset="quick", seed=0, progress=False, device="cpu",
                   diffusers_model=model_dir)
    model = load_diffusers_model(model_dir)
    t = res.table
    assert set(t["model"]) == {"diffusers:unet"} and set(t["family"]) == {"gaussian"}
    assert sorted(set(t["steps"])) == [5, 10]  # its T = 100 at strides 20 and 10
    cells = out / "digits" / f"diffusers-{model.fingerprint[:12]}" / "cells"
    assert len(list(cells.glob("*.json"))) == len(t)
    assert "model: diffusers UNet2DModel unet (epsilon, T = 100)" in res.notes
    before = {p: p.stat().st_mtime_ns for p in cells.glob("*.json")}
    again = run_fig4(out, preset="quick", seed=0, progress=False, device="cpu",
                     diffusers_model=model_dir)
    assert {p: p.stat().st_mtime_ns for p in cells.glob("*.json")} == before  # reused
    assert again.table["fid"].tolist() == t["fid"].tolist()
    r = run("fig4", "--out", str(tmp_path / "f2"), "--preset", "quick", "--fid-features",
            "inception", "--inception-weights", str(tmp_path / "missing.pth"))
    assert r.returncode == 2 and "get pt_inception-2015-12-05-6726825d.pth" in r.stderr
    assert not (tmp_path / "f2").exists()  # refused before anything was written
