"""End to end through the command line: train, sample, evaluate on a toy; fig4 quick; bad
inputs give one-line errors listing the valid choices (exit code 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    """Run ``serialrepro ARGS`` in-process through the console entry point (exit codes and
    the one-line error handling included), returning what a subprocess would."""
    import contextlib
    import io

    from serialrepro.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["serialrepro", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_module_entry_point_in_a_subprocess(tmp_path):
    run_dir = tmp_path / "x"
    r = subprocess.run([sys.executable, "-m", "serialrepro", "train", "--run-dir", str(run_dir),
                        "--family", "pink"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and "unknown tensor noise family 'pink'" in r.stderr
    assert not run_dir.exists()  # bad input fails before anything is written


def test_train_sample_evaluate_on_a_toy(tmp_path):
    run_dir = tmp_path / "run"
    r = run("train", "--run-dir", str(run_dir), "--dataset", "two-moons", "--family", "laplace",
            "--timesteps", "50", "--steps", "200", "--width", "32", "--batch-size", "128",
            "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "trained 200 steps" in r.stdout
    assert json.loads((run_dir / "config.json").read_text())["family"] == "laplace"
    import pandas as pd

    curve = pd.read_csv(run_dir / "loss.csv")
    assert curve["step"].tolist() == list(range(1, 201)) and np.isfinite(curve["loss"]).all()
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "s.npz"
    r = run("sample", "--run-dir", str(run_dir), "--out", str(out), "--n", "300",
            "--sampler", "ddim", "--stride", "5", "--seed", "1")
    assert r.returncode == 0, r.stderr
    x = np.load(out)["samples"]
    assert x.shape == (300, 2) and np.isfinite(x).all()
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG" and "preview" in r.stdout
    r = run("sample", "--run-dir", str(run_dir), "--out", str(tmp_path / "naive.npz"), "--n",
            "50", "--sampler", "ddpm", "--stride", "5", "--respace", "naive")
    assert r.returncode == 0, r.stderr
    assert np.isfinite(np.load(tmp_path / "naive.npz")["samples"]).all()
    r = run("evaluate", "--run-dir", str(run_dir), "--samples", str(out), "--json")
    assert r.returncode == 0, r.stderr
    scores = json.loads(r.stdout)
    assert scores["n_samples"] == 300 and scores["n_real_reference"] == 300
    metrics = {"energy_distance", "mmd", "sliced_wasserstein", "grid_kl_bits"}
    assert set(scores) >= metrics and set(scores["real_vs_real"]) == metrics
    r = run("evaluate", "--run-dir", str(run_dir), "--samples", str(out))
    assert r.returncode == 0 and "real vs real" in r.stdout and not r.stderr
    assert len([ln for ln in r.stdout.splitlines() if ln.split()[0] in metrics]) == 4
    # resuming with more steps continues the same run
    r = run("train", "--run-dir", str(run_dir), "--dataset", "two-moons", "--family",
            "laplace", "--timesteps", "50", "--steps", "210", "--width", "32",
            "--batch-size", "128", "--device", "cpu", "--no-progress")
    assert r.returncode == 0 and "trained 210 steps" in r.stdout
    from serialrepro.models.training import load_trained

    resumed = pd.read_csv(run_dir / "loss.csv")
    assert resumed["loss"].tolist() == load_trained(run_dir, "cpu").losses
    assert resumed["loss"][:200].tolist() == curve["loss"].tolist()


def test_evaluate_reference_is_what_real_data_scores(tmp_path):
    """Real points scored as samples land at the real-vs-real reference; noise far above."""
    from serialrepro.data import load_dataset

    run_dir = tmp_path / "run"
    assert run("train", "--run-dir", str(run_dir), "--timesteps", "30", "--steps", "2",
               "--width", "8", "--device", "cpu", "--no-progress").returncode == 0
    real = load_dataset("two-moons", seed=123, n_train=500).train.numpy()
    noise = 3 * np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    res = {}
    for name, x in (("real", real), ("noise", noise)):
        np.savez(tmp_path / f"{name}.npz", samples=x)
        r = run("evaluate", "--run-dir", str(run_dir), "--samples", str(tmp_path / f"{name}.npz"),
                "--json")
        assert r.returncode == 0, r.stderr
        res[name] = json.loads(r.stdout)
    ref = res["real"]["real_vs_real"]
    assert res["noise"]["real_vs_real"] == ref  # the reference depends on n, not the samples
    for k in ("energy_distance", "sliced_wasserstein", "grid_kl_bits"):
        assert res["real"][k] < 3 * ref[k] + 1e-3, (k, res["real"][k], ref[k])
        assert res["noise"][k] > 5 * ref[k], (k, res["noise"][k], ref[k])


def test_evaluate_digits_warns_once_only_when_more_samples_would_help(tmp_path):
    run_dir = tmp_path / "run"
    assert run("train", "--run-dir", str(run_dir), "--dataset", "digits", "--timesteps", "30",
               "--steps", "2", "--width", "8", "--device", "cpu", "--no-progress"
               ).returncode == 0
    assert (run_dir / "loss.png").exists()
    for n, warned in ((200, True), (539, False)):
        out = tmp_path / f"s{n}.npz"
        r = run("sample", "--run-dir", str(run_dir), "--out", str(out), "--n", str(n))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"s{n}.png").exists()
        r = run("evaluate", "--run-dir", str(run_dir), "--samples", str(out))
        assert r.returncode == 0, r.stderr
        assert r.stderr.count("warning:") == (1 if warned else 0), r.stderr
        if warned:
            assert "≥ 539 generated" in r.stderr and "real (of" not in r.stderr
        fid, ref = (float(v) for v in next(ln.split()[1:] for ln in r.stdout.splitlines()
                                           if ln.split()[0] == "fid"))
        assert ref < fid  # an untrained model is far from real-vs-real


@pytest.mark.parametrize("args,needle", [
    (["train", "--run-dir", "X", "--family", "pink"], "valid choices: blur, gaussian, laplace"),
    (["train", "--run-dir", "X", "--schedule", "quad"], "valid choices: cosine, linear"),
    (["train", "--run-dir", "X", "--dataset", "cifar"], "valid choices: checkerboard, digits"),
    (["train", "--run-dir", "X", "--dataset", "mnist", "--data-dir", "EMPTY"],
     "train-images-idx3-ubyte.gz"),
    (["sample", "--run-dir", "NOPE", "--out", "s.npz"], "is not a trained run"),
    (["sample", "--run-dir", "NOPE", "--out", "s.npz", "--respace", "lazy"],
     "unknown respacing 'lazy'; valid choices: naive, recompute"),
    (["fig4", "--out", "X", "--preset", "huge"], "valid choices: digits-cpu, mnist-gpu, quick"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, args, needle):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) if a in ("X", "NOPE", "EMPTY", "s.npz") else a for a in args]
    r = run(*args)
    assert r.returncode == 2
    assert not (tmp_path / "X").exists()  # nothing written for a command that failed
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_sampler_name_error(tmp_path):
    run_dir = tmp_path / "run"
    assert run("train", "--run-dir", str(run_dir), "--timesteps", "30", "--steps", "2",
               "--width", "8", "--device", "cpu", "--no-progress").returncode == 0
    r = run("sample", "--run-dir", str(run_dir), "--out", str(tmp_path / "s.npz"),
            "--sampler", "euler")
    assert r.returncode == 2
    assert "valid choices: auto, cold, ddim, ddpm, serial, x0-renoise" in r.stderr


def test_fig4_sampler_variants():
    from serialrepro.errors import UserInputError
    from serialrepro.models.fig4 import sampler_variant

    assert sampler_variant("ddpm") == ("ddpm", "recompute")
    assert sampler_variant("ddpm-naive") == ("ddpm", "naive")
    with pytest.raises(UserInputError, match="valid choices: naive, recompute"):
        sampler_variant("ddpm-lazy")


def test_fig4_quick_end_to_end_and_resume(tmp_path):
    from serialrepro.models.fig4 import run_fig4

    out = tmp_path / "fig4"
    res = run_fig4(out, preset="quick", seed=0, progress=False, device="cpu")
    assert set(res.table.columns) >= {"dataset", "family", "sampler", "stride", "steps", "fid",
                                      "kid", "n_samples"}
    assert res.table["steps"].tolist() == [50, 100, 50, 100] and res.figure.exists()
    assert res.table["sampler"].tolist() == ["ddpm", "ddpm", "serial", "serial"]
    assert "serial-reproduction step" in res.notes and "not run" not in res.notes
    assert (out / "fig4.parquet").exists() and (out / "fig4.csv").exists()
    assert (out / "fig4_samples.png").exists()
    assert "biased" in res.notes  # 128 samples: the FID-stability warning is reported
    # resumable: a second run reads the finished cells instead of recomputing them
    cell = next((out / "digits" / "gaussian" / "cells").glob("*.json"))
    before = cell.stat().st_mtime_ns
    again = run_fig4(out, preset="quick", seed=0, progress=False, device="cpu")
    assert cell.stat().st_mtime_ns == before
    assert again.table["fid"].tolist() == res.table["fid"].tolist()


def test_fig4_notes_judge_the_naive_variant_against_recomputed_betas():
    import pandas as pd

    from serialrepro.models.fig4 import _notes

    steps = [50, 100, 200, 500]
    table = pd.DataFrame(
        [{"dataset": "digits", "family": "gaussian", "sampler": "ddpm", "steps": s,
          "fid": 2.0 + 0.01 * (i % 2)} for i, s in enumerate(steps)]
        + [{"dataset": "digits", "family": "gaussian", "sampler": "ddpm-naive", "steps": s,
            "fid": 1000.0 / s} for s in steps])
    notes = _notes(table, [], {"digits": 1.0})
    assert "digits/gaussian/ddpm-naive: FID rises as steps fall" in notes
    assert "at 50 steps its FID is 20.00 against 2.00 with recomputed betas" in notes
    assert "paper's FIDs at its 4 step counts: +1.00 naive" in notes
