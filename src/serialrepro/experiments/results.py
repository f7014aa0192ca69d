"""The tidy results table: one row per (experiment, condition), from stored cells.

Rows follow the order of expansion (the pipeline builds them with each experiment kind's
``row``; :func:`cell_row` for grid cells), and every value comes from the stored cell
files, so a resumed run and an uninterrupted one give the same table (``seconds`` is the time
the cell took when it was computed, kept in its file).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from serialrepro import atomic
from serialrepro.experiments.config import Cell
from serialrepro.experiments.runner import SCORE_FIELDS
from serialrepro.metrics.trends import (  # noqa: F401 (re-exported for the reports)
    TREND_RATIO,
    TREND_RHO,
    fid_trend_sentence,
    fid_trends,
)
from serialrepro.store import CellStore

#: the table's leading columns, in order; EXTRA_COLUMNS follow them
COLUMNS = (
    "experiment", "figure", "prior", "noise", "step", "T", "sigma_start", "sigma_end", "grid",
    "kl_bits", "jsd_bits", "complexity_bits", "stationarity", "seconds",
)
EXTRA_COLUMNS = ("label", "schedule", "sigma_sq_sum", "seed", "backend", "cell")


def cell_row(cell: Cell, record: dict) -> dict:
    """The table row of one cell from its stored record."""
    sig = cell.sigmas
    row = {
        "experiment": cell.experiment, "figure": cell.figure, "prior": cell.prior,
        "noise": cell.noise, "step": cell.step, "T": cell.T,
        "sigma_start": float(sig[0]), "sigma_end": float(sig[-1]), "grid": cell.grid,
    }
    for k in SCORE_FIELDS:
        v = record["scores"][k]
        row[k] = math.nan if v is None else float(v)
    row["seconds"] = float(record["seconds"])
    row.update({
        "label": cell.label, "schedule": cell.schedule,
        "sigma_sq_sum": float(sum(s * s for s in sig)), "seed": cell.seed,
        "backend": cell.backend, "cell": cell.key,
    })
    return row


def cell_distributions(store: CellStore, key: str) -> tuple:
    """(data, marginals q_0..q_T, reverse r_0..r_T) of a stored cell that kept them."""
    arr = store.read_arrays(key)
    if arr is None:
        raise RuntimeError(f"cell {key} has no intact stored distributions (its .npz is "
                           f"missing or changed after it was checked): run again")
    return arr["data"], arr["marginals"], arr["reverse"]


def write_table(table: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """``scores.parquet`` and ``scores.csv`` in ``out_dir``, each written atomically."""
    pq = out_dir / "scores.parquet"
    csv = out_dir / "scores.csv"
    return atomic.write_table(table, pq), atomic.write_table(table, csv)

