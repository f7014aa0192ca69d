"""Usage errors through the installed console script: for every command and subcommand, an
unknown option, a missing option or argument, a badly typed value, an unknown command and a
value given to a flag are one short message and exit code 2, never a traceback.

Commands are enumerated from the typer app, so a new command is covered without editing
this file. The script runs in a subprocess exactly as a user runs it (whatever typer/click
versions are installed: typer >= 0.27 bundles its own click, whose exceptions are not
``click.UsageError``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from serialrepro.cli import app

SCRIPT = shutil.which("serialrepro", path=str(Path(sys.executable).parent))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
#: A usage message: click's usage line, its "Try ... for help" line, a blank, the error.
MAX_LINES = 6


def leaf_commands(group=None, prefix=()):
    """(path, click command) for every runnable command of the app, nested groups included."""
    group = group or typer.main.get_command(app)
    out = []
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None):
            out += leaf_commands(cmd, (*prefix, name))
        else:
            out.append(((*prefix, name), cmd))
    return out


def groups(group=None, prefix=()):
    group = group or typer.main.get_command(app)
    out = [(prefix, group)]
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None):
            out += groups(cmd, (*prefix, name))
    return out


def _options(cmd):
    return [p for p in cmd.params if getattr(p, "opts", None) and p.opts[0].startswith("--")
            and p.name != "help"]


def usage_cases():
    """(id, argv) of the usage errors each command must turn into exit code 2."""
    cases = []
    for path, cmd in leaf_commands():
        base = list(path)
        tag = " ".join(path)
        cases.append((f"{tag}: unknown option", [*base, "--nosuch-option", "x"]))
        flags = [p for p in _options(cmd) if getattr(p, "is_flag", False)
                 and not getattr(p, "secondary_opts", None)]
        if flags:
            cases.append((f"{tag}: value given to a flag", [*base, flags[0].opts[0], "true"]))
        typed = [p for p in _options(cmd) if not getattr(p, "is_flag", False)
                 and isinstance(p.default, int | float) and not isinstance(p.default, bool)]
        if typed:
            cases.append((f"{tag}: bad type", [*base, typed[0].opts[0], "abc"]))
            cases.append((f"{tag}: option without its value", [*base, typed[0].opts[0]]))
        if any(p.required for p in cmd.params):
            cases.append((f"{tag}: missing option or argument", base))
    for path, _ in groups():
        cases.append((f"{' '.join(path) or 'top'}: unknown command", [*path, "nosuchcmd"]))
    return cases


CASES = usage_cases()


def test_the_console_script_is_installed():
    assert SCRIPT is not None, f"no serialrepro script beside {sys.executable}"


def test_every_command_is_covered():
    names = {" ".join(p) for p, _ in leaf_commands()}
    assert {"simulate", "families", "train", "sample", "evaluate", "run", "reproduce",
            "chains simulate", "chains analyze"} <= names
    covered = {c[0].split(":")[0] for c in CASES}
    assert names <= covered


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_usage_error_is_one_short_message_exit_2(argv, tmp_path):
    r = subprocess.run([SCRIPT, *argv], capture_output=True, text=True, env=ENV, timeout=120,
                       cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, (argv, r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert 1 <= len(lines) <= MAX_LINES, r.stderr
    # click's usage error, or (where the stray value lands in a positional argument, as in
    # `run --quick true`) the command's own one-line error
    assert lines[-1].startswith(("Error:", "error:")), r.stderr
    assert r.stdout == ""
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("argv,needle", [
    (["simulate", "--nosie", "gaussian"], "No such option: --nosie"),
    (["train"], "Missing option '--run-dir'"),
    (["simulate", "--dims", "abc"], "Invalid value for '--dims'"),
    (["nosuchcmd"], "No such command 'nosuchcmd'"),
    (["simulate", "--json", "true"], "unexpected extra argument"),
    (["--threads", "0", "families"], "Invalid value for '--threads'"),
])
def test_the_issue_cases(argv, needle, tmp_path):
    r = subprocess.run([SCRIPT, *argv], capture_output=True, text=True, env=ENV, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_user_input_error_is_one_line_exit_2(tmp_path):
    r = subprocess.run([SCRIPT, "simulate", "--noise", "pink"], capture_output=True, text=True,
                       env=ENV, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: unknown noise family 'pink'; valid choices:")
