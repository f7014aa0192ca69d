"""``serialrepro simulate``: one optimal-diffusion simulation on a grid (issue contract)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from serialrepro.errors import UserInputError

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


SIGMAS_USAGE = "use A:B:T (e.g. 0.01:0.05:12), SHAPE:A:B:T (e.g. equal-complexity:0.01:0.05:6) " \
    "or a comma list"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def shape_spec(spec: str) -> tuple[str, dict[str, float], int] | None:
    """(shape, parameters, T) of a ``SHAPE:P1:…:T`` spec of ``--sigmas`` (a shape of
    :data:`serialrepro.schedules.SCHEDULE_SHAPES`, its parameters in order, then T);
    None for ``A:B:T`` and comma lists. Malformed specs are one-line errors."""
    from serialrepro.schedules import SCHEDULE_SHAPES

    text = str(spec).strip()
    parts = text.split(":")
    if len(parts) < 2 or _is_number(parts[0]):
        return None
    name = parts[0]
    if name not in SCHEDULE_SHAPES:
        raise UserInputError(f"--sigmas {spec!r} is invalid: {name!r} is not a schedule shape "
                             f"(shapes: {', '.join(SCHEDULE_SHAPES)}); {SIGMAS_USAGE}")
    params = SCHEDULE_SHAPES[name].params
    form = ":".join([name, *(p.upper() for p in params), "T"])
    if len(parts) != len(params) + 2:
        raise UserInputError(f"--sigmas {spec!r} is invalid; the {name} schedule is {form}")
    try:
        values = [float(v) for v in parts[1:-1]]
        T = int(parts[-1])
    except ValueError:
        raise UserInputError(f"--sigmas {spec!r} is invalid; {form} needs numbers and an "
                             "integer T") from None
    if not all(math.isfinite(v) for v in values):
        raise UserInputError(f"--sigmas {spec!r}: the parameters must be finite numbers")
    if T < 1:
        raise UserInputError(f"--sigmas {spec!r}: the number of steps T={T} must be ≥ 1")
    return name, dict(zip(params, values, strict=True)), T


def sigma_count(spec: str) -> int:
    """The number of levels T that ``--sigmas`` asks for, without building them (so a
    huge T is refused by the cost check before a list of T floats exists); 0 when the
    spec is malformed (:func:`parse_sigmas` then says why)."""
    text = str(spec).strip()
    if ":" in text:
        parts = text.split(":")
        if parts and not _is_number(parts[0]):
            try:
                named = shape_spec(text)
            except UserInputError:
                return 0
            return named[2] if named else 0
        try:
            return int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            return 0
    return sum(1 for v in text.split(",") if v.strip())


def parse_sigmas(spec: str, context=None) -> list[float]:
    """``A:B:T`` (T values linearly spaced from A to B), ``SHAPE:A:B:T`` (a registered
    schedule shape, e.g. ``geometric`` or ``equal-complexity``; ``constant:V:T``) or a
    comma list of levels. ``context`` (a :class:`~serialrepro.schedules.ScheduleContext`)
    is what a shape that needs one (equal-complexity) is solved for."""
    text = str(spec).strip()
    if not text:
        raise UserInputError("--sigmas is empty; use A:B:T (e.g. 0.01:0.05:12) or a comma list")
    named = shape_spec(text) if ":" in text else None
    if named is not None:
        from serialrepro.schedules import needs_context, schedule_shape

        name, params, T = named
        if needs_context(name):
            import serialrepro.grid.optimize  # noqa: F401 (registers the resolver)
        return schedule_shape(name, T, context=context, **params)
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise UserInputError(f"--sigmas {spec!r} is invalid; {SIGMAS_USAGE}")
        try:
            a, b = float(parts[0]), float(parts[1])
            T = int(parts[2])
        except ValueError:
            raise UserInputError(
                f"--sigmas {spec!r} is invalid; A and B must be numbers and T an integer") from None
        if not (math.isfinite(a) and math.isfinite(b)):
            raise UserInputError(f"--sigmas {spec!r}: A and B must be finite numbers")
        if T < 1:
            raise UserInputError(f"--sigmas {spec!r}: the number of steps T={T} must be ≥ 1")
        from serialrepro.schedules import schedule_shape

        return schedule_shape("linear", T, a, b)
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserInputError(
            f"--sigmas {spec!r} is invalid; use A:B:T or a comma list of numbers") from None
    if not values:
        raise UserInputError("--sigmas is empty; use A:B:T (e.g. 0.01:0.05:12) or a comma list")
    if any(not math.isfinite(v) for v in values):
        raise UserInputError(f"--sigmas {spec!r} contains a value that is not finite")
    return values


def check_output_path(path: Path, suffixes=FIGURE_SUFFIXES) -> Path:
    """Refuse output paths that cannot be written: missing folder, a folder, bad suffix."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserInputError(
            f"output file {str(path)!r} has an unsupported suffix; "
            f"use one of {', '.join(suffixes)}")
    if path.is_dir():
        raise UserInputError(f"output path {str(path)!r} is a directory, not a file")
    from serialrepro.atomic import check_output_file

    check_output_file(path, "figure file")
    if not path.parent.exists():
        raise UserInputError(f"the folder {str(path.parent)!r} for {str(path)!r} does not exist")
    return path


#: Values of the option-like choices of ``simulate`` (tests check them against the registries).
PRIOR_HELP = "the data distribution: swiss-roll, three-modes, or image:PATH (a greyscale image)"
STEP_HELP = ("the reverse step: serial (the paper's serial-reproduction step: re-noise with "
             "K_t, then reconstruct with prior q_(t-1)) or ancestral (reconstruct only, "
             "DDPM without the extra noise)")


def simulate_command(
    prior: str = typer.Option("swiss-roll", "--prior", metavar="NAME", help=PRIOR_HELP),
    noise: str = typer.Option("gaussian", "--noise", "--family", metavar="FAMILY",
                              help="noise family of the forward kernels (list: `serialrepro "
                              "families`; --family is an alias)"),
    sigmas: str = typer.Option("0.01:0.05:12", "--sigmas", metavar="A:B:T|SHAPE:A:B:T|LIST",
                               help="noise levels: A:B:T (T levels linearly spaced from A to "
                               "B), SHAPE:A:B:T (a schedule shape of `serialrepro list`: "
                               "linear, geometric, cosine, equal-complexity (KL(q_t || "
                               "q_(t+1)) equal at every step, solved for this prior, grid and "
                               "family); constant:V:T) or a comma list such as 0.02,0.04,0.08"),
    grid: str = typer.Option("paper:0.04", "--grid", metavar="paper:H|torus:N",
                             help="paper:H (the authors' grid, spacing H, both endpoints) or "
                             "torus:N (N points per axis, FFT-ready)"),
    dims: int = typer.Option(2, "--dims", metavar="D",
                             help="grid dimension of torus grids: 1, 2 or 3"),
    step: str = typer.Option("serial", "--step", metavar="STEP", help=STEP_HELP),
    backend: str = typer.Option("auto", "--backend", metavar="NAME",
                                help="kernel arithmetic: auto (fft on torus grids, else "
                                "dense), dense (M x M matrices) or fft (torus grids only)"),
    device: str = typer.Option("cpu", "--device", metavar="DEVICE",
                               help="torch device: cpu, cuda or cuda:N"),
    figure: Path | None = typer.Option(None, "--figure", metavar="FILE",
                                       help="also draw the forward and reverse rows to this "
                                       ".png, .pdf or .svg file"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object with the scores"),
    keep: str = typer.Option("auto", "--keep", metavar="WHICH",
                             help="trajectory steps to keep in memory: auto (all while both "
                             "trajectories fit in 256 MiB, else final), none, final (t = 0 "
                             "and T), every:K, all; --figure needs all or auto"),
) -> None:
    """Run the exact optimal-diffusion simulation of the paper and print its scores (and the
    levels a SHAPE:A:B:T schedule gave)."""
    from serialrepro.atomic import dumps_strict
    from serialrepro.budget import check_memory
    from serialrepro.devices import resolve_device
    from serialrepro.families import GRID, get_family
    from serialrepro.grid.kernels import check_dense_fits, resolve_backend
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.process import check_keep, get_step, simulate, simulation_bytes
    from serialrepro.grid.space import parse_grid
    from serialrepro.schedules import ScheduleContext, check_representable

    # Validate everything, and check the cost by arithmetic, before any work: the levels
    # and the prior are built only once the whole simulation is known to fit.
    family = get_family(noise, offers=GRID)
    get_step(step)
    space = parse_grid(grid, dims)
    used_backend = resolve_backend(space, backend)
    keep = check_keep(keep, figure is not None)
    if figure is not None:
        check_output_path(figure)
    if used_backend == "dense":
        check_dense_fits(space)  # the engine's own refusal, which names the FFT way out
    T = sigma_count(sigmas)
    if T >= 1:
        check_memory(f"simulate on {space.label} ({space.size} points) with T={T} levels "
                     f"({used_backend} backend, --keep {keep})",
                     simulation_bytes(space, T, keep, backend) + 64 * T,
                     "use a coarser grid (larger paper:H, smaller torus:N), fewer levels in "
                     "--sigmas or --keep final")
    named = shape_spec(sigmas)
    context = ScheduleContext(prior=prior, grid=grid, family=family.name, dims=dims,
                              backend=used_backend, device=device)
    levels = check_representable(family, parse_sigmas(sigmas, context))
    dev = resolve_device(device)
    data = make_prior(prior, space).to(dev)
    result = simulate(data, family, levels, space, step=step, backend=backend, keep=keep)
    out = result.scores()
    out["prior"] = prior
    shape_label = None
    if named is not None:
        from serialrepro.schedules import Schedule

        shape_label = Schedule(named[0], **named[1]).label
        out["schedule"] = shape_label
    if figure is not None:
        from serialrepro.grid.plots import plot_process

        plot_process(result, figure)
        out["figure"] = str(figure)
    if as_json:
        typer.echo(dumps_strict(out, nonfinite="null"))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{prior} · {family.name} · {step} step · T={result.T} · {space.label} "
                        f"({space.size} points, {result.backend})")
    for col in ("kl (bits)", "jsd (bits)", "complexity (bits)", "stationarity", "seconds"):
        table.add_column(col, justify="right")

    def fmt(v):
        return "null" if v is None else f"{v:.6f}"

    table.add_row(fmt(result.kl_bits), fmt(result.jsd_bits), fmt(result.complexity_bits),
                  fmt(result.stationarity), f"{result.seconds:.3f}")
    Console().print(table)
    if shape_label is not None:
        # repr: `simulate --sigmas <this list>` runs exactly these levels
        typer.echo(f"levels ({shape_label}): " + ",".join(repr(float(v)) for v in levels))
    if figure is not None:
        typer.echo(f"figure written to {figure}")


def family_table() -> list[dict[str, str]]:
    """One row per registered noise family (:data:`serialrepro.families.FAMILIES`) with the
    representations it offers, so a family added there shows up here."""
    from serialrepro.families import FAMILIES, GRID, PARTICLES, TENSOR

    rows = []
    for name, fam in FAMILIES.items():
        if fam.offers(TENSOR):
            trained = "epsilon or sample" if fam.variance_preserving else "sample"
            if fam.images_only:
                trained += ", images"
        else:
            trained = "-"
        rows.append({
            "family": name, "grid": "yes" if fam.offers(GRID) else "-",
            "continuous": ("yes" + (", unit noise" if fam.has_unit_noise else ""))
            if fam.offers(PARTICLES) else "-",
            "trained": trained,
            "description": fam.description,
        })
    return rows


def families_command() -> None:
    """List every noise family with the representations it offers.

    grid: a Markov kernel on grids (simulate, run, chains); continuous: sampling and
    log-density in continuous space (chains, particles; "unit noise": an additive
    unit-variance form); trained: a forward process for train/sample (the prediction types
    it trains with, in diffusers' names; sample-only families sample with the serial,
    x0-renoise or cold sampler).
    """
    rows = family_table()
    cols = ("family", "grid", "continuous", "trained")
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    typer.echo("  ".join(c.ljust(width[c]) for c in cols) + "  description")
    for r in rows:
        typer.echo("  ".join(r[c].ljust(width[c]) for c in cols) + "  " + r["description"])


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
    app.command("families")(families_command)
