"""``serialrepro schedule optimize``: the best noise schedule under an explicit constraint."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from serialrepro.grid.cli import PRIOR_HELP, STEP_HELP

schedule_app = typer.Typer(
    name="schedule", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Noise schedules for the exact engine: optimise them under a constraint.")

CONSTRAINT_HELP = (
    "what every schedule must satisfy (the comparison is meaningless without one): "
    "ends:A:B (first level A, last B; default: the paper's ends for the family), "
    "total-variance:V (sum of squared levels V), max-level:S (every level at most S) or "
    "final-kl:D (KL(q_T || p_F) = D bits)")


def optimize_command(
    prior: str = typer.Option("swiss-roll", "--prior", metavar="NAME", help=PRIOR_HELP),
    noise: str = typer.Option("gaussian", "--noise", "--family", metavar="FAMILY",
                              help="noise family of the forward kernels (list: `serialrepro "
                              "families`)"),
    T: int = typer.Option(6, "--T", metavar="T", help="number of steps (levels)"),
    grid: str = typer.Option("paper:0.04", "--grid", metavar="paper:H|torus:N",
                             help="paper:H (the authors' grid) or torus:N (FFT-ready)"),
    dims: int = typer.Option(2, "--dims", metavar="D", help="dimension of torus grids"),
    step: str = typer.Option("serial", "--step", metavar="STEP", help=STEP_HELP),
    objective: str = typer.Option("kl", "--objective", metavar="NAME",
                                  help="what to minimise: kl or jsd of r_0 against the data"),
    constraint: str | None = typer.Option(None, "--constraint", metavar="SPEC",
                                          help=CONSTRAINT_HELP),
    restarts: int = typer.Option(2, "--restarts", min=0, metavar="N",
                                 help="seeded random starts besides the baselines' shapes "
                                 "(every start is evaluated; the best --refine are refined)"),
    refine: int = typer.Option(1, "--refine", min=1, metavar="N",
                               help="how many of the best starts L-BFGS refines"),
    max_iter: int = typer.Option(100, "--max-iter", min=1, metavar="N",
                                 help="L-BFGS iterations per start"),
    seed: int = typer.Option(0, "--seed", metavar="SEED", help="seed of the random starts"),
    backend: str = typer.Option("auto", "--backend", metavar="NAME",
                                help="auto (fft on torus grids, else dense), dense or fft"),
    device: str = typer.Option("cpu", "--device", metavar="DEVICE",
                               help="torch device: cpu, cuda or cuda:N"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    figure: Path | None = typer.Option(None, "--figure", metavar="FILE",
                                       help="draw the optimum and the baselines to this "
                                       ".png, .pdf or .svg file"),
) -> None:
    """Optimise sigma_1..sigma_T for the exact engine under a constraint and compare it
    with linear, cosine, geometric, EDM rho=7 and equal-complexity schedules meeting the
    same constraint. Progress goes to stderr; `serialrepro simulate --sigmas <levels>`
    reproduces every score."""
    from serialrepro.atomic import dumps_strict
    from serialrepro.budget import check_memory
    from serialrepro.devices import resolve_device
    from serialrepro.errors import UserInputError
    from serialrepro.families import get_family
    from serialrepro.grid.cli import check_output_path
    from serialrepro.grid.kernels import check_dense_fits, resolve_backend
    from serialrepro.grid.optimize import (
        Problem,
        check_objective,
        optimize_schedule,
        parse_constraint,
    )
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.process import get_step, simulation_bytes
    from serialrepro.grid.space import parse_grid

    family = get_family(noise)
    get_step(step)
    check_objective(objective)
    if T < 1:
        raise UserInputError(f"--T {T} is invalid: the number of steps must be ≥ 1")
    space = parse_grid(grid, dims)
    used = resolve_backend(space, backend)
    if used == "dense":
        check_dense_fits(space)
    if figure is not None:
        check_output_path(figure)
    con = parse_constraint(constraint, family, T)
    # autograd keeps every level's arrays (about 6 per step) besides the simulation's own
    check_memory(f"schedule optimize on {space.label} ({space.size} points) with T={T}",
                 simulation_bytes(space, T, "all", backend) + 6 * 8 * space.size * (T + 1),
                 "use a coarser grid or fewer steps")
    dev = resolve_device(device)
    data = make_prior(prior, space).to(dev)
    problem = Problem(data, family, space, T, con, step=step, objective=objective,
                      backend=backend)
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        typer.echo(f"[{time.perf_counter() - t0:6.1f}s] {msg}", err=True)

    out = optimize_schedule(problem, restarts=restarts, max_iter=max_iter, seed=seed,
                            progress=progress, keep_best=refine)
    if figure is not None:
        from serialrepro.grid.schedule_plots import plot_schedules

        plot_schedules(out, figure, title=f"{prior} · {family.name} · T={T} · {con.label}")
    if as_json:
        typer.echo(dumps_strict(out, nonfinite="null"))
        return
    fmt = lambda v: "null" if v is None else f"{v:.6f}"  # noqa: E731
    typer.echo(f"{prior} · {family.name} · {step} step · T={T} · {space.label} · "
               f"constraint {con.label} · objective {objective}")
    typer.echo(f"{'schedule':<18}{'kl':>10}{'jsd':>10}{'complexity':>12}  levels")
    rows = [("optimal", out)] + list(out["baselines"].items())
    for name, r in rows:
        if r is None:
            typer.echo(f"{name:<18}{'(undefined under this constraint)':>32}")
            continue
        levels = ",".join(f"{v:.4g}" for v in r["sigmas"])
        typer.echo(f"{name:<18}{fmt(r['kl_bits']):>10}{fmt(r['jsd_bits']):>10}"
                   f"{fmt(r['complexity_bits']):>12}  {levels}")
    typer.echo(f"{out['iterations']} L-BFGS iterations, {out['seconds']:.1f} s")
    if figure is not None:
        typer.echo(f"figure written to {figure}")


def equal_complexity_command(
    prior: str = typer.Option("swiss-roll", "--prior", metavar="NAME", help=PRIOR_HELP),
    noise: str = typer.Option("gaussian", "--noise", "--family", metavar="FAMILY",
                              help="noise family of the forward kernels"),
    T: int = typer.Option(6, "--T", metavar="T", help="number of steps (levels)"),
    grid: str = typer.Option("paper:0.04", "--grid", metavar="paper:H|torus:N",
                             help="paper:H (the authors' grid) or torus:N (FFT-ready)"),
    dims: int = typer.Option(2, "--dims", metavar="D", help="dimension of torus grids"),
    constraint: str | None = typer.Option(None, "--constraint", metavar="SPEC",
                                          help=CONSTRAINT_HELP),
    device: str = typer.Option("cpu", "--device", metavar="DEVICE",
                               help="torch device: cpu, cuda or cuda:N"),
) -> None:
    """Print the equal-complexity levels (KL(q_t || q_(t+1)) the same at every step) as a
    comma list, ready for `serialrepro simulate --sigmas`."""
    from serialrepro.devices import resolve_device
    from serialrepro.families import get_family
    from serialrepro.grid.kernels import check_dense_fits, resolve_backend
    from serialrepro.grid.optimize import Problem, equal_complexity_levels, parse_constraint
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.space import parse_grid

    family = get_family(noise)
    space = parse_grid(grid, dims)
    if resolve_backend(space, "auto") == "dense":
        check_dense_fits(space)
    con = parse_constraint(constraint, family, T)
    data = make_prior(prior, space).to(resolve_device(device))
    levels = equal_complexity_levels(Problem(data, family, space, T, con))
    typer.echo(",".join(repr(v) for v in levels))


def register(app: typer.Typer) -> None:
    schedule_app.command("optimize")(optimize_command)
    schedule_app.command("equal-complexity")(equal_complexity_command)
    app.add_typer(schedule_app, name="schedule")
