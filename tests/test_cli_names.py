"""One name per concept across the command line: the noise family (``--noise``, alias
``--family``), the serial-reproduction step (``serial``, only the paper's step; the models'
cold Algorithm 1 is ``x0-renoise``, old name ``reproduction``), shipped
configs by name (``chains simulate NAME`` like ``run NAME``), iteration counts (reproductions
after the start), and ``families`` derived from both family registries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_models_cli import run

FAST = ["simulate", "--grid", "torus:12", "--sigmas", "0.03:0.08:3", "--json"]


def _scores(r):
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    out.pop("seconds")
    return out


def test_family_is_an_alias_of_noise_in_simulate():
    a = _scores(run(*FAST, "--noise", "laplace"))
    b = _scores(run(*FAST, "--family", "laplace"))
    c = _scores(run(*FAST, "--noise", "gaussian"))
    assert a == b and a["kl_bits"] != c["kl_bits"]


def test_serial_is_the_papers_step_only_on_the_grid():
    """``reproduction`` names the models' cold Algorithm 1 (a posterior-mean agent); it is
    not accepted as a grid step, so one word never means two different steps."""
    s = _scores(run(*FAST, "--step", "serial"))
    a = _scores(run(*FAST, "--step", "ancestral"))
    assert s["kl_bits"] != a["kl_bits"]
    r = run(*FAST, "--step", "reproduction")
    assert r.returncode == 2 and "serial" in r.stderr and "ancestral" in r.stderr


def test_noise_and_x0_renoise_sampler_in_the_model_commands(tmp_path):
    run_dir = tmp_path / "run"
    r = run("train", "--run-dir", str(run_dir), "--noise", "uniform", "--timesteps", "30",
            "--steps", "3", "--width", "8", "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads((run_dir / "config.json").read_text())["family"] == "uniform"
    outs = {}
    for name in ("x0-renoise", "reproduction", "ddpm", "serial"):
        out = tmp_path / f"{name}.npz"
        r = run("sample", "--run-dir", str(run_dir), "--out", str(out), "--n", "20",
                "--sampler", name, "--seed", "3")
        assert r.returncode == 0, r.stderr
        outs[name] = np.load(out)["samples"]
    assert np.array_equal(outs["x0-renoise"], outs["reproduction"])
    assert not np.array_equal(outs["x0-renoise"], outs["ddpm"])
    # the paper's serial-reproduction step on a network is its own sampler, neither of them
    assert not np.array_equal(outs["serial"], outs["x0-renoise"])
    assert not np.array_equal(outs["serial"], outs["ddpm"])


def test_families_lists_the_registry_with_its_representations():
    from serialrepro.families import FAMILIES

    r = run("families")
    assert r.returncode == 0
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[1:]}
    assert set(rows) == set(FAMILIES)
    assert r.stdout.splitlines()[0].split()[:4] == ["family", "grid", "continuous", "trained"]
    assert rows["blur"][1:3] == ["-", "-"] and rows["blur"][3:5] == ["sample,", "images"]
    assert rows["mask"][1:4] == ["-", "-", "sample"]
    assert rows["resample-uniform"][1:4] == ["-", "-", "sample"]
    assert rows["fade-uniform"][1:4] == ["yes", "yes", "-"]
    assert rows["bimodal"][1:4] == ["yes", "yes", "-"]
    assert rows["gaussian"][1:7] == ["yes", "yes,", "unit", "noise", "epsilon", "or"]


def test_families_table_is_derived_from_the_registry():
    from serialrepro.families import FAMILIES, TENSOR, Mask
    from serialrepro.grid.cli import family_table

    class Smear(Mask):
        name = "smear"
        description = "a family added in one place"
        representations = frozenset({TENSOR})
        images_only = True

    try:
        row = {r["family"]: r for r in family_table()}["smear"]
    finally:
        del FAMILIES["smear"]
    assert row == {"family": "smear", "grid": "-", "continuous": "-", "trained": "sample, images",
                   "description": "a family added in one place"}


def test_chains_simulate_takes_a_shipped_name_and_counts_reproductions(tmp_path):
    from serialrepro.chains.simulate import load_config, shipped_names

    assert "bimodal-1d" in shipped_names()
    out = tmp_path / "sim"
    r = run("chains", "simulate", "bimodal-1d", "--out", str(out))
    assert r.returncode == 0, r.stderr
    n_it = load_config("bimodal-1d").chains.n_iterations
    assert f"× {n_it} iterations" in r.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_iterations"] == n_it
    import pandas as pd

    its = pd.read_csv(out / "chains.csv")["iteration"]
    assert its.min() == 0 and its.max() == n_it  # rows 0..n: n reproductions
    assert load_config("bimodal-1d.yaml") == load_config("bimodal-1d")
    r = run("chains", "simulate", "no-such-config", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "shipped: bimodal-1d, gaussian-ar1, hue-circular" in r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv", [["--threads", "2", "families"], ["families"]])
def test_one_thread_setting_reaches_the_command(argv, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SERIALREPRO_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        seen = {}
        import serialrepro.grid.cli as gcli

        real = gcli.family_table

        def spy():
            from serialrepro.cli import resolve_threads

            seen["threads"], seen["torch"] = resolve_threads(), torch.get_num_threads()
            return real()

        monkeypatch.setattr(gcli, "family_table", spy)
        assert run(*argv).returncode == 0
        want = 2 if "--threads" in argv else 1
        assert seen == {"threads": want, "torch": want}
        import os

        assert "SERIALREPRO_THREADS" not in os.environ  # restored after the command
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("argv,want", [(["--threads", "2", "families"], 2), (["families"], 1)])
def test_threads_reach_torch_imported_after_start_up(argv, want):
    """torch is first imported inside the command: the setting travels by OpenMP variable
    (torch caps that at the core count, so this asks for 2 on a machine with 2 or more)."""
    import os
    import subprocess
    import sys

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores to tell 2 threads from torch's default")

    code = ("import sys; from serialrepro.cli import main\n"
            "assert 'torch' not in sys.modules\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert not e.code\n"
            "import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SERIALREPRO_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip().splitlines()[-1]) == want


def test_every_noise_family_option_is_spelled_noise():
    """Walks the whole app: an option that takes a noise family answers to ``--noise`` (with
    ``--family`` as its alias) in every command, so a newcomer learns one name."""
    from test_cli_usage import leaf_commands

    seen = []
    for path, cmd in leaf_commands():
        for p in cmd.params:
            opts = set(getattr(p, "opts", ()))
            if opts & {"--noise", "--family"}:
                seen.append(" ".join(path))
                assert {"--noise", "--family"} <= opts, (path, sorted(opts))
    assert {"simulate", "train", "chains analyze"} <= set(seen)
