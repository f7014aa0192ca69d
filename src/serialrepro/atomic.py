"""Atomic file writes: the one way serialrepro puts a file on disk.

A killed or crashing run must never leave a torn file behind: resumable sweeps (the
experiment cells, fig4 cells, training checkpoints, cached classifiers) decide what is
already done by whether a file exists and parses, so a half-written one would be taken
for a finished result, or break the resume. Every writer here therefore writes a
temporary file in the destination folder (same file system, so the move cannot cross
devices), flushes it to disk with ``fsync`` and moves it into place with
:func:`os.replace`, which is atomic on POSIX and Windows: a reader sees the old file or
the complete new one, never a part. On any exception (KeyboardInterrupt included) the
temporary file is removed and the destination is left as it was.

Temporary files are hidden and end in ``.tmp`` (``.<name>.<random>.tmp``), so a file
left by a hard kill (SIGKILL, power loss) never matches a ``*.json`` / ``*.png`` glob.
Writers that pick a format from the file name are told the format explicitly instead
(matplotlib's ``format=``; ``np.savez`` gets an open file, as it appends ``.npz`` to a
path that lacks it).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serialrepro.errors import UserInputError

if TYPE_CHECKING:  # heavy imports only where the caller already has them
    import numpy as np
    import pandas as pd

#: Table formats :func:`write_table` picks by suffix.
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _create_temp(path: Path) -> Path:
    """A new empty hidden file beside ``path``. Created with mode 0o666 minus the umask,
    like any ``open(path, "w")`` (``tempfile.mkstemp`` would make results private, 0o600)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {str(path)!r}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)  # writable: Windows cannot flush a read-only handle
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path`` (parent folders are
    created), fsync it and move it to ``path``. Returns ``path`` as a :class:`Path`.

    ``tmp`` ends in ``.tmp``: a ``write`` that picks a format from the name must be told
    the format (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8 (newlines written as given, on every platform)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON with a final newline; numpy/torch scalars become floats."""
    return write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """A table without its index, as CSV (full float precision: it round-trips) or
    Parquet, chosen by the file suffix (.csv, .parquet or .pq)."""
    kind = TABLE_SUFFIXES.get(Path(path).suffix.lower())
    if kind == "csv":
        return atomic_write(path, lambda p: frame.to_csv(p, index=False))
    if kind == "parquet":
        return atomic_write(path, lambda p: frame.to_parquet(p, index=False))
    raise UserInputError(f"table file {str(path)!r} must end in .csv or .parquet")


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], *,
              compressed: bool = False) -> Path:
    """Named arrays as ``.npz`` (``np.savez`` or, with ``compressed``,
    ``np.savez_compressed``)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file, not a path: np.savez would append ".npz"
            save(fh, **arrays)

    return atomic_write(path, write)


def torch_save(obj: object, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` (read it back with ``torch.load(weights_only=True)``)."""
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def save_figure(fig, path: str | Path, *, dpi: float) -> Path:
    """``fig.savefig`` to ``path`` in the format its suffix names (``.png``, ``.pdf``,
    ``.svg``, ...), then close the figure (also when saving failed: it is of no further use)."""
    import matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or matplotlib.rcParams["savefig.format"]
    try:
        return atomic_write(path, lambda p: fig.savefig(p, format=fmt, dpi=dpi))
    finally:
        plt.close(fig)
