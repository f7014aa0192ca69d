"""``serialrepro schedule experiment``: the optimal-schedule experiment from the command line
(:mod:`serialrepro.experiments.optimal`), a command of the ``schedule`` group."""

from __future__ import annotations

from pathlib import Path

import typer


def experiment_command(
    out: Path = typer.Option(..., "--out", metavar="DIR",
                             help="results folder (an existing one is resumed)"),
    preset: str = typer.Option("quick", "--preset", metavar="NAME",
                               help="quick (32x32 torus, T <= 12; minutes) or full (the paper "
                               "grid, T up to 24; much longer)"),
    prior: str | None = typer.Option(None, "--prior", metavar="LIST",
                                     help="comma list of priors (default: swiss-roll, "
                                     "three-modes)"),
    noise: str | None = typer.Option(None, "--noise", "--family", metavar="LIST",
                                     help="comma list of families (default: gaussian, "
                                     "bimodal, fade-uniform)"),
    T: str | None = typer.Option(None, "--T", metavar="LIST",
                                 help="comma list of step counts (default: the preset's)"),
    grid: str | None = typer.Option(None, "--grid", metavar="GRID",
                                    help="another grid than the preset's"),
) -> None:
    """The optimal-schedule experiment: for each prior, family, T and constraint, the
    optimum against the baselines; writes rows.csv, verdicts.json and one figure of the
    optimal schedules against T per prior, and prints the verdicts."""
    from serialrepro.atomic import check_output_folder
    from serialrepro.errors import UserInputError
    from serialrepro.experiments import optimal
    from serialrepro.families import get_family
    from serialrepro.grid.priors import PRIORS
    from serialrepro.grid.space import parse_grid

    def split(text, what):
        items = [v.strip() for v in str(text).split(",") if v.strip()]
        if not items:
            raise UserInputError(f"{what} {text!r} is empty; give a comma list")
        return tuple(items)

    select = {}
    if prior is not None:
        select["priors"] = split(prior, "--prior")
        for p in select["priors"]:
            if p not in PRIORS:
                from serialrepro.errors import unknown_name

                raise unknown_name("prior", p, PRIORS)
    if noise is not None:
        select["families"] = tuple(get_family(f).name for f in split(noise, "--noise"))
    if T is not None:
        try:
            select["T_values"] = tuple(int(v) for v in split(T, "--T"))
        except ValueError:
            raise UserInputError(f"--T {T!r} is invalid; give a comma list of integers") \
                from None
        if min(select["T_values"]) < 1:
            raise UserInputError(f"--T {T!r} is invalid: every step count must be ≥ 1")
    if grid is not None:
        parse_grid(grid, 2)
        select["grid"] = grid
    optimal.cells(preset, **select)  # validates the preset before anything is written
    check_output_folder(out, "results folder")

    def progress(msg: str) -> None:
        typer.echo(msg, err=True)

    rows = optimal.run(out, preset, progress=progress, **select)
    v = optimal.write_results(rows, out)
    for line in v["summary"]:
        typer.echo(line)
    typer.echo(f"results in {out}")


def register(app: typer.Typer) -> None:
    from serialrepro.grid.schedule_cli import schedule_app

    schedule_app.command("experiment")(experiment_command)
