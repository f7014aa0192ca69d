"""Data: toys (shapes, seeds), digits (range, disjoint seeded split), MNIST-like sets from
local IDX (plain and gzipped) or npz files, and the message when they are missing."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from serialrepro.data import DATASETS, load_dataset
from serialrepro.data.toys import TOYS
from serialrepro.errors import UserInputError


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toys_are_seeded_2d_point_clouds(name):
    a = load_dataset(name, seed=1, n_train=300, n_test=50)
    b = load_dataset(name, seed=1, n_train=300, n_test=50)
    c = load_dataset(name, seed=2, n_train=300, n_test=50)
    assert a.train.shape == (300, 2) and a.test.shape == (50, 2) and a.train.dtype == torch.float32
    assert torch.equal(a.train, b.train) and not torch.equal(a.train, c.train)
    assert not a.is_image and a.clip_sample is None
    assert 0.3 < a.train.std(0).min() and a.train.abs().max() < 4  # roughly unit spread
    # the training points do not depend on the size of the held-out set
    assert torch.equal(load_dataset(name, seed=1, n_train=300, n_test=999).train, a.train)
    assert not torch.equal(a.test, a.train[:50])


def test_checkerboard_lives_on_black_squares():
    x = load_dataset("checkerboard", n_train=2000, n_test=1).train
    parity = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert torch.all(parity == 0)


def test_digits_range_and_split():
    d = load_dataset("digits", seed=0)
    assert d.train.shape[1:] == (1, 8, 8) and d.train.shape[0] + d.test.shape[0] == 1797
    assert d.train.min() == -1 and d.train.max() == 1 and d.is_image and d.clip_sample == 1.0
    assert d.num_classes == 10
    rows = {tuple(r.tolist()) for r in d.train.flatten(1)}
    overlap = sum(tuple(r.tolist()) in rows for r in d.test.flatten(1))
    assert overlap < 5  # only duplicated images in the source could coincide
    assert not torch.equal(load_dataset("digits", seed=1).test, d.test)


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = {s: rng.integers(0, 256, (n, 28, 28)) for s, n in (("train", 7), ("t10k", 3))}
    labs = {s: rng.integers(0, 10, len(imgs[s])) for s in imgs}
    sfx = ".gz" if gz else ""
    for s in imgs:
        _write_idx(tmp_path / f"{s}-images-idx3-ubyte{sfx}", imgs[s], gz)
        _write_idx(tmp_path / f"{s}-labels-idx1-ubyte{sfx}", labs[s], gz)
    d = load_dataset("mnist", data_dir=tmp_path)
    assert d.train.shape == (7, 1, 28, 28) and d.test.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(d.train[:, 0].numpy(), imgs["train"] / 255 * 2 - 1, atol=1e-6)
    assert d.test_labels.tolist() == labs["t10k"].tolist()


def test_fashion_mnist_from_npz(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "y_train": np.arange(4), "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "y_test": np.arange(2)}
    np.savez(tmp_path / "fashion-mnist.npz", **arrays)
    d = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert d.train.shape == (4, 1, 28, 28) and d.train_labels.tolist() == [0, 1, 2, 3]


def test_missing_and_bad_files_say_what_to_do(tmp_path):
    with pytest.raises(UserInputError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg and "--data-dir" in msg
    assert "https://" in msg
    with pytest.raises(UserInputError, match="--data-dir"):
        load_dataset("mnist")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"nope")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"nope")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"nope")
    with pytest.raises(UserInputError, match="not an IDX file"):
        load_dataset("mnist", data_dir=tmp_path)


def test_unknown_dataset_lists_choices():
    with pytest.raises(UserInputError, match="checkerboard, digits"):
        load_dataset("cifar")
    assert "digits" in DATASETS
