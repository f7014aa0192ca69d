"""A sweep killed mid-run (SIGKILL, no chance to clean up) resumes without recomputing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from serialrepro.experiments.config import parse_config
from serialrepro.experiments.pipeline import run_experiments

SWEEP = {
    "name": "resume-test",
    "sweeps": [{
        "noise": "gaussian", "step": ["serial", "ancestral"],
        "T": [40, 50, 60, 70, 80, 90, 100],
        "schedule": {"kind": "linear", "start": 0.01, "end": 0.05}, "grid": "paper:0.04",
    }],
}
N_CELLS = 14


def finished(cells: Path) -> dict[str, tuple[int, str]]:
    """Finished cell files: name → (mtime_ns, content)."""
    if not cells.is_dir():
        return {}
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in cells.glob("*.json")}


def run_cli(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "serialrepro", "run", str(cfg), "--out", str(out),
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_sweep_resumes_and_matches_an_uninterrupted_run(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "interrupted"
    cells = out / "cells"

    proc = run_cli(cfg, out)
    deadline = time.monotonic() + 120
    while len(finished(cells)) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = finished(cells)
    assert 3 <= len(before) < N_CELLS, "the run was not interrupted mid-sweep"
    assert not (out / "scores.parquet").exists()
    first_pid = {json.loads(text)["pid"] for _, text in before.values()}
    assert first_pid == {proc.pid}
    for _, text in before.values():  # every file there is complete (atomic writes)
        assert json.loads(text)["scores"]["kl_bits"] > 0

    proc = run_cli(cfg, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert f"{N_CELLS} cells ({len(before)} reused, {N_CELLS - len(before)} computed" in stdout
    after = finished(cells)
    assert len(after) == N_CELLS
    for name, (mtime, text) in before.items():  # finished cells were not recomputed
        assert after[name] == (mtime, text), name
    new_pids = {json.loads(text)["pid"] for name, (_, text) in after.items()
                if name not in before}
    assert new_pids == {proc.pid}

    # the same sweep, never interrupted
    ref = run_experiments([parse_config(SWEEP)], tmp_path / "reference", progress=False)
    resumed = pd.read_parquet(out / "scores.parquet")
    reference = pd.read_parquet(ref.table_path)
    assert len(resumed) == N_CELLS
    # 'seconds' is the time each cell took when it ran; everything else must agree
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"),
                                  reference.drop(columns="seconds"), check_exact=False,
                                  rtol=1e-12, atol=1e-15)

    # a third run finds everything finished and rebuilds the same table
    again = run_experiments([parse_config(SWEEP)], out, progress=False)
    assert (again.stats.cached, again.stats.computed) == (N_CELLS, 0)
    pd.testing.assert_frame_equal(pd.read_parquet(again.table_path), resumed)
    assert finished(cells) == after


def test_progress_bar_shows_cells_done_rate_and_eta(tmp_path, capfd):
    tiny = parse_config({"name": "tiny", "sweeps": [{
        "T": [2, 3, 4], "grid": "paper:0.1",
        "schedule": {"kind": "linear", "start": 0.01, "end": 0.05}}]})
    run_experiments([tiny], tmp_path, progress=True)
    err = capfd.readouterr().err
    assert "3/3 cells (0 cached)" in err and "cells/s" in err and "ETA" in err
    run_experiments([tiny], tmp_path, progress=True)
    assert "3/3 cells (3 cached) 0.00 cells/s" in capfd.readouterr().err
