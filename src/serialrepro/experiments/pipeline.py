"""From configs to a results folder: validate, run cells, table, figures, report.

Layout of a results folder::

    cells/<key>.json, cells/<key>.npz   one atomic file (pair) per finished cell
    config.resolved.yaml                the experiments exactly as they ran
    run.json                            versions, seed, machine, options, timings
    run.log                             what ran when, and every Python warning raised
    scores.parquet, scores.csv          one row per (experiment, condition)
    figures/*.png                       every figure of the report
    fig4/                               the trained-model Figure 4 run (reproduce only)
    report.html                         self-contained report

Running again into the same folder skips the finished cells and rebuilds the rest.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from serialrepro import atomic
from serialrepro.errors import UserInputError
from serialrepro.experiments.config import ExperimentConfig, resolved_dict
from serialrepro.experiments.kinds import get_kind
from serialrepro.experiments.report import (
    ExperimentSection,
    Fig4Section,
    ReportInputs,
    render_report,
)
from serialrepro.experiments.results import write_table
from serialrepro.experiments.runner import RunStats, check_executor, probe_scheduler, run_cells
from serialrepro.store import CellStore

FIG4_PRESETS = {True: "quick", False: "digits-cpu"}
_VERSION_PACKAGES = ("serialrepro", "torch", "numpy", "scipy", "pandas", "pyarrow", "matplotlib",
                     "pydantic", "typer", "rich", "pyyaml", "dask", "distributed")


def default_out_dir(prefix: str = "") -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{prefix}{stamp}"


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict[str, str]:
    import torch

    return {
        "host": platform.node(), "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


@dataclass
class RunOutcome:
    out_dir: Path
    table_path: Path
    report_path: Path
    stats: RunStats
    timings: dict[str, float]
    headlines: dict[str, str]
    #: wall time per stage: setup, grid cells, figures, Figure 4, report, total
    stages: dict[str, float] = field(default_factory=dict)


class RunLog:
    """What a run did, when, and every Python warning raised while it ran.

    Inside ``with RunLog(path):`` warnings go to this log (one line at the first
    occurrence of each message, counted after) instead of the terminal, where they would
    break the progress bars; :attr:`warnings` lists them for the report. The log is
    written atomically to ``path`` on exit (and by :meth:`flush`).
    """

    def __init__(self, path: Path, echo: bool = True):
        self.path, self.echo = path, echo
        self.lines: list[str] = []
        self._seen: dict[tuple[str, str], list] = {}

    def __enter__(self) -> RunLog:
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.showwarning = self._show
        return self

    def __exit__(self, *exc) -> bool:
        self._cm.__exit__(*exc)
        if exc[0] is not None:
            self.write(f"stopped by {exc[0].__name__}: {exc[1]}")
        self.flush()
        return False

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        key = (category.__name__, str(message))
        if key in self._seen:
            self._seen[key][0] += 1
            return
        self._seen[key] = [1, f"{filename}:{lineno}"]
        self.write(f"warning {category.__name__} at {filename}:{lineno}: {message}")

    def write(self, text: str) -> None:
        stamp = _dt.datetime.now(_dt.UTC).strftime("%H:%M:%S")
        self.lines.append(f"{stamp} {text}")

    def say(self, text: str) -> None:
        """Log ``text`` and print it on stderr (when echoing)."""
        self.write(text)
        if self.echo:
            print(text, file=sys.stderr, flush=True)

    @property
    def warnings(self) -> list[tuple[str, str, int, str]]:
        return [(cat, msg, n, where) for (cat, msg), (n, where) in self._seen.items()]

    def flush(self) -> None:
        counts = [f"  {n}× {cat}: {msg}" for cat, msg, n, _ in self.warnings]
        tail = ["warnings raised (count, category, message):", *counts] if counts else []
        atomic.write_text(self.path, "\n".join([*self.lines, *tail]) + "\n")


def _stage_line(stages: dict[str, float]) -> str:
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in stages.items() if k != "total")
    return f"time by stage: {parts} (total {stages['total']:.1f} s)"


class Fig4Runner(Protocol):
    """What runs the trained-model Figure 4 into ``out_dir``: returns an object with
    ``table`` (a DataFrame with ``steps`` and ``fid``), ``figure``, ``notes`` and
    ``samples`` (:class:`serialrepro.models.fig4.Fig4Result`)."""

    def __call__(self, out_dir: Path, *, preset: str, seed: int, progress: bool): ...


def trained_fig4(out_dir: Path, *, preset: str, seed: int, progress: bool):
    """The default :class:`Fig4Runner`: :func:`serialrepro.models.fig4.run_fig4` (imported
    here; an ImportError means trained-model support is absent)."""
    from serialrepro.models.fig4 import run_fig4

    return run_fig4(out_dir, preset=preset, seed=seed, progress=progress)


def run_fig4_section(out_dir: Path, quick: bool, seed: int, progress: bool = False,
                     runner: Fig4Runner = trained_fig4) -> Fig4Section:
    """Run Figure 4 with ``runner`` under the preset of the mode, as a report section."""
    preset = FIG4_PRESETS[bool(quick)]
    t0 = time.perf_counter()
    try:
        res = runner(out_dir / "fig4", preset=preset, seed=seed, progress=progress)
    except ImportError as exc:
        return Fig4Section("absent", message=f"(the Figure 4 code is not importable: "
                                             f"{exc.__class__.__name__}: {exc})")
    except Exception as exc:  # the report must still say what happened
        return Fig4Section("failed", message=f"{exc.__class__.__name__}: {exc}",
                           seconds=time.perf_counter() - t0, preset=preset)
    return Fig4Section("ok", table=res.table, figure=res.figure, notes=str(res.notes),
                       seconds=time.perf_counter() - t0, preset=preset, samples=res.samples)


def run_experiments(
    configs: Sequence[ExperimentConfig], out_dir: Path, *, quick: bool = False,
    workers: int = 1, scheduler: str | None = None, progress: bool = True,
    fig4: bool | None = None, seed: int = 0, title: str | None = None,
    argv: Sequence[str] | None = None, threads: int | None = 1, announce: bool = True,
    fig4_runner: Fig4Runner = trained_fig4,
) -> RunOutcome:
    """Run ``configs`` into ``out_dir`` and write the table, figures and report.

    ``fig4``: True runs the trained-model Figure 4 with ``fig4_runner`` (if installed),
    False records that it was skipped, None leaves it out (custom runs). ``seed`` goes to
    Figure 4; the grid cells carry their configs' seeds. ``announce`` prints where the run
    writes (at the start) and its time by stage (at the end) on stderr; ``progress`` shows
    the bars.
    Python warnings raised while it runs go to ``run.log`` and the report's Warnings
    section, not the terminal.
    """
    t_start = time.perf_counter()
    # everything that can be wrong with the input fails here, before any work
    check_executor(workers, scheduler, threads)
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise UserInputError(f"experiment names must be unique; got {', '.join(names)}")
    per_config = {c.name: get_kind(c.kind).expand(c, quick) for c in configs}
    if scheduler is not None:
        probe_scheduler(scheduler)  # unreachable: refused before any file is written
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"output path {str(out_dir)!r} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunLog(out_dir / "run.log", echo=announce) as log:
        n_cells = len({c.key for cells in per_config.values() for c in cells})
        log.say(f"writing to {out_dir}{os.sep} ({len(configs)} experiments, {n_cells} grid "
                "cells" + (", then Figure 4" if fig4 else "") + "; report.html, "
                "scores.parquet, figures/, run.log)")
        return _run(configs, per_config, out_dir, log, t_start, quick=quick, workers=workers,
                    scheduler=scheduler, progress=progress, fig4=fig4, seed=seed, title=title,
                    argv=argv, threads=threads, fig4_runner=fig4_runner)


def _run_kinds(configs, per_config, cells_dir: Path, **options):
    """Run every experiment's cells with its kind's functions (one pass per kind); the
    table's rows in expansion order, the runs' stats summed, one store per kind."""
    import pandas as pd

    by_kind: dict[str, list] = {}
    for c in configs:
        by_kind.setdefault(c.kind, []).extend(per_config[c.name])
    stats, rows, stores = [], {}, {}
    for name, cells in by_kind.items():
        kind = get_kind(name)
        store = stores[name] = CellStore(cells_dir, check=kind.check)
        stats.append(run_cells(cells, store, compute=kind.compute, payload=kind.payload,
                               **options))
        for cell in cells:
            record = store.read(cell.key)
            if record is None:
                raise RuntimeError(f"cell {cell.key} of {cell.experiment} has no stored result")
            rows[id(cell)] = kind.row(cell, record)
    table = pd.DataFrame([rows[id(cell)] for c in configs for cell in per_config[c.name]])
    if {"T", "seed"} <= set(table.columns) and table[["T", "seed"]].notna().all().all():
        table = table.astype({"T": "int64", "seed": "int64"})
    total = RunStats(sum(s.total for s in stats), sum(s.cached for s in stats),
                     sum(s.computed for s in stats), sum(s.seconds for s in stats),
                     ", ".join(dict.fromkeys(s.executor for s in stats)))
    return total, table, stores


def _run(configs, per_config, out_dir: Path, log: RunLog, t_start: float, *, quick, workers,
         scheduler, progress, fig4, seed, title, argv, threads, fig4_runner) -> RunOutcome:
    fig_dir = out_dir / "figures"

    resolved = {"experiments": [resolved_dict(c, quick) for c in configs]}
    resolved_text = (
        "# The experiments exactly as they ran" + (" (--quick overrides applied)" if quick else "")
        + "; `serialrepro run` accepts this file.\n"
        + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True, width=100))
    atomic.write_text(out_dir / "config.resolved.yaml", resolved_text)
    provenance = {
        "started_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(argv) if argv else "",
        "quick": quick, "executor": scheduler or (f"{workers} workers" if workers > 1
                                                   else "in-process"),
        "torch threads per cell": threads,
        "seed": seed,
        "grid cell seeds": sorted({c.seed for cells in per_config.values() for c in cells
                                   if hasattr(c, "seed")}),
        "versions": package_versions(), "machine": machine_info(),
    }
    atomic.write_text(out_dir / "run.json", json.dumps(provenance, indent=1, default=str))
    stages = {"setup": time.perf_counter() - t_start}

    t0 = time.perf_counter()
    stats, table, stores = _run_kinds(
        configs, per_config, out_dir / "cells", workers=workers, scheduler=scheduler,
        progress=progress, description="grid cells", threads=threads)
    pq, _ = write_table(table, out_dir)
    stages["grid cells"] = time.perf_counter() - t0
    log.write(f"grid cells: {stats.total} ({stats.cached} found finished, {stats.computed} "
              f"computed, {stats.executor}) in {stats.seconds:.1f} s")

    from serialrepro.experiments.figures import experiment_figures

    t0 = time.perf_counter()
    sections = []
    timings = {"cells (wall)": stats.seconds}
    with _figure_bar(progress, len(configs)) as advance:
        for cfg in configs:
            advance(cfg.name)
            rows = table[table["experiment"] == cfg.name].reset_index(drop=True)
            t1 = time.perf_counter()
            figs = experiment_figures(cfg, rows, table, stores[cfg.kind], fig_dir)
            timings[f"figures {cfg.name}"] = time.perf_counter() - t1
            compute = float(rows.drop_duplicates("cell")["seconds"].sum())
            timings[f"computation {cfg.name} (sum over cells)"] = compute
            sections.append(ExperimentSection(cfg, rows, figs, compute))
    stages["figures"] = time.perf_counter() - t0
    log.write(f"figures: {len(configs)} experiments in {stages['figures']:.1f} s")

    fig4_section = None
    if fig4 is True:
        t0 = time.perf_counter()
        fig4_section = run_fig4_section(out_dir, quick, seed, progress, fig4_runner)
        stages["Figure 4"] = time.perf_counter() - t0
        timings["figure 4"] = fig4_section.seconds
        log.write(f"Figure 4 ({fig4_section.preset or 'no preset'}): {fig4_section.status} "
                  f"in {stages['Figure 4']:.1f} s {fig4_section.message}".rstrip())
    elif fig4 is False:
        fig4_section = Fig4Section("skipped")

    provenance_flat = {
        "command": provenance["command"] or "(python API)",
        "started at (UTC)": provenance["started_at"], "quick": quick,
        "executor": f"{provenance['executor']}, {threads} torch thread(s) per cell",
        "cells": f"{stats.total} unique ({stats.cached} found finished, {stats.computed} "
                 "computed now)",
        "seed": f"{seed} (Figure 4); grid cells: "
                f"{', '.join(map(str, provenance['grid cell seeds']))} (the exact engine is "
                "deterministic)",
        **{f"machine: {k}": v for k, v in provenance["machine"].items()},
        **{f"version: {k}": v for k, v in provenance["versions"].items()},
    }
    notes = []
    if stats.cached:
        notes.append(f"{stats.cached} of {stats.total} cells were found finished in "
                     f"{out_dir / 'cells'} and reused; their 'seconds' are from when they ran.")
    report_title = title or ("serialrepro: " + ", ".join(c.name for c in configs))

    def render(stage_times: dict[str, float]) -> str:
        return render_report(ReportInputs(
            title=report_title, quick=quick, sections=sections, resolved_config=resolved_text,
            provenance=provenance_flat, timings=timings, fig4=fig4_section, notes=notes,
            warnings=log.warnings, stages=stage_times))

    # the report states its own rendering time: render once to measure, then for real
    t0 = time.perf_counter()
    render({**stages, "total": time.perf_counter() - t_start})
    stages["report"] = time.perf_counter() - t0
    stages["total"] = time.perf_counter() - t_start
    timings["total"] = stages["total"]
    report_path = out_dir / "report.html"
    atomic.write_text(report_path, render(stages))

    provenance["timings"] = timings
    provenance["stages"] = stages
    provenance["cells"] = {"total": stats.total, "cached": stats.cached,
                           "computed": stats.computed, "executor": stats.executor}
    provenance["warnings"] = [{"category": c, "message": m, "count": n, "where": w}
                              for c, m, n, w in log.warnings]
    if fig4_section is not None:
        provenance["figure4"] = {"status": fig4_section.status, "message": fig4_section.message}
    atomic.write_text(out_dir / "run.json", json.dumps(provenance, indent=1, default=str))
    if log.warnings:
        log.say(f"{sum(w[2] for w in log.warnings)} Python warning(s) went to "
                f"{out_dir / 'run.log'} and the report")
    log.say(_stage_line(stages))
    headlines = {s.config.name: s.figures.headline for s in sections}
    return RunOutcome(out_dir, pq, report_path, stats, timings, headlines, stages)


class _figure_bar:
    """A rich bar over the experiments whose figures are being drawn (stderr)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda name: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("[bold]figures"), BarColumn(), MofNCompleteColumn(),
            TextColumn("experiments · {task.fields[what]}"), console=Console(stderr=True),
            transient=False)
        self._progress.__enter__()
        task = self._progress.add_task("figures", total=self.total, what="")
        started = [False]

        def advance(name: str) -> None:
            self._progress.update(task, advance=1 if started[0] else 0, what=name)
            started[0] = True
        self._advance = lambda: self._progress.update(task, completed=self.total, what="done")
        return advance

    def __exit__(self, *exc):
        if self.enabled:
            if exc[0] is None:
                self._advance()
            self._progress.__exit__(*exc)
        return False


def python_argv() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]
