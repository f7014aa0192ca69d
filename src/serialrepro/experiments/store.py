"""Results on disk that survive a kill, and are not trusted blindly: one file per cell.

Every write goes through :mod:`serialrepro.atomic` (a temporary file in the destination
folder, fsynced and moved into place with :func:`os.replace`): a reader (or a resumed
run) sees either the old file or the complete new one, never a torn write. A cell's
arrays (``<key>.npz``, when the experiment keeps distributions) are written *before*
its ``<key>.json``, so a finished cell always has them.

A cell is finished when its ``<key>.json`` is a valid record (:meth:`CellStore.read`):

* it parses as strict JSON (``NaN``/``Infinity`` refused) and names its own key;
* its ``checksum`` (sha256 of the record's canonical JSON without the checksum) matches,
  so an edited or bit-flipped file is caught;
* every score is ``null`` or a finite number in its range (:data:`SCORE_RANGES`), so a
  wrong number is not reused even in a file whose checksum was recomputed;
* with arrays, the ``.npz``'s sha256 matches ``arrays_sha256``.

Anything else is treated as not finished, so the cell is recomputed; the store warns
once per run, naming how to find the cells it distrusted. Temporary files left in the
folder by a killed run are removed when the store is opened
(:func:`serialrepro.atomic.sweep_temp_files`).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np

from serialrepro import atomic

#: (low, high) of each stored score; a little slack for rounding (KL with ε can dip to
#: −1e−12). None is allowed (undefined for T < 2).
SCORE_RANGES = {
    "kl_bits": (-1e-6, math.inf),
    "jsd_bits": (-1e-6, 1.0 + 1e-6),
    "complexity_bits": (-1e-6, math.inf),
    "stationarity": (0.0, math.inf),
}


def _canonical(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def record_checksum(record: dict) -> str:
    """sha256 of ``record`` (without its ``checksum`` field) as canonical JSON."""
    return hashlib.sha256(_canonical(record)).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _refuse_constant(name: str):
    raise ValueError(name)


def problem_with(record: object, key: str) -> str | None:
    """Why ``record`` is not a trustworthy finished cell ``key``, or None if it is."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("key") != key:
        return f"names key {record.get('key')!r}"
    if record.get("checksum") != record_checksum(record):
        return "checksum does not match its content"
    scores = record.get("scores")
    if not isinstance(scores, dict):
        return "has no scores"
    for name, (lo, hi) in SCORE_RANGES.items():
        if name not in scores:
            return f"lacks score {name}"
        v = scores[name]
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return f"score {name} is {v!r}, not a finite number"
        if not lo <= v <= hi:
            return f"score {name} = {v!r} is outside [{lo}, {hi}]"
    return None


class CellStore:
    """Finished cells in ``root``: ``<key>.json`` (scores and provenance) and, for cells
    that keep their distributions, ``<key>.npz``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        #: key → why its stored file was not trusted in this run (it was recomputed)
        self.rejected: dict[str, str] = {}
        self._warned = False
        atomic.sweep_temp_files(self.root)

    def json_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def arrays_path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def _reject(self, key: str, why: str) -> None:
        self.rejected[key] = why
        if not self._warned:
            self._warned = True
            warnings.warn(f"cell file {self.json_path(key)} {why}; it is recomputed (and so "
                          "is every other cell file that fails its check)", stacklevel=3)

    def read(self, key: str) -> dict | None:
        """The stored record, or None when the cell is not finished, unreadable or fails
        its check (it is then recomputed; see the module docstring)."""
        path = self.json_path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            self._reject(key, "cannot be read")
            return None
        try:
            rec = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            self._reject(key, "is not valid JSON")
            return None
        why = problem_with(rec, key)
        if why is not None:
            self._reject(key, why)
            return None
        return rec

    def done(self, key: str, need_arrays: bool = False) -> bool:
        rec = self.read(key)
        if rec is None:
            return False
        if not need_arrays:
            return True
        path = self.arrays_path(key)
        if not path.is_file():
            return False
        if rec.get("arrays_sha256") != _file_sha256(path):
            self._reject(key, "has arrays whose checksum does not match")
            return False
        return True

    def write(self, key: str, record: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Store a finished cell: arrays first, then the JSON that marks it finished.

        Non-finite scores are written as ``null`` with the reason under ``"undefined"``
        (strict JSON); the record gets its ``checksum`` (and ``arrays_sha256``)."""
        record = json.loads(atomic.dumps_strict(record, nonfinite="null"))
        if arrays:
            atomic.write_npz(self.arrays_path(key), arrays, compressed=True)
            record["arrays_sha256"] = _file_sha256(self.arrays_path(key))
        record["checksum"] = record_checksum(record)
        atomic.write_text(self.json_path(key), json.dumps(record, indent=1, sort_keys=True,
                                                          allow_nan=False))

    def read_arrays(self, key: str) -> dict[str, np.ndarray]:
        """The cell's arrays (:func:`serialrepro.loaders.load_npz`: no pickles, sizes
        checked from the headers; these files could have been replaced by anyone)."""
        from serialrepro.loaders import load_npz

        return load_npz(self.arrays_path(key), "cell arrays")
