"""The optimal-schedule experiment (:mod:`serialrepro.experiments.optimal`) as an experiment
kind of the data-driven pipeline: ``kind: optimal-schedules``, ``plot: optimal-schedules``,
``verdict: optimal-schedules`` (configs/ext-optimal.yaml).

A config's sweeps give the prior, noise, grid and T axes (``quick`` overrides apply); each
condition runs every constraint of :data:`~serialrepro.experiments.optimal.CONSTRAINT_KINDS`.
Imported through the pipeline's ``KIND_MODULES``.
"""

from __future__ import annotations

import itertools
import json

from serialrepro.experiments import figures, kinds, optimal, verdicts
from serialrepro.experiments.config import _as_list, _effective_axes

NAME = "optimal-schedules"
#: optimiser settings of the pipeline's cells (the ``quick`` preset's)
SETTINGS = optimal.PRESETS["quick"]


def expand(config, quick: bool) -> list[optimal.OptimalCell]:
    out = []
    for sweep in config.sweeps:
        axes = _effective_axes(sweep, config.quick if quick else None)
        for prior, grid, noise, step, T in itertools.product(
                _as_list(axes["prior"]), _as_list(axes["grid"]), _as_list(axes["noise"]),
                _as_list(axes["step"]), _as_list(axes["T"])):
            for con in optimal.CONSTRAINT_KINDS:
                out.append(optimal.OptimalCell(
                    prior, noise, con, int(T), grid, SETTINGS["restarts"],
                    SETTINGS["max_iter"], SETTINGS["keep_best"], step=step,
                    experiment=config.name))
    return out


def row(cell: optimal.OptimalCell, record: dict) -> dict:
    """One table row per cell: the optimum's scores, each baseline's kl, and every
    schedule's levels and scores as JSON (``schedules``) for the figure and verdict."""
    from serialrepro.grid.optimize import BASELINES

    res = record["result"] or {}
    r = {"experiment": cell.experiment, "cell": cell.key, "prior": cell.prior,
         "grid": cell.grid, "noise": cell.family, "step": cell.step, "T": cell.T,
         "constraint": cell.constraint,
         "constraint_spec": res.get("constraint", record.get("constraint_spec")),
         **record["scores"], "infeasible": record.get("infeasible", ""),
         "seconds": record["seconds"], "schedules": json.dumps(optimal.rows_of(cell, record))}
    for name in BASELINES:
        b = res.get("baselines", {}).get(name)
        r[f"kl_{name}"] = None if b is None else b["kl_bits"]
    return r


def _schedule_rows(df) -> list[dict]:
    return [s for text in df["schedules"] for s in json.loads(text)]


kinds.register_kind(kinds.ExperimentKind(
    NAME, expand=expand, payload=optimal.payload, compute=optimal.compute, row=row,
    check=optimal.check,
    description="one schedule optimisation per condition and constraint "
                "(serialrepro.grid.optimize)"))


@figures.register_plot(NAME)
def _draw(inp) -> list:
    rows = _schedule_rows(inp.rows)
    items = []
    for prior in sorted({r["prior"] for r in rows}):
        path = optimal.plot_optima(rows, inp.fig_dir / f"{inp.config.name}-{prior}.png", prior)
        items.append(figures.FigureItem(path, f"kl-optimal schedules against T ({prior})",
                                        id=f"optima-{prior}"))
    return items


@verdicts.register_verdict(NAME, (NAME,), description="is the optimum close to equal "
                           "complexity; under which constraint more steps help")
def _judge(inp):
    rows = _schedule_rows(inp.rows)
    v = optimal.verdicts(rows)
    helps = [c for c, m in v["more_steps"].items() if m["helps"]]
    close = [c for c, e in v["equal_complexity"].items() if e["close"]]
    none = "none of the constraints"
    headline = (f"More steps help the optimum under {', '.join(helps) or none}; "
                f"equal complexity is within {optimal.CLOSE:.0%} of the optimum's kl under "
                f"{', '.join(close) or none}.")
    text = " ".join(v["summary"])
    findings = {f"optima-{p}": text for p in sorted({r["prior"] for r in rows})}
    return verdicts.Verdict(headline, None, headline, findings)
