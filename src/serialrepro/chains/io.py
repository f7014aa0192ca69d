"""Atomic writes: write a temporary file beside the target, then ``os.replace`` it, so an
interrupted run never leaves a half-written table, figure or report behind."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from serialrepro.errors import UserInputError

TABLE_FORMATS = ("csv", "parquet")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in the target's folder, then move it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """A table as CSV or Parquet, chosen by the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return atomic_write(path, lambda p: frame.to_csv(p, index=False))
    if suffix in (".parquet", ".pq"):
        return atomic_write(path, lambda p: frame.to_parquet(p, index=False))
    raise UserInputError(f"table file {str(path)!r} must end in .csv or .parquet")
