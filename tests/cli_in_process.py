"""tests/ helper module: the console entry point run in this process (no interpreter start)."""

from __future__ import annotations

import sys


def run_in_process(args, capsys, monkeypatch):
    """``serialrepro ARGS`` through :func:`serialrepro.cli.main` in this process, with
    ``sys.argv`` patched: (exit code as a shell would see it, stdout, stderr)."""
    from serialrepro.cli import main

    monkeypatch.setattr(sys, "argv", ["serialrepro", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
