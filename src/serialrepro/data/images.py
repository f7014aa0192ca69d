"""Image data sets from local files only: scikit-learn's digits, MNIST, Fashion-MNIST.

Images are returned as float32 [N, 1, H, W] tensors scaled to [−1, 1] (DDPM's convention)
with int64 labels. Nothing is ever downloaded: MNIST and Fashion-MNIST are read from IDX
files (gzipped or not) or a single ``.npz`` in a directory the user names; when they are
missing the error says what to download and where to put it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from serialrepro.errors import UserInputError

#: largest IDX file read (MNIST's training images are 47 MB)
MAX_IDX_BYTES = 256 << 20
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SOURCES = {
    "mnist": ("mnist.npz", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("fashion-mnist.npz",
                      "https://github.com/zalandoresearch/fashion-mnist (data/fashion)"),
}


def load_digits_images() -> tuple[Tensor, Tensor]:
    """scikit-learn's 8×8 digits (1797 images, ships with scikit-learn), in [−1, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)) / 16.0 * 2 - 1
    return x[:, None], torch.from_numpy(d.target.astype(np.int64))


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            # an IDX file of the MNIST family is at most 47 MB; read one byte past the
            # bound so a larger (or a gzip bomb) is refused, not decoded
            data = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserInputError(f"{path} cannot be read: {type(exc).__name__}") from None
    if len(data) > MAX_IDX_BYTES:
        raise UserInputError(f"{path} holds more than {MAX_IDX_BYTES} bytes; MNIST-like "
                             "IDX files are under 50 MB")
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserInputError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise UserInputError(f"{path} is truncated inside its header")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserInputError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def _missing(name: str, directory: Path) -> UserInputError:
    npz, url = _SOURCES[name]
    files = ", ".join(f"{s}.gz" for pair in _IDX_FILES.values() for s in pair)
    return UserInputError(
        f"{name} files not found in {directory}: download {files} from {url} (or a {npz} with"
        f" x_train, y_train, x_test, y_test) and put them in {directory}, then pass"
        f" --data-dir {directory}"
    )


def load_mnist_like(name: str, data_dir: str | Path, split: str) -> tuple[Tensor, Tensor]:
    """MNIST or Fashion-MNIST ``split`` ("train"/"test") from local IDX or npz files."""
    if name not in _SOURCES:
        raise UserInputError(f"unknown IDX data set {name!r}; valid: {', '.join(_SOURCES)}")
    directory = Path(data_dir).expanduser()
    npz = directory / _SOURCES[name][0]
    if npz.is_file():
        from serialrepro.loaders import load_npz

        arrays = load_npz(npz, f"{name} file", (f"x_{split}", f"y_{split}"))
        if len(arrays) != 2:
            raise UserInputError(f"{npz} lacks x_{split}/y_{split} arrays")
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    else:
        img_path, lab_path = (_find(directory, s) for s in _IDX_FILES[split])
        if img_path is None or lab_path is None:
            raise _missing(name, directory)
        images, labels = _read_idx(img_path), _read_idx(lab_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0] \
            or images.shape[0] == 0:
        raise UserInputError(f"{name} {split} images have shape {images.shape}, labels"
                             f" {labels.shape}: expected [N, H, W] and [N]")
    if not (np.issubdtype(images.dtype, np.number) and np.issubdtype(labels.dtype, np.integer)):
        raise UserInputError(f"{name} {split} arrays have dtypes {images.dtype} and "
                             f"{labels.dtype}: expected numbers and integer labels")
    if not np.isfinite(images).all():
        raise UserInputError(f"{name} {split} images hold non-finite values")
    x = torch.from_numpy(images.astype(np.float32)) / 255.0 * 2 - 1
    return x[:, None], torch.from_numpy(labels.astype(np.int64))
