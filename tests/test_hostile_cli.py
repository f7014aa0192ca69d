"""Hostile input through the commands: every case is exit code 2, one short ``error:`` line,
no traceback, and nothing written.

Two ways in. A few cases per file kind run the installed console script
(``.venv/bin/serialrepro``) in a subprocess, exactly as a user does, some under an
address-space limit (``RLIMIT_AS``) so that a request that allocated before refusing
would die of ``MemoryError`` instead. The full matrix (every damaged checkpoint, run
config and samples file through every command that reads it, NaN/inf at every float
option and out-of-range seeds at every ``--seed``, enumerated from the typer app as
``tests/test_cli_usage.py`` does) calls the same entry point, :func:`serialrepro.cli.main`,
in this process: the same code path without paying torch's import once per case.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from serialrepro import budget
from serialrepro.cli import main
from test_cli_usage import leaf_commands

SCRIPT = str(Path(sys.executable).with_name("serialrepro"))
LIMIT_AS = 1536 << 20
ENV = {k: v for k, v in os.environ.items() if k != budget.MEMORY_LIMIT_ENV}
ENV.update(OMP_NUM_THREADS="1", COLUMNS="100")


def _limited():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def script(*argv, cwd: Path, limit: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([SCRIPT, *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=120,
                          preexec_fn=_limited if limit else None)


def assert_one_line_refusal(rc: int, out: str, err: str, words: str = "") -> str:
    text = out + err
    assert rc == 2, text[-2000:]
    assert "Traceback" not in text, text[-2000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text[-2000:]
    assert len(lines[0]) < 500, lines[0]
    assert words in lines[0], lines[0]
    return lines[0]


def run_main(capsys, *argv, words: str = "") -> str:
    """``serialrepro ARGV`` in this process: must be a one-line refusal with exit 2."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return assert_one_line_refusal(info.value.code, captured.out, captured.err, words)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained 2-D run (5 steps): config.json and checkpoint.pt."""
    root = tmp_path_factory.mktemp("trained")
    proc = script("train", "--run-dir", "run", "--steps", "5", "--checkpoint-every", "5",
                  "--no-progress", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


@pytest.fixture
def copy_run(run_dir, tmp_path):
    def make(name="run") -> Path:
        dst = tmp_path / name
        dst.mkdir()
        for f in ("config.json", "checkpoint.pt"):
            (dst / f).write_bytes((run_dir / f).read_bytes())
        return dst
    return make


# -- NaN/inf at every float option, seeds out of range at every --seed -----------------

def _dummy_args(cmd) -> list[str]:
    """Values for the required parameters of ``cmd`` (never read: the value check runs
    before a command's body)."""
    argv = []
    for p in cmd.params:
        if not p.required:
            continue
        if getattr(p, "opts", None) and p.opts[0].startswith("-"):
            argv += [p.opts[0], "x"]
        else:
            argv.append("x")
    return argv


def _float_options():
    cases = []
    for path, cmd in leaf_commands():
        for p in cmd.params:
            is_float = getattr(getattr(p, "type", None), "name", "") == "float" or (
                isinstance(p.default, float))
            if getattr(p, "opts", None) and p.opts[0].startswith("--") and is_float:
                cases.append(pytest.param(path, cmd, p.opts[0], id=f"{' '.join(path)} "
                                          f"{p.opts[0]}"))
    return cases


FLOAT_OPTIONS = _float_options()


def test_the_float_options_are_found():
    names = {(" ".join(path), opt) for path, _, opt in (c.values for c in FLOAT_OPTIONS)}
    assert {("train", "--lr"), ("sample", "--eta")} <= names


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("path,cmd,option", FLOAT_OPTIONS)
def test_non_finite_floats_are_refused_at_every_float_option(capsys, tmp_path, monkeypatch,
                                                             path, cmd, option, value):
    monkeypatch.chdir(tmp_path)
    run_main(capsys, *path, *_dummy_args(cmd), option, value,
             words=f"{option} {float(value)!r} is not a finite number")
    assert tree(tmp_path) == set()


SEED_COMMANDS = [pytest.param(path, cmd, id=" ".join(path)) for path, cmd in leaf_commands()
                 if any("--seed" in getattr(p, "opts", ()) for p in cmd.params)]


def test_every_seeded_command_is_found():
    assert {"train", "sample", "evaluate", "fig4", "reproduce"} <= \
        {" ".join(c.values[0]) for c in SEED_COMMANDS}


@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, -1])
@pytest.mark.parametrize("path,cmd", SEED_COMMANDS)
def test_seeds_outside_int64_are_refused_at_every_seed_option(capsys, tmp_path, monkeypatch,
                                                              path, cmd, seed):
    monkeypatch.chdir(tmp_path)
    run_main(capsys, *path, *_dummy_args(cmd), "--seed", seed,
             words=f"--seed {seed} is out of range")
    assert tree(tmp_path) == set()


def test_the_console_script_refuses_nan_and_huge_seeds(tmp_path):
    proc = script("train", "--run-dir", "r", "--lr", "nan", cwd=tmp_path)
    assert_one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "--lr nan")
    proc = script("sample", "--run-dir", "r", "--out", "s.npz", "--seed", 2**63, cwd=tmp_path)
    assert_one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "out of range")
    assert tree(tmp_path) == set()


@pytest.mark.parametrize("lr", ["0", "-1"])
def test_a_learning_rate_that_is_not_positive_is_refused_up_front(capsys, tmp_path, lr):
    run_main(capsys, "train", "--run-dir", tmp_path / "r", "--lr", lr, words="--lr")
    assert tree(tmp_path) == set()


@pytest.mark.parametrize("option", ["--steps", "--batch-size", "--checkpoint-every",
                                    "--timesteps", "--width"])
def test_training_sizes_below_one_are_refused_up_front(capsys, tmp_path, option):
    run_main(capsys, "train", "--run-dir", tmp_path / "r", option, "0",
             words=f"{option} 0 must be at least 1")
    assert tree(tmp_path) == set()


def test_a_negative_eta_is_refused_before_the_run_is_read(capsys, tmp_path):
    run_main(capsys, "sample", "--run-dir", tmp_path / "nope", "--out", tmp_path / "s.npz",
             "--eta", "-0.5", words="eta")


# -- bad checkpoints ---------------------------------------------------------------------

def _wrong_shape(path: Path) -> None:
    ck = torch.load(path, weights_only=True)
    ck["ema"] = {k: torch.zeros(3, 3) for k in ck["ema"]}
    ck["model"] = ck["ema"]
    torch.save(ck, path)


def _nan_weights(path: Path) -> None:
    ck = torch.load(path, weights_only=True)
    for v in ck["ema"].values():
        v.fill_(float("nan"))
    torch.save(ck, path)


CHECKPOINT_DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "random bytes": lambda p: p.write_bytes(os.urandom(4000)),
    "a pickle of other things": lambda p: p.write_bytes(pickle.dumps({"step": 3})),
    "wrong shapes": _wrong_shape,
    "NaN weights": _nan_weights,
    "a directory": lambda p: (p.unlink(), p.mkdir()),
    "unreadable": lambda p: p.chmod(0),
}


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_bad_checkpoints_are_one_line_in_sample_and_train_resume(capsys, copy_run, damage):
    if damage == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads files of mode 000")
    run = copy_run()
    CHECKPOINT_DAMAGE[damage](run / "checkpoint.pt")
    before = tree(run.parent)
    run_main(capsys, "sample", "--run-dir", run, "--out", run.parent / "s.npz", "--n", "10",
             words="checkpoint")
    run_main(capsys, "train", "--run-dir", run, "--steps", "6", "--checkpoint-every", "5",
             "--no-progress", words="checkpoint")
    assert tree(run.parent) == before


def test_a_truncated_checkpoint_through_the_console_script(copy_run):
    run = copy_run()
    CHECKPOINT_DAMAGE["truncated"](run / "checkpoint.pt")
    proc = script("sample", "--run-dir", run, "--out", "s.npz", "--n", "10", cwd=run.parent)
    assert_one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "checkpoint.pt")
    assert not (run.parent / "s.npz").exists()


# -- bad run configs ---------------------------------------------------------------------

CONFIG_DAMAGE = {
    "not JSON": "{steps: 3",
    "NaN": '{"lr": NaN}',
    "a list": "[1, 2]",
    "an unknown key": '{"colour": 1}',
    "a wrong type": '{"steps": "many"}',
    "a huge T": '{"num_timesteps": 1000000000000}',
    "not UTF-8": b"\xff\xfe\x00{",
    "empty": "",
}


@pytest.mark.parametrize("damage", list(CONFIG_DAMAGE))
def test_bad_run_configs_are_one_line_in_sample_and_evaluate(capsys, copy_run, damage):
    run = copy_run()
    content = CONFIG_DAMAGE[damage]
    target = run / "config.json"
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    np.savez(run.parent / "good.npz", samples=np.zeros((20, 2)))
    before = tree(run.parent)
    run_main(capsys, "sample", "--run-dir", run, "--out", run.parent / "s.npz", "--n", "10")
    run_main(capsys, "evaluate", "--run-dir", run, "--samples", run.parent / "good.npz")
    assert tree(run.parent) == before


# -- bad samples -------------------------------------------------------------------------

SAMPLE_FILES = {
    "object array": lambda p: np.save(open(p, "wb"), np.array([{}, 1], dtype=object),
                                      allow_pickle=True),
    "pickled objects in an npz": lambda p: np.savez(p, samples=np.array([{}], dtype=object)),
    "text": lambda p: p.write_text("1,2\n3,4\n"),
    "zero rows": lambda p: np.savez(p, samples=np.zeros((0, 2))),
    "a scalar": lambda p: np.savez(p, samples=np.float64(3.0)),
    "all NaN": lambda p: np.savez(p, samples=np.full((50, 2), np.nan)),
    "one infinity": lambda p: np.savez(p, samples=np.r_[np.zeros((9, 2)), [[np.inf, 0]]]),
    "no samples array": lambda p: np.savez(p, other=np.zeros((5, 2))),
    "wrong shape": lambda p: np.savez(p, samples=np.zeros((5, 3))),
    "strings": lambda p: np.savez(p, samples=np.array([["a", "b"]])),
    "a directory": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("kind", list(SAMPLE_FILES))
def test_bad_samples_are_one_line_in_evaluate(capsys, run_dir, tmp_path, kind):
    path = tmp_path / "bad.npz"
    SAMPLE_FILES[kind](path)
    msg = run_main(capsys, "evaluate", "--run-dir", run_dir, "--samples", path)
    assert "grid_kl_bits" not in msg


def test_all_nan_samples_get_no_score_through_the_console_script(run_dir, tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, samples=np.full((50, 2), np.nan))
    proc = script("evaluate", "--run-dir", run_dir, "--samples", path, "--json", cwd=tmp_path)
    assert_one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "non-finite")
    assert proc.stdout == ""


def test_evaluate_json_is_strict_and_scores_good_samples(capsys, run_dir, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, samples=np.random.default_rng(0).normal(size=(200, 2)))
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--run-dir", str(run_dir), "--samples", str(good), "--json"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    scores = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert scores["grid_kl_bits"] > 0.1 and scores["energy_distance"] > 0


# -- output paths ------------------------------------------------------------------------

def _outputs(tmp: Path) -> dict[str, list]:
    blocker = tmp / "afile"
    return {
        "train run dir is a file": ["train", "--run-dir", blocker, "--steps", "1"],
        "train run dir inside a file": ["train", "--run-dir", blocker / "run", "--steps", "1"],
        "sample out inside a file": ["sample", "--out", blocker / "s.npz"],
        "sample out is a folder": ["sample", "--out", tmp / "folder.npz"],
        "simulate figure inside a file": ["simulate", "--sigmas", "0.01:0.05:3", "--figure",
                                          blocker / "f.png"],
        "simulate figure is a folder": ["simulate", "--sigmas", "0.01:0.05:3", "--figure",
                                        tmp / "folder.png"],
        "run out is a file": ["run", "fig2", "--out", blocker, "--no-progress"],
        "run out inside a file": ["run", "fig2", "--out", blocker / "x", "--no-progress"],
        "reproduce out is a file": ["reproduce", "--quick", "--out", blocker],
        "fig4 out is a file": ["fig4", "--preset", "quick", "--out", blocker],
    }


@pytest.mark.parametrize("case", list(_outputs(Path("."))))
def test_output_paths_that_cannot_be_written_are_refused_before_any_work(
        capsys, copy_run, tmp_path, case):
    run = copy_run()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "folder.png").mkdir()
    argv = _outputs(tmp_path)[case]
    if argv[0] == "sample":
        argv += ["--run-dir", run, "--n", "5"]
    before = tree(tmp_path)
    t0 = time.perf_counter()
    run_main(capsys, *argv)
    assert time.perf_counter() - t0 < 10
    assert tree(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        run_main(capsys, "run", "fig2", "--out", ro / "x", words="read-only")
        run_main(capsys, "train", "--run-dir", ro / "r", words="read-only")
    finally:
        ro.chmod(0o755)


# -- huge requests -----------------------------------------------------------------------

HUGE = {
    "simulate --sigmas with 10^7 levels": ["simulate", "--sigmas", "0.01:0.05:10000000"],
    "simulate --grid torus:100000": ["simulate", "--grid", "torus:100000"],
    "train --batch-size 2e9": ["train", "--run-dir", "r", "--batch-size", "2000000000"],
}
#: the same refusals, in this process (cheaper: no torch import per case)
HUGE_IN_PROCESS = {
    "simulate --grid paper:1e-9": ["simulate", "--grid", "paper:1e-9"],
    "simulate --grid torus:4096 --dims 3": ["simulate", "--grid", "torus:4096", "--dims", "3"],
    "train --timesteps 1e12": ["train", "--run-dir", "r", "--timesteps", "1000000000000"],
    "train --steps 1e24": ["train", "--run-dir", "r", "--steps", "1" + "0" * 24],
    "train --width 1e9": ["train", "--run-dir", "r", "--width", "1000000000"],
}


@pytest.mark.parametrize("case", list(HUGE))
def test_huge_requests_are_refused_fast_under_a_memory_limit(tmp_path, case):
    t0 = time.perf_counter()
    proc = script(*HUGE[case], cwd=tmp_path, limit=True)
    assert_one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "needs about")
    assert time.perf_counter() - t0 < 30
    assert tree(tmp_path) == set()


@pytest.mark.parametrize("case", list(HUGE_IN_PROCESS))
def test_more_huge_requests_are_refused(capsys, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    run_main(capsys, *HUGE_IN_PROCESS[case], words="needs about")
    assert tree(tmp_path) == set()


def test_sample_refuses_a_billion_samples_before_drawing(capsys, copy_run):
    run = copy_run()
    msg = run_main(capsys, "sample", "--run-dir", run, "--out", run.parent / "s.npz",
                   "--n", "1000000000", words="--n 1000000000 samples")
    assert "lower --n" in msg
    assert not (run.parent / "s.npz").exists()


def test_workers_beyond_the_cpus_are_capped_with_a_note(capsys, tmp_path, monkeypatch):
    from serialrepro.experiments import cli as ecli

    monkeypatch.setattr(budget, "usable_cpus", lambda: 2)
    assert ecli._check_run_options(tmp_path / "out", 100, None) == 2
    assert "--workers 100 capped at 2" in capsys.readouterr().err
    assert ecli._check_run_options(tmp_path / "out", 1, None) == 1
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "out").exists()


# -- non-finite samples are never written ----------------------------------------------

def test_sample_refuses_to_write_non_finite_samples(capsys, copy_run, monkeypatch):
    from serialrepro.models import training

    run = copy_run()
    real = training.sample_from
    monkeypatch.setattr(training, "sample_from",
                        lambda *a, **k: real(*a, **k) * float("nan"))
    run_main(capsys, "sample", "--run-dir", run, "--out", run.parent / "s.npz", "--n", "10",
             words="non-finite")
    assert not (run.parent / "s.npz").exists()
