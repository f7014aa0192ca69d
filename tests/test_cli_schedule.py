"""``serialrepro schedule optimize`` through the installed console script."""

from __future__ import annotations

import json
import subprocess

import pytest

from cli_in_process import run_in_process  # tests/ helper module
from test_cli_usage import ENV, SCRIPT

FIELDS = {"sigmas", "kl_bits", "jsd_bits", "complexity_bits", "stationarity", "constraint",
          "iterations", "seconds", "baselines"}
SCORES = ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")


def run(*args):
    """The installed console script (a fresh process: exit codes as a shell sees them)."""
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=ENV, timeout=300)


@pytest.mark.parametrize("extra", [
    [],
    ["--noise", "fade-uniform", "--constraint", "total-variance:1.5", "--objective", "jsd",
     "--step", "ancestral"],
])
def test_json_round_trip_through_simulate(extra, capsys, monkeypatch):
    r = run("schedule", "optimize", "--grid", "paper:0.1", "--T", "3", "--max-iter", "20",
            "--restarts", "0", "--json", *extra)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # one strict JSON object on stdout, progress on stderr
    assert set(out) == FIELDS
    assert set(out["baselines"]) == {"linear", "cosine", "geometric", "edm", "equal-complexity"}
    assert r.stderr.strip()
    noise = extra[extra.index("--noise") + 1] if "--noise" in extra else "gaussian"
    step = extra[extra.index("--step") + 1] if "--step" in extra else "serial"

    def simulate_args(levels):
        return ["simulate", "--grid", "paper:0.1", "--noise", noise, "--step", step,
                "--sigmas", ",".join(repr(v) for v in levels), "--json"]

    # the optimum through the console script, the baselines in-process (same entry point)
    s = run(*simulate_args(out["sigmas"]))
    assert s.returncode == 0, s.stderr
    checks = [(json.loads(s.stdout), out)]
    for b in out["baselines"].values():
        if b is not None:
            code, text, err = run_in_process(simulate_args(b["sigmas"]), capsys, monkeypatch)
            assert code == 0, err
            checks.append((json.loads(text), b))
    for got, want in checks:
        for key in SCORES:
            assert got[key] == want[key], key  # exactly: the same engine call


def test_figure_and_table(tmp_path, capsys, monkeypatch):
    fig = tmp_path / "s.png"
    code, out, err = run_in_process(["schedule", "optimize", "--grid", "paper:0.1", "--T", "3",
                                     "--max-iter", "10", "--restarts", "0", "--figure",
                                     str(fig)], capsys, monkeypatch)
    assert code == 0, err
    assert fig.stat().st_size > 1000
    assert "optimal" in out and "equal-complexity" in out


@pytest.mark.parametrize("args, needle", [
    (["--constraint", "ends:0.05:0.01"], "must not decrease"),
    (["--noise", "fade-uniform", "--constraint", "total-variance:50"], "reach"),
    (["--constraint", "final-kl:-1"], "> 0"),
    (["--constraint", "width:2"], "valid choices"),
    (["--objective", "mse"], "valid choices"),
    (["--T", "0"], "≥ 1"),
    (["--constraint", "final-kl:100"], "infeasible"),
])
def test_bad_constraints_are_one_line_exit_2(args, needle, capsys, monkeypatch):
    code, _, err = run_in_process(["schedule", "optimize", "--grid", "paper:0.1", "--T", "3",
                                   "--max-iter", "5", *args], capsys, monkeypatch)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err


def test_console_script_exit_2_without_traceback():
    r = run("schedule", "optimize", "--constraint", "ends:0.05:0.01")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: constraint 'ends:0.05:0.01' is infeasible: levels must not decrease, but "
        "A=0.05 > B=0.01"]


def test_equal_complexity_levels_feed_simulate(capsys, monkeypatch):
    code, out, err = run_in_process(["schedule", "equal-complexity", "--grid", "paper:0.1",
                                     "--T", "4"], capsys, monkeypatch)
    assert code == 0, err
    levels = [float(v) for v in out.strip().split(",")]
    assert len(levels) == 4 and levels[0] == 0.01 and levels[-1] == 0.05
    code, out, err = run_in_process(["simulate", "--grid", "paper:0.1", "--sigmas",
                                     ",".join(map(repr, levels)), "--json"], capsys, monkeypatch)
    assert code == 0, err
    got = json.loads(out)
    # the complexity is the common per-step KL; the linear schedule's is larger
    code, lin, _ = run_in_process(["simulate", "--grid", "paper:0.1", "--sigmas",
                                   "0.01:0.05:4", "--json"], capsys, monkeypatch)
    assert got["complexity_bits"] < json.loads(lin)["complexity_bits"]


def test_experiment_command_runs_and_resumes(tmp_path, capsys, monkeypatch):
    args = ["schedule", "experiment", "--out", str(tmp_path), "--prior", "swiss-roll",
            "--noise", "gaussian", "--T", "2,3", "--grid", "torus:8"]
    code, out, err = run_in_process(args, capsys, monkeypatch)
    assert code == 0, err
    assert "ends:" in out and (tmp_path / "verdicts.json").is_file()
    code, out2, err2 = run_in_process(args, capsys, monkeypatch)
    assert code == 0 and "cached" in err2 and out2 == out


@pytest.mark.parametrize("args, needle", [(["--preset", "huge"], "valid choices"),
                                          (["--prior", "moon"], "valid choices"),
                                          (["--T", "0"], "≥ 1")])
def test_experiment_command_bad_input(args, needle, tmp_path, capsys, monkeypatch):
    code, _, err = run_in_process(["schedule", "experiment", "--out", str(tmp_path / "o"),
                                   *args], capsys, monkeypatch)
    assert code == 2 and needle in err
    assert not (tmp_path / "o").exists()
