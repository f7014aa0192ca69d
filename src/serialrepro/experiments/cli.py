"""``serialrepro reproduce``, ``serialrepro run CONFIG.yaml`` and ``serialrepro list``."""

from __future__ import annotations

from pathlib import Path

import typer

from serialrepro.errors import UserInputError

_WORKERS_HELP = "run cells on a local process pool of N worker processes"
_SCHEDULER_HELP = "run cells on an existing Dask cluster, e.g. tcp://HOST:PORT"


def _check_run_options(out_dir: Path, workers: int, scheduler: str | None) -> int:
    """The output folder checked (:func:`serialrepro.atomic.check_output_folder`) and
    ``--workers`` capped at the usable CPUs (:func:`serialrepro.budget.cap_workers`, with
    a message), before any config is expanded or any file written."""
    from serialrepro.atomic import check_output_folder
    from serialrepro.budget import cap_workers

    check_output_folder(out_dir, "results folder")
    if scheduler is not None:
        return workers  # a cluster, not local processes (the runner refuses both at once)
    workers, message = cap_workers(workers)
    if message:
        typer.echo(f"note: {message}", err=True)
    return workers


def _finish(outcome, quiet: bool) -> None:
    # the cells' own time, not the whole run's (Figure 4 and the report have their stages)
    cells_s = outcome.stages.get("grid cells", outcome.timings["total"])
    typer.echo(f"{outcome.stats.total} cells ({outcome.stats.cached} reused, "
               f"{outcome.stats.computed} computed, {outcome.stats.executor}) in "
               f"{cells_s:.1f} s")
    if not quiet:
        for name, line in outcome.headlines.items():
            if line:
                typer.echo(f"  {name}: {line}")
    typer.echo(f"table:  {outcome.table_path} (and scores.csv)")
    typer.echo(f"report: {outcome.report_path}")


def reproduce_command(
    quick: bool = typer.Option(False, "--quick", help="smoke version (under a minute): smaller "
                               "grids and fewer conditions; Figure 3 runs in full"),
    out: Path | None = typer.Option(None, "--out", metavar="DIR", help="results folder (default "
                                    "results/<UTC timestamp>); an existing one is resumed"),
    workers: int = typer.Option(1, "--workers", min=1, metavar="N", help=_WORKERS_HELP),
    scheduler: str | None = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                     help=_SCHEDULER_HELP),
    skip_fig4: bool = typer.Option(False, "--skip-fig4", help="do not train/evaluate the "
                                   "Figure 4 model"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="seed for the Figure 4 run"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
) -> None:
    """Every simulation figure of the paper, the extensions and Figure 4, in one report."""
    from serialrepro.cli import resolve_threads
    from serialrepro.experiments.catalog import reproduce_configs
    from serialrepro.experiments.pipeline import default_out_dir, python_argv, run_experiments

    configs = reproduce_configs()
    out_dir = out if out is not None else default_out_dir()
    workers = _check_run_options(out_dir, workers, scheduler)
    outcome = run_experiments(
        configs, out_dir, quick=quick, workers=workers, scheduler=scheduler,
        progress=not no_progress, fig4=not skip_fig4, seed=seed, argv=python_argv(),
        threads=resolve_threads(),
        title="Analyzing Diffusion as Serial Reproduction: reproduction report"
              + (" (quick)" if quick else ""))
    _finish(outcome, quiet=False)
    from serialrepro.loaders import load_json

    status = load_json(out_dir / "run.json", "run record").get("figure4", {})
    if status.get("status") == "failed":
        typer.echo(f"warning: Figure 4 failed ({status.get('message')}); the report says so",
                   err=True)


def _resolve_configs(config: str):
    from serialrepro.experiments.catalog import shipped_config, shipped_names
    from serialrepro.experiments.config import load_configs

    path = Path(config)
    if path.is_file():
        return load_configs(path)
    if config in shipped_names():
        return [shipped_config(config)]
    raise UserInputError(f"config {config!r} is neither a file nor a shipped experiment; "
                         f"shipped: {', '.join(shipped_names())}")


def run_command(
    config: str = typer.Argument(..., metavar="CONFIG",
                                 help="a YAML config file (one experiment, or a list "
                                 "under 'experiments:' as in config.resolved.yaml), or a "
                                 "shipped experiment name (see `serialrepro list`)"),
    out: Path | None = typer.Option(None, "--out", metavar="DIR", help="results folder (default "
                                    "results/<experiment name>); re-running resumes it"),
    workers: int = typer.Option(1, "--workers", min=1, metavar="N", help=_WORKERS_HELP),
    scheduler: str | None = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                     help=_SCHEDULER_HELP),
    quick: bool = typer.Option(False, "--quick", help="apply the config's quick override"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
) -> None:
    """Run a sweep from a config: resumable cells, table, figures and an HTML report."""
    from serialrepro.cli import resolve_threads
    from serialrepro.experiments.pipeline import python_argv, run_experiments

    cfgs = _resolve_configs(config)
    name = cfgs[0].name if len(cfgs) == 1 else Path(config).stem
    out_dir = out if out is not None else Path("results") / name
    workers = _check_run_options(out_dir, workers, scheduler)
    title = cfgs[0].title or name if len(cfgs) == 1 else None
    outcome = run_experiments(cfgs, out_dir, quick=quick, workers=workers, scheduler=scheduler,
                              progress=not no_progress, fig4=None, seed=cfgs[0].seed,
                              argv=python_argv(), title=title,
                              threads=resolve_threads())
    _finish(outcome, quiet=False)


def list_command() -> None:
    """Show the shipped experiments, noise families, priors, schedules, steps and grids."""
    from serialrepro.experiments.catalog import shipped_config, shipped_names
    from serialrepro.experiments.kinds import get_kind
    from serialrepro.families import FAMILIES, GRID, family_names
    from serialrepro.grid.priors import PRIORS
    from serialrepro.schedules import SCHEDULE_KINDS

    typer.echo("experiments (serialrepro run NAME; * = part of serialrepro reproduce):")
    for name in shipped_names():
        cfg = shipped_config(name)
        kind = get_kind(cfg.kind)  # each kind counts its own cells
        mark = "*" if cfg.reproduce is not None else " "
        typer.echo(f" {mark} {name:15s} {cfg.section:9s} {len(kind.expand(cfg, False)):4d} cells "
                   f"({len(kind.expand(cfg, True))} quick)  {cfg.title}")
    typer.echo("noise families (noise:; the families with a grid form):")
    for name in family_names(GRID):
        typer.echo(f"   {name:13s} {FAMILIES[name].description}")
    typer.echo("priors (prior:):")
    for name in PRIORS:
        typer.echo(f"   {name}")
    typer.echo("   image:PATH     a greyscale image file, brightness is mass")
    typer.echo("schedules (schedule: {kind: ...}; options total_variance, match_std):")
    for name, text in SCHEDULE_KINDS.items():
        typer.echo(f"   {name:16s} {text}")
    from serialrepro.experiments.verdicts import DEFAULT_VERDICT, VERDICTS

    typer.echo("verdicts (verdict:, for plot:; reference: golden or {experiment: NAME}):")
    for name, kind in VERDICTS.items():
        default = " (default)" if any(DEFAULT_VERDICT.get(p) == name for p in kind.plots) else ""
        typer.echo(f"   {name:22s} plot {'/'.join(kind.plots)}{default}: {kind.description}")
    typer.echo("steps (step:): serial (re-noise then reconstruct), ancestral (reconstruct only)")
    typer.echo("grids (grid:): paper:H (the authors' grid, spacing H), torus:N (N x N, FFT)")


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_command)
    app.command("run")(run_command)
    app.command("list")(list_command)
