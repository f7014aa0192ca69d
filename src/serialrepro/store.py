"""Results on disk that survive a kill, and are not trusted blindly: one file per cell.

A general resumable cache: a *key* (a file-name-safe string, typically a hash of
everything the result depends on) maps to a strict-JSON *record* and, optionally, a set
of named numpy *arrays*. The API, for any experiment that caches cells::

    store = CellStore(root, check=my_check)  # my_check(record) -> None, or why it is wrong
    record = store.read(key)                 # None: not finished, or not trustworthy
    if record is None:                       # (done(key, need_arrays=True) checks arrays)
        record = {"fid": 37.5, ...}
        store.write(key, record, {"samples": array})   # the record gets "key": key
    arrays = store.read_arrays(key)          # None: missing, or not the stored checksum

Every write goes through :mod:`serialrepro.atomic` (a temporary file in the destination
folder, fsynced and moved into place with :func:`os.replace`): a reader (or a resumed
run) sees either the old file or the complete new one, never a torn write. A cell's
arrays (``<key>.npz``) are written *before* its ``<key>.json``, so a finished cell
always has them. Non-finite numbers are written as ``null`` with the reason under
``"undefined"`` (strict JSON).

A cell is finished when its ``<key>.json`` is a valid record (:meth:`CellStore.read`):

* it parses as strict JSON (``NaN``/``Infinity`` refused) and names its own key;
* its ``checksum`` (sha256 of the record's canonical JSON without the checksum) matches,
  so an edited or bit-flipped file is caught;
* the store's ``check(record)`` passes: for grid cells (the default,
  :func:`grid_record_problem`) every score is ``null`` or a finite number in its range
  (:data:`SCORE_RANGES`), so a wrong number is not reused even in a file whose checksum
  was recomputed;
* with arrays, the ``.npz``'s sha256 matches ``arrays_sha256`` (checked by
  :meth:`CellStore.done` with ``need_arrays`` and by :meth:`CellStore.read_arrays`).

Anything else is treated as not finished, so the cell is recomputed; the store warns
once per run, naming how to find the cells it distrusted. Temporary files left in the
folder by a killed run are removed when the store is opened
(:func:`serialrepro.atomic.sweep_temp_files`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable
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


#: what a key may look like: it names the cell's files
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def check_key(key: str) -> str:
    """``key`` itself if it is a safe file name (:data:`KEY_PATTERN`), else ValueError."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key) or ".." in key:
        raise ValueError(f"cell key {key!r} is not a plain file name "
                         "(letters, digits, '_', '.', '-')")
    return key


def grid_record_problem(record: dict) -> str | None:
    """Why a grid cell's record cannot be trusted (a missing or impossible score), or None."""
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


RecordCheck = Callable[[dict], "str | None"]


def problem_with(record: object, key: str, check: RecordCheck | None = grid_record_problem,
                 ) -> str | None:
    """Why ``record`` is not a trustworthy finished cell ``key``, or None if it is."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("key") != key:
        return f"names key {record.get('key')!r}"
    if record.get("checksum") != record_checksum(record):
        return "checksum does not match its content"
    return check(record) if check is not None else None


class CellStore:
    """Finished cells in ``root``: ``<key>.json`` (the record) and, for cells with arrays,
    ``<key>.npz``. ``check(record)`` says why a record that parsed and matched its
    checksum still cannot be trusted (default: the grid cells' score ranges; None: no
    content check)."""

    def __init__(self, root: str | Path, check: RecordCheck | None = grid_record_problem):
        self.root = Path(root)
        self.check = check
        #: key → why its stored file was not trusted in this run (it was recomputed)
        self.rejected: dict[str, str] = {}
        self._warned = False
        atomic.sweep_temp_files(self.root)

    def json_path(self, key: str) -> Path:
        return self.root / f"{check_key(key)}.json"

    def arrays_path(self, key: str) -> Path:
        return self.root / f"{check_key(key)}.npz"

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
        why = problem_with(rec, key, self.check)
        if why is not None:
            self._reject(key, why)
            return None
        return rec

    def done(self, key: str, need_arrays: bool = False) -> bool:
        """Whether ``key`` is finished (and, with ``need_arrays``, has its arrays intact)."""
        rec = self.read(key)
        if rec is None:
            return False
        return not need_arrays or self._arrays_ok(key, rec)

    def _arrays_ok(self, key: str, rec: dict) -> bool:
        path = self.arrays_path(key)
        if not path.is_file():
            return False
        if rec.get("arrays_sha256") != _file_sha256(path):
            self._reject(key, "has arrays whose checksum does not match")
            return False
        return True

    def write(self, key: str, record: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Store a finished cell: arrays first, then the JSON that marks it finished. The
        record gets ``"key": key`` if it has no key (a different key is refused).

        Non-finite numbers are written as ``null`` with the reason under ``"undefined"``
        (strict JSON); the record gets its ``checksum`` (and ``arrays_sha256``)."""
        check_key(key)
        record = {"key": key, **record}
        if record["key"] != key:
            raise ValueError(f"record names key {record['key']!r}, not {key!r}")
        record = json.loads(atomic.dumps_strict(record, nonfinite="null"))
        if arrays:
            atomic.write_npz(self.arrays_path(key), arrays, compressed=True)
            record["arrays_sha256"] = _file_sha256(self.arrays_path(key))
        record["checksum"] = record_checksum(record)
        atomic.write_text(self.json_path(key), json.dumps(record, indent=1, sort_keys=True,
                                                          allow_nan=False))

    def read_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """The cell's arrays, or None when the cell is not finished or its ``.npz`` is
        missing or does not match the record's checksum (read with
        :func:`serialrepro.loaders.load_npz`: no pickles, sizes checked from the headers;
        these files could have been replaced by anyone)."""
        from serialrepro.loaders import load_npz

        rec = self.read(key)
        if rec is None or not self._arrays_ok(key, rec):
            return None
        return load_npz(self.arrays_path(key), "cell arrays")
