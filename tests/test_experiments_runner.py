"""``experiments.runner.compute_cell``: what a cell returns and saves."""

from __future__ import annotations

import numpy as np

from serialrepro.experiments.config import expand, parse_config
from serialrepro.experiments.runner import _payload, compute_cell


def _cell(T: int = 3):
    return expand(parse_config({"name": "tiny", "sweeps": [{
        "T": T, "grid": "torus:8", "schedule": {"kind": "linear", "start": 0.03,
                                                 "end": 0.08}}]}))[0]


def test_a_kept_cell_saves_every_step_even_when_the_engine_would_keep_only_the_ends(
        monkeypatch):
    """The figures index saved trajectories by step; the engine's ``keep="auto"`` keeps only
    the ends of large runs, so a cell that keeps its distributions must ask for all."""
    import serialrepro.grid.process as process

    monkeypatch.setattr(process, "KEEP_ALL_BYTES", 1)  # 'auto' would now keep t = 0, T only
    record, arrays = compute_cell(_payload(_cell(T=3)), keep=True)
    assert arrays["marginals"].shape[0] == 4 and arrays["reverse"].shape[0] == 4
    np.testing.assert_allclose(arrays["marginals"].reshape(4, -1).sum(axis=1), 1.0, atol=1e-12)
    plain, none = compute_cell(_payload(_cell(T=3)), keep=False)
    assert none is None and plain["scores"] == record["scores"]


DRIVER = """
import time

from serialrepro.experiments.runner import worker_pool

if __name__ == "__main__":  # spawned workers import this file again
    pool = worker_pool(2)
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    while len(pool._processes) < 2 or not all(f.running() for f in futures):
        time.sleep(0.1)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(120)
"""


def test_pool_workers_die_with_a_killed_driver(tmp_path):
    """SIGKILL of the driver (what the OOM killer does) runs no clean-up; its pool workers
    must end by themselves instead of living on under PID 1, each holding its memory."""
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = __import__("pytest").importorskip("psutil")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = [int(p) for p in driver.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        time.sleep(1.5)  # the workers are sleeping in their task, not dying at start-up
        assert all(psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in pids if psutil.pid_exists(p)
                     and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"workers {alive} outlived their driver"
    finally:
        driver.kill()
        for p in pids:  # never leave a sleeping worker behind, even when the test fails
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_progress_bar_names_a_cell_of_every_shipped_kind():
    """The progress text works for every kind's cells (an optimal-schedules cell has no
    noise or step field), and a cell without a description is named by its key."""
    from dataclasses import dataclass

    from serialrepro.experiments.catalog import shipped_config, shipped_names
    from serialrepro.experiments.kinds import get_kind
    from serialrepro.experiments.runner import _cell_text

    seen = set()
    for name in shipped_names():
        config = shipped_config(name)
        cell = get_kind(config.kind).expand(config, True)[0]
        text = _cell_text(cell)
        assert text.startswith(f"{config.name}: "), text
        seen.add(config.kind)
    assert {"grid-sweep", "optimal-schedules"} <= seen

    @dataclass(frozen=True)
    class Bare:
        key: str

    assert _cell_text(Bare("toy-1")) == "toy-1"
