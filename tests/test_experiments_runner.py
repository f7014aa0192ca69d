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
