"""``serialrepro simulate``: one optimal-diffusion simulation on a grid (issue contract)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from serialrepro.errors import UserInputError

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def parse_sigmas(spec: str) -> list[float]:
    """``A:B:T`` (T values linearly spaced from A to B) or a comma list of levels."""
    text = str(spec).strip()
    if not text:
        raise UserInputError("--sigmas is empty; use A:B:T (e.g. 0.01:0.05:12) or a comma list")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise UserInputError(
                f"--sigmas {spec!r} is invalid; use A:B:T (e.g. 0.01:0.05:12) or a comma list")
        try:
            a, b = float(parts[0]), float(parts[1])
            T = int(parts[2])
        except ValueError:
            raise UserInputError(
                f"--sigmas {spec!r} is invalid; A and B must be numbers and T an integer") from None
        if T < 1:
            raise UserInputError(f"--sigmas {spec!r}: the number of steps T={T} must be ≥ 1")
        from serialrepro.experiments.schedules import schedule_shape

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
    if not path.parent.exists():
        raise UserInputError(f"the folder {str(path.parent)!r} for {str(path)!r} does not exist")
    return path


def simulate_command(
    prior: str = typer.Option("swiss-roll", help="swiss-roll, three-modes or image:PATH"),
    noise: str = typer.Option("gaussian", help="noise family (see `serialrepro families`)"),
    sigmas: str = typer.Option("0.01:0.05:12", help="A:B:T (T levels from A to B) or a comma list"),
    grid: str = typer.Option("paper:0.04", help="paper:H (the authors' grid) or torus:N"),
    dims: int = typer.Option(2, help="grid dimension for torus grids: 1, 2 or 3"),
    step: str = typer.Option("serial", help="serial (re-noise then reconstruct) or ancestral"),
    backend: str = typer.Option("auto", help="auto, dense or fft"),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda"),
    figure: Path | None = typer.Option(None, help="write forward/reverse rows to this PNG/PDF/SVG"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object with the scores"),
) -> None:
    """Run the exact optimal-diffusion simulation of the paper and print its scores."""
    from serialrepro.devices import resolve_device
    from serialrepro.families import get_family
    from serialrepro.grid.kernels import resolve_backend
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.process import get_sampler, simulate
    from serialrepro.grid.space import parse_grid

    # Validate everything before any work.
    levels = parse_sigmas(sigmas)
    family = get_family(noise)
    get_sampler(step)
    space = parse_grid(grid, dims)
    resolve_backend(space, backend)
    if figure is not None:
        check_output_path(figure)
    dev = resolve_device(device)
    data = make_prior(prior, space).to(dev)
    result = simulate(data, family, levels, space, step=step, backend=backend)
    out = result.scores()
    out["prior"] = prior
    if figure is not None:
        from serialrepro.grid.plots import plot_process

        plot_process(result, figure)
        out["figure"] = str(figure)
    if as_json:
        typer.echo(json.dumps(out))
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
    if figure is not None:
        typer.echo(f"figure written to {figure}")


def families_command() -> None:
    """List the noise families with what their level σ means."""
    from serialrepro.families import FAMILIES

    for name, fam in FAMILIES.items():
        typer.echo(f"{name:13s} {fam.description}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
    app.command("families")(families_command)
