"""The ``serialrepro`` command line.

Each subsystem registers its commands from its own module (``register(app)``), so the
entry point stays a thin index that imports no torch: ``serialrepro --help`` and every
``COMMAND --help`` stay fast.

Every command's values are checked before it runs (:func:`checked_command`, applied to
every registered command): a float option given ``nan`` or ``inf`` and a ``--seed``
outside 0..2^63 − 1 are one-line errors, so no command needs its own check for them.

Errors: click (typer's bundled copy or the standalone package, whichever this typer
uses) runs in standalone mode, so every usage error — unknown option or command, a
missing or badly typed value, a value given to a flag — is handled by the same click
that raised it: its usage line, one error line and exit code 2. Every
:class:`~serialrepro.errors.UserInputError` raised inside a command becomes
``error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import sys

import typer

from serialrepro.budget import MAX_SEED
from serialrepro.errors import UserInputError

#: The one thread setting (``serialrepro --threads N`` or this variable), read by every
#: command and passed on to worker processes.
THREADS_ENV = "SERIALREPRO_THREADS"

app = typer.Typer(
    name="serialrepro",
    help="Diffusion as serial reproduction: exact grid simulations, experiments, "
    "trained models and serial-reproduction chains.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: no rich markup (``A:B:T`` would render as an emoji code), no
    # ``<bool>`` placeholders on flags.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def resolve_threads(value: int | None = None) -> int:
    """Thread count: ``value``, else $SERIALREPRO_THREADS, else $OMP_NUM_THREADS, else 1."""
    if value is not None:
        return int(value)
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
    return 1


def apply_threads(threads: int) -> None:
    """Make torch use ``threads`` intra-op threads, without importing it.

    Before torch's first import the OpenMP variables decide its default (torch reads them
    when it starts, capped at the number of cores); if torch is already loaded (tests,
    embedding) it is set directly. Worker processes inherit the variables.
    """
    os.environ[THREADS_ENV] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


@app.callback()
def _global_options(
    threads: int = typer.Option(
        None, "--threads", min=1, envvar=THREADS_ENV, show_default=False, metavar="N",
        help="torch intra-op threads for this command and each worker process it starts "
        "(default 1, or $OMP_NUM_THREADS when set). Grid distributions are small: on a "
        "2-core machine with any other load, 2 threads ran the engine 10-70x slower than 1 "
        "(benchmarks/README.md).",
    ),
) -> None:
    """Diffusion as serial reproduction: exact grid simulations, experiments, trained models
    and serial-reproduction chains."""
    apply_threads(resolve_threads(threads))


# Modules that define ``register(app: typer.Typer) -> None``.
_COMMAND_MODULES = [
    "serialrepro.grid.cli",
    "serialrepro.grid.schedule_cli",
    "serialrepro.models.cli",
    "serialrepro.experiments.cli",
    "serialrepro.experiments.optimal_cli",
    "serialrepro.chains.cli",
]



def _option_name(param: inspect.Parameter) -> str:
    """The flag a user typed for ``param`` (``--lr``), or its metavar for an argument."""
    decls = getattr(param.default, "param_decls", None) or ()
    flag = next((d for d in decls if d.startswith("--")), None)
    if flag is not None:
        return flag
    return getattr(param.default, "metavar", None) or param.name.upper()


def check_values(fn, values: dict) -> None:
    """Refuse non-finite floats at any option and seeds outside 0..:data:`MAX_SEED`."""
    params = inspect.signature(fn).parameters
    for name, value in values.items():
        param = params.get(name)
        if param is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"{_option_name(param)} {value!r} is not a finite number")
        if name == "seed" and isinstance(value, int) and not 0 <= value <= MAX_SEED:
            raise UserInputError(f"{_option_name(param)} {value} is out of range; seeds lie "
                                 "in 0..2^63 - 1")


def checked_command(fn):
    """``fn`` with :func:`check_values` run on its arguments first (typer reads the
    signature of the original through ``__wrapped__``)."""
    if getattr(fn, "_values_checked", False):
        return fn

    @functools.wraps(fn)
    def run(*args, **kwargs):
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
        check_values(fn, bound.arguments)
        return fn(*args, **kwargs)

    run._values_checked = True
    return run


def _check_all_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.callback is not None:
            info.callback = checked_command(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _check_all_commands(group.typer_instance)


for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)
_check_all_commands(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: click handles usage errors (exit 2), we handle user errors."""
    saved = {k: os.environ.get(k) for k in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        app(args=argv, prog_name="serialrepro", standalone_mode=True)
    except UserInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        # the thread setting belongs to this command (and its workers), not to a caller
        # that runs several commands in one process
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
