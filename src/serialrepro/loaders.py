"""One loader per kind of untrusted file: a bad file is one line naming it, never a
traceback, and never a wrong number.

Every file a user can hand the program (or replace behind its back) is read here:

=================  ==========================  ==============================================
kind               loader                      refused with a one-line UserInputError
=================  ==========================  ==============================================
checkpoint         :func:`load_checkpoint`     missing, a directory, empty, truncated, random
                                               bytes, a pickle that is not plain tensors
                                               (``weights_only=True``), non-finite weights;
                                               :func:`check_state_dict`: wrong keys/shapes
run config (JSON)  :func:`load_json`           missing, too large, not UTF-8, bad JSON,
                                               ``NaN``/``Infinity``, not a mapping
arrays (``.npz``)  :func:`load_npz`            not an npz, pickled/object arrays, an array
                                               larger than the memory budget
samples            :func:`load_samples`        as npz, plus: no such key, a scalar, zero
                                               rows, non-numeric, non-finite values
image              :func:`load_image`          not an image, more pixels than
                                               :data:`MAX_IMAGE_PIXELS` (a decompression
                                               bomb); :func:`load_image_prior`: all black
table              :func:`read_table`          unknown suffix, too large, unparseable
=================  ==========================  ==============================================

Sizes are checked from file headers before anything is decoded, through
:func:`serialrepro.budget.check_memory`. Heavy libraries are imported inside the loaders.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serialrepro.budget import check_memory
from serialrepro.errors import UserInputError

if TYPE_CHECKING:
    import pandas as pd
    import torch

#: largest image (pixels) read; PIL's own bomb check starts at 89 M pixels
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
#: largest JSON file read (run configs and cell records are a few KB)
MAX_JSON_BYTES = 16 << 20
#: largest table read; a bigger one is refused with this limit named
MAX_TABLE_BYTES = 2 << 30


def _name(path: Path) -> str:
    return repr(str(path))


def _existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a readable regular file, else a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{what} {_name(path)} is a folder, not a file")
    if not path.exists():
        raise UserInputError(f"{what} {_name(path)} does not exist")
    if not path.is_file():
        raise UserInputError(f"{what} {_name(path)} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UserInputError(f"{what} {_name(path)} cannot be read: {exc.strerror}") from None
    return path


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, cut after its first sentence when long."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    if len(line) > 100 and ". " in line[:160]:
        line = line[: line.index(". ", 0, 160) + 1]
    return line[:160]


# -- checkpoints ---------------------------------------------------------------------

def load_checkpoint(path: str | Path, map_location: Any = "cpu",
                    what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``: only tensors and plain containers are
    unpickled, so a malicious pickle cannot run code. Every floating tensor in it must
    be finite (a NaN model would sample NaNs and score them)."""
    import torch

    path = _existing_file(path, what)
    if path.stat().st_size == 0:
        raise UserInputError(f"{what} {_name(path)} is empty")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of foreign files before refusing them
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; none is a bug of ours
        raise UserInputError(f"{what} {_name(path)} is not a readable PyTorch checkpoint "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
    bad = next((k for k, t in _tensors(obj) if t.is_floating_point()
                and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        raise UserInputError(f"{what} {_name(path)} holds non-finite values in {bad!r}")
    return obj


def _tensors(obj: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [(prefix or "(tensor)", obj)]
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _tensors(v, f"{prefix}{k}.")]
    if isinstance(obj, list | tuple):
        return [x for i, v in enumerate(obj) for x in _tensors(v, f"{prefix}{i}.")]
    return []


def check_state_dict(state: Any, model: torch.nn.Module, source: str) -> dict:
    """Refuse a state dict whose keys or tensor shapes differ from ``model``'s (a
    checkpoint of another architecture or data set), naming the first difference."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UserInputError(f"{source} does not hold a model state dict (name → tensor)")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}"] if extra else [])
        raise UserInputError(f"{source} does not fit this model: " + "; ".join(parts))
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise UserInputError(f"{source} does not fit this model: {k} has shape "
                                 f"{tuple(state[k].shape)}, the model {tuple(v.shape)}")
    return state


# -- JSON ----------------------------------------------------------------------------

def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_json(path: str | Path, what: str = "JSON file", mapping: bool = True) -> Any:
    """Strict JSON (``NaN``/``Infinity`` refused, at most :data:`MAX_JSON_BYTES`);
    with ``mapping`` the top level must be an object."""
    path = _existing_file(path, what)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise UserInputError(f"{what} {_name(path)} is {size} bytes; the limit is "
                             f"{MAX_JSON_BYTES}")
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise UserInputError(f"{what} {_name(path)} is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise UserInputError(f"{what} {_name(path)} is not valid JSON: "
                             f"{_first_line(exc)}") from None
    if mapping and not isinstance(obj, dict):
        raise UserInputError(f"{what} {_name(path)} must hold a JSON object "
                             f"(got {type(obj).__name__})")
    return obj


# -- arrays --------------------------------------------------------------------------

def _npz_member_bytes(zf, member: str) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npformat

    with zf.open(member) as fh:
        version = npformat.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(fh)
        else:
            shape, _, dtype = npformat.read_array_header_2_0(fh)
    return tuple(shape), np.dtype(dtype)


def load_npz(path: str | Path, what: str = "arrays file",
             keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (``allow_pickle=False``): each array's size is read
    from its header and checked against the memory budget before it is decoded."""
    import zipfile

    path = _existing_file(path, what)
    if not zipfile.is_zipfile(path):
        raise UserInputError(f"{what} {_name(path)} is not an .npz archive")
    try:
        with zipfile.ZipFile(path) as zf:
            members = {m.removesuffix(".npy"): m for m in zf.namelist() if m.endswith(".npy")}
            wanted = list(members) if keys is None else [k for k in keys if k in members]
            for k in wanted:
                shape, dtype = _npz_member_bytes(zf, members[k])
                if dtype.hasobject:
                    raise UserInputError(f"{what} {_name(path)}: array {k!r} holds Python "
                                         "objects; only numeric arrays are read")
                check_memory(f"{what} {_name(path)}, array {k!r} of shape {shape}",
                             math.prod(shape) * dtype.itemsize, "use a smaller file")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in wanted}
    except UserInputError:
        raise
    except Exception as exc:  # a corrupt archive: zipfile, zlib and numpy raise many types
        raise UserInputError(f"{what} {_name(path)} is not a readable .npz archive "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None


def check_samples(x: np.ndarray, source: str, min_dims: int = 2) -> np.ndarray:
    """Refuse arrays that are not a finite numeric batch ``[n ≥ 1, ...]``."""
    if x.ndim < min_dims:
        raise UserInputError(f"{source} has shape {x.shape}; samples need {min_dims} or more "
                             "dimensions (rows first)")
    if x.shape[0] == 0:
        raise UserInputError(f"{source} has zero samples")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise UserInputError(f"{source} has dtype {x.dtype}; samples must be numbers")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.argwhere(bad)[0][0])
            raise UserInputError(f"{source} holds {int(bad.sum())} non-finite values "
                                 f"(NaN or infinity), first in sample {first}")
    return x


def load_samples(path: str | Path, key: str = "samples", min_dims: int = 2) -> np.ndarray:
    """The ``key`` array of a samples ``.npz``: numeric, finite, at least one row."""
    arrays = load_npz(path, "samples file", (key,))
    if key not in arrays:
        raise UserInputError(f"samples file {_name(Path(path))} has no {key!r} array")
    return check_samples(arrays[key], f"samples file {_name(Path(path))}", min_dims)


# -- images --------------------------------------------------------------------------

def load_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A greyscale image as float64 in [0, 1], shape [height, width]. The pixel count is
    read from the header and refused above ``max_pixels`` before decoding."""
    from PIL import Image

    path = _existing_file(path, "image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise UserInputError(f"image file {_name(path)} is {w}×{h} = {w * h} "
                                         f"pixels; the limit is {max_pixels}")
                grey = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except UserInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserInputError(f"image file {_name(path)} is refused as a decompression bomb: "
                             f"{_first_line(exc)}") from None
    except Exception as exc:  # PIL raises many types for a bad or truncated file
        raise UserInputError(f"image file {_name(path)} is not a readable image (PNG, JPEG, "
                             f"…): {type(exc).__name__}") from None
    if grey.size == 0:
        raise UserInputError(f"image file {_name(path)} has no pixels")
    return grey


def load_image_prior(path: str | Path) -> np.ndarray:
    """An image used as a density (brightness is mass): as :func:`load_image`, and
    refused when it has no mass (all black)."""
    grey = load_image(path)
    if not grey.sum() > 0:
        raise UserInputError(f"image {str(path)!r} has no mass (all black); brightness is "
                             "mass, so use an image with light regions")
    return grey


# -- tables --------------------------------------------------------------------------

TABLE_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def read_table(path: str | Path, max_bytes: int = MAX_TABLE_BYTES, **read_kwargs
               ) -> pd.DataFrame:
    """A CSV or Parquet table by suffix (``read_kwargs`` go to pandas), at most
    ``max_bytes`` on disk and within the memory budget for parsing it."""
    import pandas as pd

    path = _existing_file(path, "table file")
    kind = TABLE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise UserInputError(f"table file {_name(path)} must end in "
                             f"{', '.join(TABLE_KINDS)}")
    size = path.stat().st_size
    if size > max_bytes:
        raise UserInputError(f"table file {_name(path)} is {size} bytes; the limit is "
                             f"{max_bytes}")
    # pandas holds a table in several times its file size while parsing
    check_memory(f"table file {_name(path)} ({size} bytes)", 8 * size, "use a smaller table")
    try:
        if kind == "csv":
            return pd.read_csv(path, **read_kwargs)
        return pd.read_parquet(path, **read_kwargs)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise UserInputError(f"table file {_name(path)} cannot be read as {kind} "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
