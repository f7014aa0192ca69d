"""Image data sets from local files only: scikit-learn's digits, MNIST, Fashion-MNIST.

Images are returned as float32 [N, 1, H, W] tensors scaled to [−1, 1] (DDPM's convention)
with int64 labels. Nothing is ever downloaded: MNIST and Fashion-MNIST are read from IDX
files (gzipped or not) or a single ``.npz`` in a directory the user names; when they are
missing the error says what to download and where to put it.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from serialrepro.errors import UserInputError

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
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserInputError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
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
        with np.load(npz, allow_pickle=False) as f:
            try:
                images, labels = f[f"x_{split}"], f[f"y_{split}"]
            except KeyError:
                raise UserInputError(f"{npz} lacks x_{split}/y_{split} arrays") from None
    else:
        img_path, lab_path = (_find(directory, s) for s in _IDX_FILES[split])
        if img_path is None or lab_path is None:
            raise _missing(name, directory)
        images, labels = _read_idx(img_path), _read_idx(lab_path)
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise UserInputError(f"{name} {split} images have shape {images.shape}, labels"
                             f" {labels.shape}: expected [N, H, W] and [N]")
    x = torch.from_numpy(images.astype(np.float32)) / 255.0 * 2 - 1
    return x[:, None], torch.from_numpy(labels.astype(np.int64))
