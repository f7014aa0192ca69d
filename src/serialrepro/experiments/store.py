"""Results on disk that survive a kill: atomic files, one per finished cell.

Every write goes through :mod:`serialrepro.atomic` (a temporary file in the destination
folder, fsynced and moved into place with :func:`os.replace`): a reader (or a resumed
run) sees either the old file or the complete new one, never a torn write. A cell is
finished when its ``<key>.json`` exists and parses; its arrays (``<key>.npz``, when the
experiment keeps distributions) are written *before* the JSON, so a finished cell
always has them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serialrepro import atomic


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
            atomic.write_npz(self.arrays_path(key), arrays, compressed=True)
        atomic.write_text(self.json_path(key), json.dumps(record, indent=1, sort_keys=True))

    def read_arrays(self, key: str) -> dict[str, np.ndarray]:
        # allow_pickle=False: these files could have been replaced by anyone
        with np.load(self.arrays_path(key), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
