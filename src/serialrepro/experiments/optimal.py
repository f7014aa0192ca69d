"""Extension: optimal schedules under each constraint, against the baselines and against T.

For each prior (Swiss roll, three modes), family (gaussian, bimodal, fade-uniform), T and
constraint, :func:`serialrepro.grid.optimize.optimize_schedule` finds the kl-optimal
levels and scores the linear, cosine, geometric, EDM ρ = 7 and equal-complexity baselines
under the same constraint. The constraint values are fixed per family across T, so that
kl against T answers "does more steps help?" at an equal constraint
(docs/design.md §6):

* ``ends``: the paper's end levels A → B for the family;
* ``total-variance``: Σσ² = A² + B² (the paper's two-step schedule; reachable at every T
  within the fade bound);
* ``max-level``: every σ_t ≤ B;
* ``final-kl``: KL(q_T‖p_F) = ½ KL(q_0‖p_F): the forward process covers half the
  distance to p_F in bits.

Cells are stored one file per cell through :class:`~serialrepro.store.
CellStore`, so an interrupted run resumes. :func:`verdicts` answers the two questions
from the rows alone (no plotting); :func:`plot_optima` draws the optimal schedules
against T.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PRIORS = ("swiss-roll", "three-modes")
FAMILIES = ("gaussian", "bimodal", "fade-uniform")
T_VALUES = (2, 3, 6, 12, 24)
CONSTRAINT_KINDS = ("ends", "total-variance", "max-level", "final-kl")

#: presets: ``full`` is the experiment as specified (the paper grid, T up to 24);
#: ``quick`` (what ``reproduce`` runs by default) uses a 32² torus (FFT kernels),
#: T ≤ 12 and one refined L-BFGS start per cell
PRESETS = {
    "full": {"grid": "paper:0.04", "T": T_VALUES, "restarts": 2, "max_iter": 100,
             "keep_best": 2},
    "quick": {"grid": "torus:32", "T": (2, 3, 6, 12), "restarts": 1, "max_iter": 40,
              "keep_best": 1},
}
#: bumped when the optimiser's search changes (part of every cell's key)
OPTIMISER_VERSION = 2
#: relative kl excess of the equal-complexity schedule over the optimum counted as "close"
CLOSE = 0.10
#: relative kl drop from the smallest to the largest T counted as "more steps help"
HELPS = 0.01


@dataclass(frozen=True)
class OptimalCell:
    """One condition: prior, family, constraint kind, T, grid, and optimiser settings."""

    prior: str
    family: str
    constraint: str
    T: int
    grid: str
    restarts: int
    max_iter: int
    keep_best: int = 1
    step: str = "serial"
    experiment: str = "optimal-schedules"  # the standalone run; configs pass their name
    keep: bool = False

    @property
    def description(self) -> str:
        """The cell as the progress bar names it."""
        return (f"{self.experiment}: {self.prior}, {self.family}, {self.constraint}, "
                f"T={self.T}, {self.grid}")

    @property
    def key(self) -> str:
        body = json.dumps(self.payload_fields(), sort_keys=True)
        digest = hashlib.sha256(body.encode()).hexdigest()[:12]
        return f"opt-{self.prior}-{self.family}-{self.constraint}-T{self.T}-{digest}"

    def payload_fields(self) -> dict:
        # "version" changes when the optimiser's search changes, so old cells recompute
        return {"version": OPTIMISER_VERSION, "prior": self.prior, "family": self.family,
                "constraint": self.constraint, "T": self.T, "grid": self.grid,
                "restarts": self.restarts,
                "max_iter": self.max_iter, "keep_best": self.keep_best, "step": self.step}


def cells(preset: str = "quick", priors=PRIORS, families=FAMILIES, T_values=None,
          constraints=CONSTRAINT_KINDS, grid: str | None = None) -> list[OptimalCell]:
    """The cells of a preset, optionally a subset (or another grid)."""
    from serialrepro.errors import unknown_name

    if preset not in PRESETS:
        raise unknown_name("preset", preset, PRESETS)
    p = PRESETS[preset]
    Ts = tuple(T_values) if T_values is not None else p["T"]
    return [OptimalCell(pr, fam, con, T, grid or p["grid"], p["restarts"], p["max_iter"],
                        p["keep_best"])
            for pr in priors for fam in families for con in constraints for T in Ts]


def constraint_spec(kind: str, family: str, data, space) -> str:
    """The constraint of ``kind`` for ``family`` (see the module docstring)."""
    from serialrepro.grid import scores
    from serialrepro.grid.optimize import paper_ends
    from serialrepro.grid.priors import limit_distribution

    a, b = paper_ends(family)
    if kind == "ends":
        return f"ends:{a!r}:{b!r}"
    if kind == "total-variance":
        return f"total-variance:{a * a + b * b!r}"
    if kind == "max-level":
        return f"max-level:{b!r}"
    start = limit_distribution(family, space).to(data)
    return f"final-kl:{0.5 * float(scores.kl_bits(data, start, space.dims))!r}"


def compute(payload: dict, keep: bool = False, threads: int | None = None):
    """One cell: (record, None). The record holds the optimum's four scores under
    ``scores`` (what the store validates) and the whole result."""
    import torch

    from serialrepro.errors import UserInputError
    from serialrepro.grid.optimize import Problem, optimize_schedule, parse_constraint
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.space import parse_grid

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    space = parse_grid(payload["grid"], 2)
    data = make_prior(payload["prior"], space)
    spec = constraint_spec(payload["constraint"], payload["family"], data, space)
    try:
        pb = Problem(data, payload["family"], space, payload["T"],
                     parse_constraint(spec, payload["family"], payload["T"]),
                     step=payload["step"])
        out = optimize_schedule(pb, restarts=payload["restarts"],
                                max_iter=payload["max_iter"], keep_best=payload["keep_best"])
    except UserInputError as exc:
        # a constraint no schedule of this family meets (bimodal noise shifts mass even at
        # zero width, so T steps may already bring q_T closer to p_F than D): said, not run
        return {"key": payload["key"], "scores": dict.fromkeys(
            ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")),
            "result": None, "infeasible": str(exc), "constraint_spec": spec,
            "seconds": time.perf_counter() - t0}, None
    scores = {k: out[k] for k in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")}
    record = {"key": payload["key"], "scores": scores, "result": out,
              "seconds": time.perf_counter() - t0}
    return record, None


def check(record: dict) -> str | None:
    """Why a stored record is not a finished cell of this experiment (None: it is)."""
    res = record.get("result")
    if res is None and isinstance(record.get("infeasible"), str):
        return None
    if not isinstance(res, dict) or not isinstance(res.get("sigmas"), list):
        return "has no optimal levels"
    if not isinstance(res.get("baselines"), dict):
        return "has no baselines"
    lv = res["sigmas"]
    if any(not isinstance(v, int | float) or not math.isfinite(v) for v in lv):
        return "has a level that is not a finite number"
    return None


def rows_of(cell: OptimalCell, record: dict) -> list[dict]:
    """Tidy rows: one per schedule (optimal and each baseline) of the cell (none where the
    constraint is infeasible)."""
    res = record["result"]
    if res is None:
        return []
    base = {"experiment": cell.experiment, "cell": cell.key, "prior": cell.prior,
            "noise": cell.family, "constraint": cell.constraint,
            "constraint_spec": res["constraint"], "T": cell.T, "grid": cell.grid,
            "seconds": record["seconds"]}
    out = []
    for name, r in [("optimal", res)] + list(res["baselines"].items()):
        if r is None:
            continue
        out.append({**base, "schedule": name, "kl_bits": r["kl_bits"],
                    "jsd_bits": r["jsd_bits"], "complexity_bits": r["complexity_bits"],
                    "stationarity": r["stationarity"], "sigmas": list(r["sigmas"])})
    return out


def payload(cell: OptimalCell) -> dict:
    """What :func:`compute` needs for ``cell``: its fields and its key."""
    return {**cell.payload_fields(), "key": cell.key}


def run(out_dir: str | Path, preset: str = "quick", progress: Callable[[str], None] | None = None,
        **select) -> list[dict]:
    """Compute (or resume) every cell into ``out_dir/cells`` and return the tidy rows."""
    from serialrepro.store import CellStore

    store = CellStore(Path(out_dir) / "cells", check=check)
    rows: list[dict] = []
    todo = cells(preset, **select)
    for i, cell in enumerate(todo, 1):
        rec = store.read(cell.key)
        if rec is None:
            rec, _ = compute(payload(cell))
            store.write(cell.key, rec)
            rec = store.read(cell.key)  # the rows come from the stored record, always
            how = f"computed in {rec['seconds']:.1f} s"
        else:
            how = "cached"
        if progress is not None:
            progress(f"[{i}/{len(todo)}] {cell.prior} {cell.family} {cell.constraint} "
                     f"T={cell.T}: {how}")
        rows.extend(rows_of(cell, rec))
    return rows


# -- verdicts (plotting-free) -----------------------------------------------------------


def _by(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def verdicts(rows: list[dict]) -> dict:
    """The two questions, answered from the numbers.

    1. *Is the optimum close to equal complexity?* Per constraint: the median and maximum
       relative kl excess (kl_eqc − kl_opt)/kl_opt over the cells, the share within
       :data:`CLOSE`, and the median largest level difference between the two schedules
       relative to the optimum's level range.
    2. *Under which constraint does more steps help?* Per constraint and (prior, family):
       the optimal kl at the smallest and the largest T; "helps" where it drops by more
       than :data:`HELPS` relative; per constraint the share of (prior, family) that help.

    Also the shape of the optima: the share of each optimum's steps at its top level and
    its largest single jump relative to its range (1 = one step does all the work); and
    where the optimiser is seen to have missed the global optimum (outside ``ends`` a
    T-step schedule contains every shorter one, so its optimal kl cannot rise with T).
    """
    opt = {(r["prior"], r["noise"], r["constraint"], r["T"]): r for r in rows
           if r["schedule"] == "optimal"}
    eqc = {(r["prior"], r["noise"], r["constraint"], r["T"]): r for r in rows
           if r["schedule"] == "equal-complexity"}
    out: dict = {"equal_complexity": {}, "more_steps": {}, "shape": {}}
    kinds = sorted({k[2] for k in opt}, key=lambda c: CONSTRAINT_KINDS.index(c)
                   if c in CONSTRAINT_KINDS else 99)
    for con in kinds:
        excess, excess_bits, level_gap = [], [], []
        jumps, top = [], []
        for key, r in opt.items():
            if key[2] != con:
                continue
            lv = r["sigmas"]
            span = max(lv) - min(lv)
            flat = span <= 1e-6 * max(lv)  # constant up to the optimiser's round-off
            if len(lv) >= 2:
                jumps.append(0.0 if flat else
                             max(b - a for a, b in zip(lv, lv[1:], strict=False)) / span)
            top.append(sum(1 for v in lv if v >= max(lv) * (1 - 1e-6)) / len(lv))
            e = eqc.get(key)
            if e is None or key[3] < 3:  # T ≤ 2 under ends: both are [A, B]
                continue
            excess.append((e["kl_bits"] - r["kl_bits"]) / max(r["kl_bits"], 1e-300))
            excess_bits.append(e["kl_bits"] - r["kl_bits"])
            if not flat:
                level_gap.append(max(abs(a - b) for a, b in zip(lv, e["sigmas"], strict=True))
                                 / span)
        out["equal_complexity"][con] = {
            "cells": len(excess),
            "median_kl_excess": _median(excess), "max_kl_excess": max(excess, default=None),
            "median_kl_excess_bits": _median(excess_bits),
            "share_close": (sum(x <= CLOSE for x in excess) / len(excess)) if excess else None,
            "median_level_gap": _median(level_gap),
            "close": bool(excess) and _median(excess) <= CLOSE,
        }
        out["shape"][con] = {"median_top_share": _median(top),
                             "median_largest_jump": _median(jumps)}
        helps = {}
        for (prior, fam, c), group in _by([r for r in opt.values()], "prior", "noise",
                                          "constraint").items():
            if c != con:
                continue
            group = sorted(group, key=lambda r: r["T"])
            first, last = group[0], group[-1]
            drop = (first["kl_bits"] - last["kl_bits"]) / max(first["kl_bits"], 1e-300)
            # levels at the floor are identity steps, so outside ``ends`` a T-step optimum
            # contains every shorter one: a kl above a shorter T's is a search failure
            kls = [r["kl_bits"] for r in group]
            gap = con != "ends" and any(
                k > min(kls[:i]) * (1 + 1e-3) + 1e-9 for i, k in enumerate(kls) if i)
            helps[f"{prior}/{fam}"] = {
                "T": [r["T"] for r in group], "kl_bits": kls,
                "relative_drop": drop, "helps": drop > HELPS, "search_gap": gap}
        share = sum(h["helps"] for h in helps.values()) / len(helps) if helps else None
        out["more_steps"][con] = {"by_condition": helps, "share_helps": share,
                                  "helps": share is not None and share > 0.5,
                                  "search_gaps": sorted(k for k, h in helps.items()
                                                        if h["search_gap"])}
    out["summary"] = summary_lines(out)
    return out


def _median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _excess(x: float | None, bits: float | None = None) -> str:
    """A relative excess as a percentage (a factor when it is large, "over 1000x" when the
    optimum's kl is near 0), with the absolute excess in bits when given."""
    if x is None:
        return "n/a"
    rel = (f"{100 * x:.1f}%" if x < 10 else f"{1 + x:.3g}x the optimum's kl" if x < 1e3
           else "over 1000x the optimum's kl")
    return rel if bits is None else f"{rel}, +{bits:.3g} bits"


def summary_lines(v: dict) -> list[str]:
    lines = []
    for con, e in v["equal_complexity"].items():
        m = v["more_steps"][con]
        s = v["shape"][con]
        lines.append(
            f"Under {con}: equal complexity is {'close to' if e['close'] else 'far from'} the "
            f"optimum (median kl excess "
            f"{_excess(e['median_kl_excess'], e.get('median_kl_excess_bits'))}, within "
            f"{CLOSE:.0%} in "
            f"{_pct(e['share_close'])} of {e['cells']} cells); more steps "
            f"{'help' if m['helps'] else 'do not help'} the optimum in "
            f"{_pct(m['share_helps'])} of prior/family pairs; optimum shape: median "
            f"{_pct(s['median_top_share'])} of steps at the top level, largest jump "
            f"{_pct(s['median_largest_jump'])} of the range"
            + (f"; the optimiser missed the global optimum (kl rises with T although "
               f"longer schedules contain shorter ones) for {', '.join(m['search_gaps'])}"
               if m["search_gaps"] else "") + ".")
    return lines


# -- figure ---------------------------------------------------------------------------


def plot_optima(rows: list[dict], path: str | Path, prior: str = "swiss-roll"):
    """Optimal levels σ_t against t/T, one line per T, one panel per (family, constraint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from serialrepro.grid.schedule_plots import save_figure

    opt = [r for r in rows if r["schedule"] == "optimal" and r["prior"] == prior]
    fams = [f for f in FAMILIES if any(r["noise"] == f for r in opt)]
    cons = [c for c in CONSTRAINT_KINDS if any(r["constraint"] == c for r in opt)]
    Ts = sorted({r["T"] for r in opt})
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(len(fams), len(cons), figsize=(3.2 * len(cons), 2.6 * len(fams)),
                             squeeze=False)
    for i, fam in enumerate(fams):
        for j, con in enumerate(cons):
            ax = axes[i][j]
            drawn = 0
            for k, T in enumerate(Ts):
                r = next((r for r in opt if r["noise"] == fam and r["constraint"] == con
                          and r["T"] == T), None)
                if r is None or not r.get("sigmas"):
                    continue
                drawn += 1
                t = [(s + 1) / T for s in range(T)]
                ax.plot(t, r["sigmas"], marker=".", lw=1.2,
                        color=cmap(k / max(1, len(Ts) - 1)), label=f"T={T}")
            if not drawn:
                ax.text(0.5, 0.5, "no feasible schedule\n(see the table)", ha="center",
                        va="center", fontsize=8, color="0.4", transform=ax.transAxes)
            ax.set_title(f"{fam} · {con}", fontsize=8)
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_ylim(bottom=0)
            if i == len(fams) - 1:
                ax.set_xlabel("t / T", fontsize=8)
            if j == 0:
                ax.set_ylabel("optimal σ_t", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"kl-optimal schedules against T ({prior})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return Path(path)


def write_results(rows: list[dict], out_dir: str | Path) -> dict:
    """rows.csv, verdicts.json and the figures in ``out_dir``; returns the verdicts."""
    import csv
    import io

    from serialrepro import atomic

    out_dir = Path(out_dir)
    v = verdicts(rows)
    buf = io.StringIO()
    cols = ["prior", "noise", "constraint", "constraint_spec", "T", "grid", "schedule",
            "kl_bits", "jsd_bits", "complexity_bits", "stationarity", "sigmas"]
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "sigmas": ",".join(repr(x) for x in r["sigmas"])})
    atomic.write_text(out_dir / "rows.csv", buf.getvalue())
    atomic.write_text(out_dir / "verdicts.json", atomic.dumps_strict(v, nonfinite="null",
                                                                      indent=1))
    for prior in sorted({r["prior"] for r in rows}):
        plot_optima(rows, out_dir / f"optimal-schedules-{prior}.png", prior)
    return v
