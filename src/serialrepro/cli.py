"""The ``serialrepro`` command line.

Each subsystem registers its commands from its own module (``register(app)``), so the
entry point stays a thin index. Every :class:`~serialrepro.errors.UserInputError`
becomes a one-line message on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from serialrepro.errors import UserInputError

app = typer.Typer(
    name="serialrepro",
    help="Diffusion as serial reproduction: exact grid simulations, experiments, "
    "trained models and serial-reproduction chains.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    threads: int = typer.Option(
        None, "--threads", min=1, envvar="SERIALREPRO_THREADS",
        help="torch intra-op threads (default 1, or OMP_NUM_THREADS when set). Grid "
        "distributions are small: on a 2-core machine with any other load, 2 threads ran "
        "the engine 10-70× slower than 1 (benchmarks/README.md).",
    ),
) -> None:
    """Set torch's thread count before any command runs."""
    import os

    import torch

    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else 1
    torch.set_num_threads(threads)


# Modules that define ``register(app: typer.Typer) -> None``.
_COMMAND_MODULES = [
    "serialrepro.grid.cli",
    "serialrepro.models.cli",
    "serialrepro.experiments.cli",
    "serialrepro.chains.cli",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into exit code 2."""
    try:
        app(standalone_mode=False)
    except UserInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.UsageError):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
