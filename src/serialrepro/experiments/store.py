"""Results on disk that survive a kill: atomic files, one per finished cell.

Every write goes to a temporary file in the destination folder and is moved into place
with :func:`os.replace`, which is atomic on POSIX and Windows: a reader (or a resumed
run) sees either the old file or the complete new one, never a torn write. A cell is
finished when its ``<key>.json`` exists and parses; its arrays (``<key>.npz``, when the
experiment keeps distributions) are written *before* the JSON, so a finished cell
always has them.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | Path, writer: Callable[[io.BytesIO], None]) -> None:
    """Let ``writer`` fill a buffer (e.g. ``DataFrame.to_parquet``), then write it atomically."""
    buf = io.BytesIO()
    writer(buf)
    atomic_write_bytes(path, buf.getvalue())


class CellStore:
    """Finished cells in ``root``: ``<key>.json`` (scores and provenance) and, for cells
    that keep their distributions, ``<key>.npz``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def json_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def arrays_path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def read(self, key: str) -> dict | None:
        """The stored record, or None when the cell is not finished (or unreadable, e.g.
        edited by hand: it is then recomputed)."""
        try:
            return json.loads(self.json_path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def done(self, key: str, need_arrays: bool = False) -> bool:
        rec = self.read(key)
        if rec is None or rec.get("key") != key:
            return False
        return not need_arrays or self.arrays_path(key).is_file()

    def write(self, key: str, record: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Store a finished cell: arrays first, then the JSON that marks it finished."""
        if arrays:
            atomic_write_with(self.arrays_path(key),
                              lambda buf: np.savez_compressed(buf, **arrays))
        atomic_write_text(self.json_path(key), json.dumps(record, indent=1, sort_keys=True))

    def read_arrays(self, key: str) -> dict[str, np.ndarray]:
        # allow_pickle=False: these files could have been replaced by anyone
        with np.load(self.arrays_path(key), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
