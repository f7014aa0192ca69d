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

Temporary files are hidden and end in ``.tmp`` (``.<name>.sr-<8 hex>.tmp``, matched by
:data:`TEMP_PATTERN`), so a file left by a hard kill (SIGKILL, power loss) never matches
a ``*.json`` / ``*.png`` glob. Such leftovers are removed by :func:`sweep_temp_files`,
which the first write into a folder runs once per process (only files of this pattern
older than :data:`TEMP_MAX_AGE_S`, so a concurrent writer's file is left alone).
Writers that pick a format from the file name are told the format explicitly instead
(matplotlib's ``format=``; ``np.savez`` gets an open file, as it appends ``.npz`` to a
path that lacks it).

JSON is strict (:func:`dumps_strict`): ``NaN`` and ``Infinity`` are not JSON and most
readers refuse them, so a non-finite number is refused, or written as ``null`` with
its reason under ``"undefined"``; a value that is undefined for a known reason is
passed as :class:`Undefined` ``(reason)``.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serialrepro.errors import UserInputError

if TYPE_CHECKING:  # heavy imports only where the caller already has them
    import numpy as np
    import pandas as pd

#: Table formats :func:`write_table` picks by suffix.
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: names of this module's temporary files
TEMP_PATTERN = re.compile(r"^\..+\.sr-[0-9a-f]{8}\.tmp$")
#: a temporary file untouched for this long was left by a killed writer
TEMP_MAX_AGE_S = 15 * 60

_swept: set[Path] = set()


def sweep_temp_files(folder: str | Path, older_than_s: float = TEMP_MAX_AGE_S) -> list[Path]:
    """Remove this module's temporary files in ``folder`` (not below it) not modified for
    ``older_than_s`` seconds: what a SIGKILL between create and rename leaves behind.
    Returns the removed paths; a missing folder or a file that vanished is no error."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not TEMP_PATTERN.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and \
                    now - entry.stat(follow_symlinks=False).st_mtime > older_than_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _sweep_once(folder: Path) -> None:
    key = folder.resolve()
    if key not in _swept:
        _swept.add(key)
        sweep_temp_files(folder)


def _create_temp(path: Path) -> Path:
    """A new empty hidden file beside ``path``. Created with mode 0o666 minus the umask,
    like any ``open(path, "w")`` (``tempfile.mkstemp`` would make results private, 0o600)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.sr-{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {str(path)!r}")


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_base(path: Path, base: Path, what: str, verb: str) -> None:
    """``base``, the deepest existing folder above ``path``, must be a folder we may write."""
    if not base.is_dir():
        raise UserInputError(f"{what} {str(path)!r} cannot be {verb}: {str(base)!r} is a "
                             "file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {str(path)!r} cannot be written: {str(base)!r} is "
                             "read-only")


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """Refuse, before anything is computed, a folder that cannot be created or written:
    an existing file, a path below a file, or a read-only place. One line naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{what} {str(path)!r} exists and is not a folder")
    _check_writable_base(path, _first_existing(path), what, "created")
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse, before anything is computed, a file path that cannot be written: an
    existing folder, a path below a file, or a read-only folder. One line naming it."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{what} {str(path)!r} is a folder; give a file name")
    _check_writable_base(path, _first_existing(path.parent), what, "written")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserInputError(f"{what} {str(path)!r} is read-only")
    return path


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
    _sweep_once(path.parent)
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
    """``obj`` as indented JSON with a final newline; numpy/torch scalars become floats.
    Strict JSON (:func:`dumps_strict`): a non-finite number is written as ``null``, its
    key path listed under ``"undefined"``."""
    return write_text(path, dumps_strict(obj, nonfinite="null", indent=2, default=float)
                      + "\n")


class Undefined:
    """A value that has no defined number, with the reason (e.g. a score of a chain too
    short to have one). :func:`dumps_strict` writes it as ``null`` and records
    ``reason`` under the top-level ``"undefined"`` key, by key path."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = str(reason)

    def __repr__(self) -> str:
        return f"Undefined({self.reason!r})"


def _plain(obj: Any, path: str, nonfinite: str, reasons: dict[str, str]) -> Any:
    """``obj`` with numpy/torch scalars as Python numbers, :class:`Undefined` and (with
    ``nonfinite="null"``) non-finite floats as None, their reasons collected."""
    if isinstance(obj, Undefined):
        reasons[path or "(value)"] = obj.reason
        return None
    if isinstance(obj, dict):
        return {k: _plain(v, f"{path}.{k}" if path else str(k), nonfinite, reasons)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v, f"{path}.{i}" if path else str(i), nonfinite, reasons)
                for i, v in enumerate(obj)]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if not isinstance(obj, float):
        item = getattr(obj, "item", None)  # numpy and torch scalars
        if item is None:
            return obj  # json.dumps decides (and refuses what it cannot write)
        obj = item()
        if not isinstance(obj, float):
            return obj
    if math.isfinite(obj):
        return obj
    if nonfinite == "null":
        reasons[path or "(value)"] = f"not a finite number ({obj!r})"
        return None
    raise ValueError(f"refusing to write the non-finite number {obj!r} at "
                     f"{path or '(top level)'} as JSON (NaN/Infinity are not JSON)")


def dumps_strict(obj: Any, *, nonfinite: str = "refuse", **kwargs) -> str:
    """``json.dumps`` that never writes ``NaN``/``Infinity`` (``allow_nan=False``).

    ``nonfinite="refuse"`` raises ``ValueError`` naming the key path of a non-finite
    number; ``"null"`` writes it as ``null``. Either way :class:`Undefined` values are
    ``null``, and when anything became null in a top-level mapping its reasons are added
    under ``"undefined"`` (``{key path: reason}``). ``kwargs`` go to :func:`json.dumps`."""
    if nonfinite not in ("refuse", "null"):
        raise ValueError(f"nonfinite={nonfinite!r}; use 'refuse' or 'null'")
    reasons: dict[str, str] = {}
    plain = _plain(obj, "", nonfinite, reasons)
    if reasons and isinstance(plain, dict):
        plain = {**plain, "undefined": {**plain.get("undefined", {}), **reasons}}
    return json.dumps(plain, allow_nan=False, **kwargs)


def write_json_strict(path: str | Path, obj: Any, *, nonfinite: str = "refuse",
                      indent: int | None = 2, sort_keys: bool = False) -> Path:
    """:func:`dumps_strict` to ``path`` (atomic, final newline)."""
    return write_text(path, dumps_strict(obj, nonfinite=nonfinite, indent=indent,
                                         sort_keys=sort_keys) + "\n")


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
