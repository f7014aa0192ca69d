"""Data sets for trained models: 2-D toys, digits, MNIST and Fashion-MNIST (local files).

:func:`load_dataset` returns a :class:`Dataset` with a train and a held-out split, drawn
reproducibly from a seed; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from serialrepro.data.images import load_digits_images, load_mnist_like
from serialrepro.data.toys import TOYS
from serialrepro.errors import UserInputError, unknown_name

IMAGE_SETS = ("digits", "mnist", "fashion-mnist")
DATASETS = (*TOYS, *IMAGE_SETS)
_TEST_STREAM = 2**31  # seed offset of the toys' held-out stream


@dataclass
class Dataset:
    """Train and held-out tensors (images in [−1, 1]) with labels when the set has them."""

    name: str
    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    @property
    def is_image(self) -> bool:
        return self.train.ndim == 4

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def clip_sample(self) -> float | None:
        """Images live in [−1, 1], so x̂_0 may be clipped there; toys are unbounded."""
        return 1.0 if self.is_image else None

    @property
    def num_classes(self) -> int | None:
        return None if self.train_labels is None else int(self.train_labels.max()) + 1


def load_dataset(name: str, seed: int = 0, n_train: int = 20000, n_test: int = 5000,
                 data_dir: str | Path | None = None, test_fraction: float = 0.3) -> Dataset:
    """Load a data set by name.

    Toys draw ``n_train`` points from ``seed`` and ``n_test`` from an independent stream;
    digits is split at random (``test_fraction`` held out, seeded); MNIST-like sets use
    their official splits and need ``data_dir``.
    """
    if name in TOYS:
        # separate streams, so the training points do not depend on how many test points
        # are asked for (evaluation may want more than training held out)
        train = TOYS[name](n_train, torch.Generator().manual_seed(seed))
        test = TOYS[name](n_test, torch.Generator().manual_seed(seed + _TEST_STREAM))
        return Dataset(name, train, test)
    if name == "digits":
        x, y = load_digits_images()
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        n_te = int(round(test_fraction * x.shape[0]))
        te, tr = perm[:n_te], perm[n_te:]
        return Dataset(name, x[tr], x[te], y[tr], y[te])
    if name in ("mnist", "fashion-mnist"):
        if data_dir is None:
            raise UserInputError(f"{name} is read from local files: pass --data-dir DIR")
        xtr, ytr = load_mnist_like(name, data_dir, "train")
        xte, yte = load_mnist_like(name, data_dir, "test")
        return Dataset(name, xtr, xte, ytr, yte)
    raise unknown_name("data set", name, DATASETS)
