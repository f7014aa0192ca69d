"""End-to-end tests of `serialrepro simulate`: the JSON contract, figures, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cli_in_process import run_in_process as run_cli  # tests/ helper module

GOLDEN_T12 = {"kl_bits": 0.163212, "jsd_bits": 0.033779, "complexity_bits": 0.054827,
              "stationarity": 0.039230}


def test_json_contract_reproduces_golden_values(capsys, monkeypatch):
    code, out, _ = run_cli(
        ["simulate", "--prior", "swiss-roll", "--noise", "gaussian", "--sigmas", "0.01:0.05:12",
         "--grid", "paper:0.04", "--json"], capsys, monkeypatch)
    assert code == 0
    res = json.loads(out)
    for key in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity", "T", "grid_points",
                "backend", "seconds"):
        assert key in res
    assert res["T"] == 12 and res["grid_points"] == 26 * 26 and res["backend"] == "dense"
    for key, value in GOLDEN_T12.items():
        assert res[key] == pytest.approx(value, abs=1e-5)


def test_comma_sigmas_and_single_step_nulls(capsys, monkeypatch):
    code, out, _ = run_cli(["simulate", "--sigmas", "0.05", "--grid", "torus:16", "--json"],
                           capsys, monkeypatch)
    assert code == 0
    res = json.loads(out)
    assert res["T"] == 1 and res["backend"] == "fft"
    assert res["complexity_bits"] is None and res["stationarity"] is None


def test_ancestral_differs_from_serial(capsys, monkeypatch):
    base = ["simulate", "--sigmas", "0.03:0.1:10", "--grid", "torus:24", "--json"]
    _, out_s, _ = run_cli(base, capsys, monkeypatch)
    _, out_a, _ = run_cli([*base, "--step", "ancestral"], capsys, monkeypatch)
    s, a = json.loads(out_s), json.loads(out_a)
    assert s["step"] == "serial" and a["step"] == "ancestral"
    assert s["kl_bits"] != pytest.approx(a["kl_bits"], rel=1e-3)


@pytest.mark.parametrize("grid,dims", [("torus:24", 2), ("torus:32", 1), ("torus:8", 3)])
def test_figure_written(tmp_path, capsys, monkeypatch, grid, dims):
    path = tmp_path / "fig.png"
    prior = "three-modes"
    code, out, err = run_cli(
        ["simulate", "--prior", prior, "--sigmas", "0.02:0.06:4", "--grid", grid, "--dims",
         str(dims), "--figure", str(path)], capsys, monkeypatch)
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_image_prior(tmp_path, capsys, monkeypatch):
    from PIL import Image

    img = Image.new("L", (40, 40), 0)
    img.paste(255, (5, 5, 15, 15))
    path = tmp_path / "prior.png"
    img.save(path)
    code, out, err = run_cli(["simulate", "--prior", f"image:{path}", "--grid", "torus:20",
                              "--sigmas", "0.02:0.05:3", "--json"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["kl_bits"] >= 0


BAD = [
    (["--noise", "pink"], "unknown noise family 'pink'"),
    (["--prior", "spiral"], "unknown prior 'spiral'"),
    (["--step", "leap"], "unknown step 'leap'"),
    (["--backend", "gpu"], "unknown backend 'gpu'"),
    (["--grid", "hex:3"], "grid 'hex:3' is invalid"),
    (["--grid", "torus:x"], "grid 'torus:x' is invalid"),
    (["--dims", "4", "--grid", "torus:8"], "grid dimension 4"),
    (["--sigmas", "0:0.05:3"], "σ=0.0 is invalid for gaussian"),
    (["--sigmas", "-0.1,0.2"], "σ=-0.1 is invalid"),
    (["--noise", "fade-uniform", "--sigmas", "0.5:1.5:3"], "must lie in [0, 1]"),
    (["--sigmas", "0.05,0.01"], "non-decreasing"),
    (["--sigmas", ""], "--sigmas is empty"),
    (["--sigmas", "0.01:0.05:0"], "must be ≥ 1"),
    (["--sigmas", "a:b:c"], "is invalid"),
    (["--grid", "paper:0.04", "--backend", "fft"], "FFT backend needs a torus grid"),
    (["--grid", "torus:512", "--backend", "dense"], "dense kernel needs about"),
    (["--sigmas", "spiral:0.01:0.05:3"], "'spiral' is not a schedule shape"),
    (["--sigmas", "equal-complexity:0.02:3"], "is equal-complexity:START:END:T"),
    (["--sigmas", "equal-complexity:0.02:0.1:x"], "needs numbers and an integer T"),
    (["--sigmas", "equal-complexity:0.02:0.1:0"], "T=0 must be ≥ 1"),
    (["--sigmas", "equal-complexity:0.1:0.02:3"], "levels must not decrease"),
    (["--sigmas", "equal-complexity:0.02:0.1:1"], "at T=1 has one level"),
    (["--sigmas", "geometric:0:0.1:3"], "a geometric schedule needs start, end > 0"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_exit_2(capsys, monkeypatch, extra, message):
    code, out, err = run_cli(["simulate", "--sigmas", "0.01:0.05:3", *extra], capsys, monkeypatch)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_image_and_bad_figure_path(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "notimage.png"
    fake.write_text("this is not a PNG")
    code, _, err = run_cli(["simulate", "--prior", f"image:{fake}", "--grid", "torus:16"],
                           capsys, monkeypatch)
    assert code == 2 and "is not a readable image" in err
    code, _, err = run_cli(["simulate", "--prior", f"image:{tmp_path / 'missing.png'}",
                            "--grid", "torus:16"], capsys, monkeypatch)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(["simulate", "--figure", str(tmp_path / "no" / "f.png")],
                           capsys, monkeypatch)
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(["simulate", "--figure", str(tmp_path / "f.txt")], capsys, monkeypatch)
    assert code == 2 and "unsupported suffix" in err


def test_console_script_exit_code_without_traceback():
    """The real console script (not just main()) exits 2 with one line on bad input."""
    proc = subprocess.run([sys.executable, "-m", "serialrepro", "simulate", "--noise", "pink"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown noise family 'pink'")
    assert "Traceback" not in proc.stderr


def test_families_lists_all_eight(capsys, monkeypatch):
    code, out, _ = run_cli(["families"], capsys, monkeypatch)
    assert code == 0
    for name in ("gaussian", "bimodal", "trimodal", "fade-uniform", "fade-fixed", "laplace",
                 "uniform", "student-t"):
        assert name in out


def test_threads_option_and_default(capsys, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("SERIALREPRO_THREADS", raising=False)
        code, _, _ = run_cli(["--threads", "3", "families"], capsys, monkeypatch)
        assert code == 0 and torch.get_num_threads() == 3
        code, _, _ = run_cli(["families"], capsys, monkeypatch)
        assert code == 0 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        code, _, _ = run_cli(["families"], capsys, monkeypatch)
        assert code == 0 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


EQ = ["--prior", "three-modes", "--grid", "paper:0.1"]


def test_a_named_shape_runs_and_prints_the_levels_it_used(capsys, monkeypatch):
    """``--sigmas equal-complexity:A:B:T`` is solved for this prior, grid and family; its
    printed levels, run as a comma list, give exactly the same scores."""
    from serialrepro.grid import KernelSchedule, forward_marginals, make_prior, parse_grid

    code, out, err = run_cli(["simulate", *EQ, "--sigmas", "equal-complexity:0.02:0.1:4",
                              "--json"], capsys, monkeypatch)
    assert code == 0, err
    shaped = json.loads(out)
    levels = shaped["sigmas"]
    assert shaped["schedule"] == "equal-complexity 0.02→0.1" and len(levels) == 4
    assert levels[0] == 0.02 and levels[-1] == 0.1
    space = parse_grid("paper:0.1")
    q = forward_marginals(make_prior("three-modes", space),
                          KernelSchedule(space, "gaussian", levels))
    kls = [float((q[t] * torch.log2((q[t] + 2.2e-16) / (q[t + 1] + 2.2e-16))).sum())
           for t in range(1, 4)]
    assert max(kls) - min(kls) < 1e-6 * max(kls), kls
    code, out, err = run_cli(["simulate", *EQ, "--sigmas", "equal-complexity:0.02:0.1:4"],
                             capsys, monkeypatch)
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("levels (equal-complexity")]
    printed = line.split(": ", 1)[1]
    assert [float(v) for v in printed.split(",")] == levels
    code, out, err = run_cli(["simulate", *EQ, "--sigmas", printed, "--json"],
                             capsys, monkeypatch)
    assert code == 0, err
    listed = json.loads(out)
    for key in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity", "sigmas",
                "conditional_entropy_bits", "mutual_information_bits"):
        assert listed[key] == shaped[key], key  # exactly
    assert "schedule" not in listed
    # the same levels as the builder's own command under ends:A:B
    code, out, err = run_cli(["schedule", "equal-complexity", *EQ, "--T", "4", "--constraint",
                              "ends:0.02:0.1"], capsys, monkeypatch)
    assert code == 0, err
    assert [float(v) for v in out.strip().split(",")] == levels
    # other shapes by name: geometric:A:B:T is the registry's geometric spacing
    code, out, _ = run_cli(["simulate", *EQ, "--sigmas", "geometric:0.02:0.08:3", "--json"],
                           capsys, monkeypatch)
    assert code == 0 and json.loads(out)["sigmas"] == pytest.approx([0.02, 0.04, 0.08])


def test_console_script_refuses_a_bad_shape_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "serialrepro", "simulate", "--sigmas",
                           "equal-complexity:0.05:0.01:4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: the equal-complexity schedule 0.05→0.01")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
