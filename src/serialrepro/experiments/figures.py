"""Figures of an experiment, drawn from its rows; their captions come from its verdict.

A config's ``plot`` names a drawing in :data:`PLOTS` (forward/reverse panels per
condition, kl against T and complexity, the family comparison, the schedule
comparison); each drawing returns :class:`FigureItem` objects with an ``id``, and the
config's verdict (:mod:`serialrepro.experiments.verdicts`, which imports no plotting
library) writes the finding under each id from this run's table, never in advance.
A new drawing is one function registered with :func:`register_plot`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from serialrepro import atomic
from serialrepro.experiments.config import ExperimentConfig
from serialrepro.experiments.results import cell_distributions
from serialrepro.experiments.verdicts import (
    KL_VS_T,
    Reference,
    VerdictInputs,
    family_spreads,
    groups,
    judge,
    panel_id,
    process_numbers,
    resolve_reference,
    sigma_is_std,
)
from serialrepro.store import CellStore


def _family_order(names) -> list[str]:
    """The families present, those whose σ is a per-axis std first (each group in order of
    appearance), so the solid curves come before the dashed ones."""
    names = list(dict.fromkeys(names))
    return [f for f in names if sigma_is_std(f)] + [f for f in names if not sigma_is_std(f)]


@dataclass
class FigureItem:
    """One figure file with its caption parts; ``id`` names it for the verdict's findings."""

    path: Path
    title: str
    finding: str = ""
    id: str = ""


@dataclass
class ExperimentFigures:
    """The figures of one experiment plus its headline (one sentence for the summary)."""

    items: list[FigureItem] = field(default_factory=list)
    headline: str = ""
    #: False where this run's numbers disagree with the paper's claim (None: not judged)
    agrees: bool | None = None
    #: a shorter headline for the report's Summary ("": the headline itself)
    brief: str = ""


@dataclass(frozen=True)
class PlotInputs:
    config: ExperimentConfig
    rows: pd.DataFrame
    reference: Reference | None
    store: CellStore | None
    fig_dir: Path


@dataclass(frozen=True)
class PlotKind:
    fn: Callable[[PlotInputs], list[FigureItem]]
    #: the drawing reads q_0..q_T and r_0..r_T (the config must keep them)
    needs_distributions: bool = False


#: plot name → its drawing (the config's ``plot:`` field)
PLOTS: dict[str, PlotKind] = {}


def register_plot(name: str, needs_distributions: bool = False):
    def deco(fn: Callable[[PlotInputs], list[FigureItem]]):
        PLOTS[name] = PlotKind(fn, needs_distributions)
        return fn
    return deco


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def _save(fig, path: Path) -> Path:
    return atomic.save_figure(fig, path, dpi=100)


def _T_axis(ax, Ts) -> None:
    """A log x axis labelled at the T values that ran (2, 6, 24, 100), not at 2×10⁰, 3×10⁰…
    (matplotlib's minor labels overlap on ranges under two decades)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    Ts = sorted({int(t) for t in Ts})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(Ts))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


# -- process panels (forward/reverse per condition) ------------------------------------

def _result_from_store(row: pd.Series, store: CellStore):
    """Rebuild a SimulationResult from a stored cell, for ``plot_process``."""
    import torch

    from serialrepro.grid.process import SimulationResult
    from serialrepro.grid.space import parse_grid

    data, marginals, reverse = cell_distributions(store, row["cell"])
    rec = store.read(row["cell"])
    spec = rec["spec"]

    def none_if_nan(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    return SimulationResult(
        space=parse_grid(spec["grid"]), family=spec["noise"], sigmas=list(spec["sigmas"]),
        step=spec["step"], backend=rec["backend"], data=torch.from_numpy(data),
        marginals=torch.from_numpy(marginals), reverse=torch.from_numpy(reverse),
        kl_bits=row["kl_bits"], jsd_bits=row["jsd_bits"],
        complexity_bits=none_if_nan(row["complexity_bits"]),
        stationarity=none_if_nan(row["stationarity"]), seconds=row["seconds"],
    )


@register_plot("process", needs_distributions=True)
def process_figures(inp: PlotInputs) -> list[FigureItem]:
    """One forward/reverse figure per condition (``plot_process``), id'd by its cell."""
    from serialrepro.grid.plots import plot_process

    config, items = inp.config, []
    for _, row in inp.rows.iterrows():
        res = _result_from_store(row, inp.store)
        T = int(row["T"])
        name = row["label"] or row["noise"]
        title = (f"{row['figure']} {name}: {row['noise']}, {row['step']} step, T={T}, "
                 f"σ {row['sigma_start']:g}→{row['sigma_end']:g}, {row['grid']}")
        path = inp.fig_dir / f"{_slug(config.name)}-{_slug(str(row['figure']))}-" \
                             f"{_slug(name)}-{row['step']}-T{T}.png"
        fig = plot_process(res, title=f"{title}: kl = {row['kl_bits']:.3f} bits")
        _save(fig, path)
        items.append(FigureItem(path, title, id=panel_id(row)))
    return items


# -- kl against T and complexity -----------------------------------------------------------

#: how a reference is drawn beside this run's curves
_REFERENCE_STYLE = {"golden": dict(color="k", marker="x", ls="none", ms=9),
                    "experiment": dict(color="0.4", marker="s", ls="--", ms=4)}


@register_plot(KL_VS_T)
def kl_vs_T_figure(inp: PlotInputs) -> list[FigureItem]:
    config, df, ref = inp.config, inp.rows, inp.reference
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (label, sub) in enumerate(groups(df)):
        shown = "this run" if label == "all" else label
        ax1.plot(sub["T"], sub["kl_bits"], "o-", color=f"C{i % 10}", label=shown)
        ax2.plot(sub["complexity_bits"], sub["kl_bits"], "o-", color=f"C{i % 10}", label=shown)
    Ts = list(df["T"])
    if ref is not None and len(ref.rows):
        style = _REFERENCE_STYLE[ref.kind]
        ax1.plot(ref.rows["T"], ref.rows["kl_bits"], label=ref.label, **style)
        ax2.plot(ref.rows["complexity_bits"], ref.rows["kl_bits"], label=ref.label, **style)
        Ts += list(ref.rows["T"])
    ax1.set(xlabel="T (number of steps)", ylabel="KL(r_0 ‖ data) (bits)",
            title="kl against T")
    _T_axis(ax1, Ts)
    ax2.set(xscale="log", xlabel="complexity: max_t KL(q_t ‖ q_t+1) (bits)",
            ylabel="KL(r_0 ‖ data) (bits)", title="kl against complexity")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.suptitle(config.title, fontsize=10)
    fig.tight_layout()
    path = _save(fig, inp.fig_dir / f"{_slug(config.name)}-kl-vs-T.png")
    return [FigureItem(path, config.title, id=KL_VS_T)]


# -- the family comparison -----------------------------------------------------------------

@register_plot("families")
def families_figures(inp: PlotInputs) -> list[FigureItem]:
    config, df = inp.config, inp.rows
    plt = _plt()
    panels = list(df.groupby(["prior", "step"], sort=False))
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    spreads = []
    for ax, ((prior, step), sub) in zip(axes.flat, panels, strict=False):
        for i, fam in enumerate(_family_order(sub["noise"])):
            s = sub[sub["noise"] == fam].sort_values("T")
            ax.plot(s["T"], s["kl_bits"], "o-" if sigma_is_std(fam) else "s--", ms=3,
                    color=f"C{i}", label=fam)
        ax.set(yscale="log", xlabel="T", ylabel="KL(r_0 ‖ data) (bits)",
               title=f"{prior}, {step} step", )
        _T_axis(ax, sub["T"])
        ax.grid(alpha=0.3)
        _, spread_all, spread_std = family_spreads(sub)
        spreads.append((f"{prior}, {step}", spread_all, spread_std))
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, ncol=2)
    fig.suptitle("kl against T per noise family", fontsize=10)
    fig.tight_layout()
    p1 = _save(fig, inp.fig_dir / f"{_slug(config.name)}-kl-vs-T.png")

    n_families = df["noise"].nunique()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (label, sa, ss) in enumerate(spreads):
        ax.plot(sa.index, sa.values, "s--", ms=3, color=f"C{i}",
                label=f"{label}: all {n_families}")
        ax.plot(ss.index, ss.values, "o-", ms=3, color=f"C{i}", label=f"{label}: std families")
    ax.set(yscale="log", xlabel="T",
           ylabel="max − min of kl over families (bits)", title="spread between families")
    _T_axis(ax, df["T"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p2 = _save(fig, inp.fig_dir / f"{_slug(config.name)}-spread.png")
    return [
        FigureItem(p1, "kl against T for every noise family (solid: σ is the per-axis std; "
                   "dashed: matched as the setting says)", id="kl-vs-T"),
        FigureItem(p2, "Spread of kl between families at each T", id="spread"),
    ]


# -- schedules at equal total noise ----------------------------------------------------------

@register_plot("schedules")
def schedules_figures(inp: PlotInputs) -> list[FigureItem]:
    """kl against T per schedule (and step), and complexity against T per schedule."""
    config, df = inp.config, inp.rows
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = list(dict.fromkeys(df["step"]))
    styles = {"serial": "o-", "ancestral": "s--"}
    for i, (sched, sub) in enumerate(df.groupby("schedule", sort=False)):
        for step in steps:
            s = sub[sub["step"] == step].sort_values("T")
            label = sched if len(steps) == 1 else f"{sched} · {step}"
            ax1.plot(s["T"], s["kl_bits"], styles.get(step, "o-"), ms=3, color=f"C{i}",
                     label=label)
        # complexity is a property of the forward process only: one line per schedule
        s = sub.drop_duplicates("T").sort_values("T")
        ax2.plot(s["T"], s["complexity_bits"], "o-", ms=3, color=f"C{i}", label=sched)
    ax1.set(yscale="log", xlabel="T", ylabel="KL(r_0 ‖ data) (bits)", title="kl against T")
    ax2.set(yscale="log", xlabel="T", ylabel="complexity (bits)", title="complexity against T")
    for ax in (ax1, ax2):
        _T_axis(ax, df["T"])
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=6)
    fig.suptitle(config.title, fontsize=10)
    fig.tight_layout()
    path = _save(fig, inp.fig_dir / f"{_slug(config.name)}-kl-complexity-vs-T.png")
    return [FigureItem(path, config.title, id="kl-complexity-vs-T")]


# -- figures with their verdict ----------------------------------------------------------------

def experiment_figures(config: ExperimentConfig, df: pd.DataFrame, full: pd.DataFrame,
                       store: CellStore | None, fig_dir: Path) -> ExperimentFigures:
    """Draw ``config``'s figures from its rows ``df`` and caption them with its verdict
    (``full``: every experiment's rows, where its reference is looked up)."""
    plot = PLOTS[config.plot]
    reference = resolve_reference(config.reference, full)
    extra = None
    if plot.needs_distributions:
        extra = process_numbers(df, lambda row: cell_distributions(store, row["cell"]))
    verdict = judge(config.verdict_name, VerdictInputs(df, reference, extra))
    items = plot.fn(PlotInputs(config, df, reference, store, fig_dir))
    for item in items:
        item.finding = verdict.findings.get(item.id, "")
    return ExperimentFigures(items, verdict.headline, verdict.agrees, verdict.brief)
