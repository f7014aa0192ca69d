"""Huge requests are refused by arithmetic before anything is allocated or written.

The CLI cases run ``serialrepro run CONFIG`` in a subprocess whose address space is
limited to 1.5 GB (``RLIMIT_AS``): had the config been expanded or a grid built, the
process would die of ``MemoryError`` (a traceback, exit 1) instead of the one-line
refusal with exit code 2 asserted here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from serialrepro import budget
from serialrepro.errors import UserInputError
from serialrepro.experiments.config import cell_bytes, check_cost, expand, parse_config
from serialrepro.grid.space import parse_grid

SERIALREPRO = Path(sys.executable).with_name("serialrepro")
LIMIT_AS = 1536 << 20
LIN = {"kind": "linear", "start": 0.01, "end": 0.05}


def cfg(**sweep) -> dict:
    return {"name": "huge", "sweeps": [{"T": 3, "schedule": dict(LIN), "grid": "torus:8",
                                        **sweep}]}


def test_check_memory_names_request_estimate_limit_and_option(monkeypatch):
    monkeypatch.setenv(budget.MEMORY_LIMIT_ENV, "1G")
    assert budget.available_bytes() == 1 << 30
    assert budget.check_memory("a small thing", 1000, "lower --n") == 1000
    with pytest.raises(UserInputError) as info:
        budget.check_memory("--n 1000000000 samples", 8 * 10**9, "lower --n")
    msg = str(info.value)
    assert msg.startswith("--n 1000000000 samples needs about 7.45 GiB")
    assert "the limit is 1 GiB ($SERIALREPRO_MEMORY_LIMIT)" in msg and msg.endswith("lower --n")


def test_the_limit_is_a_fraction_of_available_memory_and_the_address_space(monkeypatch):
    monkeypatch.delenv(budget.MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setattr(budget, "_system_available", lambda: 10 << 30)
    monkeypatch.setattr(budget, "_address_space_limit", lambda: None)
    assert budget.available_bytes() == int(budget.SAFETY_FRACTION * (10 << 30))
    monkeypatch.setattr(budget, "_address_space_limit", lambda: 1 << 30)
    assert budget.available_bytes() == int(budget.SAFETY_FRACTION * (1 << 30))


@pytest.mark.parametrize("text,want", [("2000", 2000), ("1.5G", 3 << 29), ("512M", 512 << 20),
                                       ("4 KiB", 4096), ("1t", 1 << 40)])
def test_memory_sizes_parse(text, want):
    assert budget.parse_bytes(text) == want


@pytest.mark.parametrize("text", ["", "-1G", "lots", "1.5X", "nan"])
def test_bad_memory_sizes_are_refused(text):
    with pytest.raises(UserInputError):
        budget.parse_bytes(text)


def test_cell_bytes_counts_kept_marginals_and_the_kernel():
    torus = parse_grid("torus:64")
    assert cell_bytes(torus, 10, "fft") == 2 * 11 * 4096 * 8 + 4 * 4096 * 8 + 640
    paper = parse_grid("paper:0.04")
    assert cell_bytes(paper, 1, "dense") == 2 * 2 * 676 * 8 + 5 * 676**2 * 8 + 64


@pytest.mark.parametrize("sweep,words", [
    ({"T": 1_000_000_000}, "T=1000000000"),
    ({"grid": "paper:1e-9"}, "grid paper:1e-09, M=1000000000000000000 points"),
    ({"grid": "torus:100000"}, "M=10000000000 points"),
    ({"T": {"start": 1, "stop": 10**12, "step": 1}}, "values; the limit is"),
    ({"seed": {"start": 0, "stop": 2000}, "T": {"start": 1, "stop": 100}}, "more than 100000"),
    ({"schedule": {"kind": "linear", "start": {"start": 0.001, "stop": 0.01, "num": 1000},
                   "end": {"start": 0.02, "stop": 0.05, "num": 1000}}}, "limit is 100000"),
])
def test_huge_sweeps_are_refused_by_arithmetic(monkeypatch, sweep, words):
    monkeypatch.setenv(budget.MEMORY_LIMIT_ENV, "1G")
    t0 = time.perf_counter()
    with pytest.raises(UserInputError) as info:
        expand(parse_config(cfg(**sweep), "huge.yaml"))
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert words in msg and "\n" not in msg, msg


def test_the_same_sweep_passes_under_a_larger_budget(monkeypatch):
    config = parse_config(cfg(T=50, grid="torus:256"))
    need = cell_bytes(parse_grid("torus:256"), 50, "fft")
    monkeypatch.setenv(budget.MEMORY_LIMIT_ENV, str(need - 1))
    with pytest.raises(UserInputError, match="smaller T"):
        check_cost(config)
    monkeypatch.setenv(budget.MEMORY_LIMIT_ENV, str(need + (1 << 20)))
    assert check_cost(config) == 1


def _limited():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


@pytest.mark.parametrize("sweep", [{"T": 1_000_000_000},
                                   {"grid": ["torus:8", "paper:1e-9"]}])
def test_the_cli_refuses_huge_requests_under_a_memory_limit(tmp_path, sweep):
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(cfg(**sweep)))
    out = tmp_path / "out"
    env = {k: v for k, v in __import__("os").environ.items() if k != budget.MEMORY_LIMIT_ENV}
    t0 = time.perf_counter()
    proc = subprocess.run([str(SERIALREPRO), "run", str(path), "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limited, env=env)
    elapsed = time.perf_counter() - t0
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "needs about" in lines[0] and "the limit is" in lines[0], lines
    assert not out.exists()  # nothing written
    assert elapsed < 60


def test_workers_are_capped_at_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(budget, "usable_cpus", lambda: 2)
    assert budget.cap_workers(1) == (1, None)
    n, msg = budget.cap_workers(100)
    assert n == 2 and msg == "--workers 100 capped at 2, the number of usable CPUs"
    with pytest.raises(UserInputError, match="must be ≥ 1"):
        budget.cap_workers(0)


def test_check_count_names_the_request_and_the_limit():
    assert budget.check_count("cells", 10, 10, "fewer values") == 10
    with pytest.raises(UserInputError, match=r"^--steps is 11, above the limit of 10; lower"):
        budget.check_count("--steps", 11, 10, "lower --steps")
