"""The same sweep on a Dask LocalCluster and a process pool gives the in-process table."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from serialrepro.errors import UserInputError
from serialrepro.experiments.config import parse_config
from serialrepro.experiments.pipeline import run_experiments

SWEEP = {
    "name": "executor-test",
    "sweeps": [{
        "noise": ["gaussian", "bimodal"], "step": ["serial", "ancestral"], "T": [2, 5],
        "schedule": {"kind": "linear", "start": 0.02, "end": 0.07}, "grid": "paper:0.1",
    }],
}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("inproc")
    outcome = run_experiments([parse_config(SWEEP)], out, progress=False)
    assert outcome.stats.executor == "in-process" and outcome.stats.computed == 8
    return pd.read_parquet(outcome.table_path)


def same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # results travel through other processes/threads; timings differ, numbers must not
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"),
                                  check_exact=False, rtol=1e-12, atol=1e-15)


def test_dask_local_cluster_gives_the_in_process_table(tmp_path, in_process):
    from distributed import LocalCluster

    from serialrepro.cli import app

    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1",
                      protocol="tcp", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "dask"),
                                          "--scheduler", address, "--no-progress"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        # the cluster's worker ran the eight cells, not the client
        (worker,) = cluster.workers.values()
        assert worker.state.executed_count == 8
    assert "8 cells (0 reused, 8 computed, dask tcp://127.0.0.1:" in result.output
    same_table(pd.read_parquet(tmp_path / "dask" / "scores.parquet"), in_process)


def test_process_pool_gives_the_in_process_table(tmp_path, in_process):
    outcome = run_experiments([parse_config(SWEEP)], tmp_path / "pool", workers=2,
                              progress=False)
    assert outcome.stats.executor == "process pool (2 workers)"
    assert outcome.stats.computed == 8
    same_table(pd.read_parquet(outcome.table_path), in_process)


def test_executor_options_are_checked_before_running(tmp_path):
    with pytest.raises(UserInputError, match="not both"):
        run_experiments([parse_config(SWEEP)], tmp_path / "x", workers=2,
                        scheduler="tcp://127.0.0.1:1", progress=False)
    with pytest.raises(UserInputError, match="not a Dask address"):
        run_experiments([parse_config(SWEEP)], tmp_path / "y", scheduler="localhost",
                        progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_unreachable_scheduler_is_a_user_error(tmp_path, monkeypatch):
    import socket

    from serialrepro.experiments import runner

    monkeypatch.setattr(runner, "DASK_CONNECT_TIMEOUT", "1s")

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserInputError, match="cannot reach the Dask scheduler"):
        run_experiments([parse_config(SWEEP)], tmp_path / "z",
                        scheduler=f"tcp://127.0.0.1:{port}", progress=False)
    assert not (tmp_path / "z").exists()  # refused before config.resolved.yaml / run.json


@pytest.mark.parametrize("address", [
    "localhost", "tcp://", "tcp://:8786", "tcp://host", "tcp://host:abc", "tcp://host:0",
    "tcp://host:99999", "foo://host:1", "tcp://a b:1", "tcp://host/x:1", "x" * 5000,
])
def test_malformed_scheduler_addresses_are_refused_at_once(tmp_path, address):
    import time

    t0 = time.perf_counter()
    with pytest.raises(UserInputError, match="not a Dask address") as err:
        run_experiments([parse_config(SWEEP)], tmp_path / "w", scheduler=address,
                        progress=False)
    assert time.perf_counter() - t0 < 2 and len(str(err.value)) < 400
    assert "\n" not in str(err.value) and not (tmp_path / "w").exists()


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "tls://node-3.cluster:8786",
                                     "tcp://[::1]:8786", "ws://h:1"])
def test_well_formed_scheduler_addresses_pass_the_check(address):
    from serialrepro.experiments.runner import check_scheduler_address

    check_scheduler_address(address)
