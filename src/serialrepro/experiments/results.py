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
from serialrepro.experiments.store import CellStore

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


# -- Figure 4: the FID trend of each sampling curve --------------------------------------

#: |Spearman ρ(steps, FID)| above this counts as a trend (below: "no clear trend")
TREND_RHO = 0.3
#: a rising trend shows the paper's effect only if FID at the fewest steps is at least this
#: multiple of FID at the most steps (FID at a few hundred samples varies by ~10 %)
TREND_RATIO = 1.25
CURVE_KEYS = ("dataset", "family", "sampler")


def fid_trends(table: pd.DataFrame) -> list[dict]:
    """Per curve (data set, family, sampler) of a Figure 4 table: Spearman ρ between the
    number of sampling steps and FID, the FIDs at the most and the fewest steps, and a
    verdict on the paper's claim (fewer steps, worse FID: ρ < −``TREND_RHO`` and FID at the
    fewest steps ≥ ``TREND_RATIO`` × FID at the most).

    ``agrees`` is True for that trend, False for the opposite trend or none, None for a
    rise too small to count (``weak``) or fewer than three strides (too few to judge).
    Columns missing from ``table`` (a table without ``dataset``, say) make one curve of all
    its rows.
    """
    keys = [k for k in CURVE_KEYS if k in table.columns]
    groups = table.groupby(keys, sort=True) if keys else [((), table)]
    out = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        g = g.dropna(subset=["steps", "fid"]).sort_values("steps")
        curve = "/".join(str(k) for k in key) or "all"
        row = {"curve": curve, "n": len(g), "rho": math.nan, "agrees": None,
               "verdict": f"{len(g)} strides, too few to judge a trend"}
        if len(g):
            many, few = g.iloc[-1], g.iloc[0]
            row.update(fid_many=float(many["fid"]), steps_many=int(many["steps"]),
                       fid_few=float(few["fid"]), steps_few=int(few["steps"]))
        if len(g) >= 3:
            rho = float(g["steps"].rank().corr(g["fid"].rank()))
            row["rho"] = rho
            rise = row["fid_few"] / row["fid_many"] if row["fid_many"] > 0 else math.inf
            if rho < -TREND_RHO and rise >= TREND_RATIO:
                row["agrees"], row["verdict"] = True, "FID rises as steps fall"
            elif rho < -TREND_RHO:
                row["weak"] = True
                row["verdict"] = (f"FID rises only {rise - 1:.0%} as steps fall (under the "
                                  f"{TREND_RATIO - 1:.0%} that would show the paper's effect)")
            elif rho > TREND_RHO:
                row["agrees"], row["verdict"] = False, "FID falls as steps fall"
            else:
                row["agrees"] = False
                row["verdict"] = "no clear trend of FID with the number of steps"
        out.append(row)
    return out


def fid_trend_sentence(t: dict) -> str:
    """'<verdict> (Spearman ρ(steps, FID) = −0.93; FID 2.1 at 1000 steps, 52 at 50)'."""
    if "fid_many" not in t:
        return t["verdict"]
    rho = "" if math.isnan(t["rho"]) else f"Spearman ρ(steps, FID) = {t['rho']:+.2f}; "
    return (f"{t['verdict']} ({rho}FID {t['fid_many']:.3g} at {t['steps_many']} steps, "
            f"{t['fid_few']:.3g} at {t['steps_few']})")
