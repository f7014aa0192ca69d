"""Bad files of every kind, through :mod:`serialrepro.loaders`: one line naming the file."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from serialrepro import budget, loaders
from serialrepro.errors import UserInputError
from serialrepro.experiments.config import parse_config


def refused(fn, *args, match: str = "", **kwargs) -> str:
    with pytest.raises(UserInputError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert match in msg, msg
    return msg


# -- checkpoints ------------------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    return model, path


def test_a_good_checkpoint_loads_and_fits_its_model(checkpoint):
    model, path = checkpoint
    state = loaders.load_checkpoint(path)
    assert loaders.check_state_dict(state, model, "model.pt") is state
    model.load_state_dict(state)


@pytest.mark.parametrize("damage,words", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable"),
    (lambda p: p.write_bytes(os.urandom(2000)), "not a readable"),
    (lambda p: p.write_text("hello"), "not a readable"),
])
def test_bad_checkpoint_files_are_one_line(checkpoint, damage, words):
    _, path = checkpoint
    damage(path)
    assert str(path) in refused(loaders.load_checkpoint, path, match=words)


def test_a_folder_or_missing_checkpoint_is_one_line(tmp_path):
    refused(loaders.load_checkpoint, tmp_path, match="is a folder")
    refused(loaders.load_checkpoint, tmp_path / "none.pt", match="does not exist")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_a_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    refused(loaders.load_checkpoint, path, match="not a readable")


def test_non_finite_weights_and_wrong_shapes_are_refused(tmp_path, checkpoint):
    model, path = checkpoint
    state = model.state_dict()
    torch.save({**state, "weight": torch.full((2, 3), float("nan"))}, path)
    refused(loaders.load_checkpoint, path, match="non-finite values in 'weight.'")
    other = torch.nn.Linear(4, 2).state_dict()
    refused(loaders.check_state_dict, other, model, "m.pt", match="weight has shape (2, 4)")
    refused(loaders.check_state_dict, {"x": torch.zeros(1)}, model, "m.pt", match="missing")
    refused(loaders.check_state_dict, [1, 2], model, "m.pt", match="state dict")


# -- JSON ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,words", [
    ('{"lr": NaN}', "not a JSON number"), ('{"a": 1', "not valid JSON"), ("[1, 2]", "object"),
    ("", "not valid JSON"), ('{"a": Infinity}', "not a JSON number"),
])
def test_bad_run_configs_are_one_line(tmp_path, text, words):
    path = tmp_path / "config.json"
    path.write_text(text)
    refused(loaders.load_json, path, "run config", match=words)


def test_json_that_is_not_text_or_too_large_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_bytes(b"\xff\xfe{")
    refused(loaders.load_json, path, match="not UTF-8")
    path.write_text(json.dumps({"a": "x" * 1000}))
    monkeypatch.setattr(loaders, "MAX_JSON_BYTES", 100)
    refused(loaders.load_json, path, match="the limit is 100")


# -- samples ------------------------------------------------------------------------------

def save_npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def test_good_samples_load(tmp_path):
    path = save_npz(tmp_path / "s.npz", samples=np.ones((5, 2), np.float32))
    assert loaders.load_samples(path).shape == (5, 2)


@pytest.mark.parametrize("arrays,words", [
    ({"samples": np.array([{"a": 1}, None], dtype=object)}, "Python objects"),
    ({"samples": np.zeros((0, 2))}, "zero samples"),
    ({"samples": np.float64(3.0)}, "shape ()"),
    ({"samples": np.array([[1.0, np.nan], [0.0, 1.0]])}, "1 non-finite values"),
    ({"samples": np.array([["a", "b"]])}, "must be numbers"),
    ({"other": np.ones((2, 2))}, "no 'samples' array"),
])
def test_bad_samples_are_one_line(tmp_path, arrays, words):
    path = save_npz(tmp_path / "s.npz", **arrays)
    refused(loaders.load_samples, path, match=words)


@pytest.mark.parametrize("content", [b"just text\n", b"", pickle.dumps({"samples": [1, 2]}),
                                     b"PK\x03\x04" + os.urandom(100)])
def test_files_that_are_not_npz_are_one_line(tmp_path, content):
    path = tmp_path / "s.npz"
    path.write_bytes(content)
    refused(loaders.load_samples, path, match="npz")


def test_an_array_larger_than_the_budget_is_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    with open(path, "wb") as fh:
        np.savez_compressed(fh, samples=np.zeros((1000, 1000)))  # 8 MB, ~8 KB on disk
    monkeypatch.setenv(budget.MEMORY_LIMIT_ENV, "1M")
    refused(loaders.load_samples, path, match="needs about 7.63 MiB")


# -- images -------------------------------------------------------------------------------

def png(path, array):
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def claim_size(path, width, height):
    """Rewrite a PNG's header to claim another size (a decompression bomb's header)."""
    data = bytearray(path.read_bytes())
    ihdr = data[12:16 + 13]
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:16 + 13] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def test_an_image_loads_as_greyscale_in_unit_range(tmp_path):
    path = png(tmp_path / "a.png", [[0, 255], [128, 64]])
    grey = loaders.load_image(path)
    assert grey.shape == (2, 2) and grey.max() == 1.0 and grey.min() == 0.0


def test_a_14000_square_png_is_refused_before_decoding(tmp_path):
    path = png(tmp_path / "bomb.png", np.zeros((8, 8)))
    claim_size(path, 14000, 14000)
    refused(loaders.load_image, path, match="196000000 pixels")  # PIL's own bound
    claim_size(path, 9000, 9000)
    refused(loaders.load_image, path, match="9000×9000")  # ours, below PIL's
    small = png(tmp_path / "small.png", np.zeros((20, 20)))
    refused(loaders.load_image, small, max_pixels=100, match="the limit is 100")


@pytest.mark.parametrize("content", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, b""])
def test_files_that_are_not_images_are_one_line(tmp_path, content):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    refused(loaders.load_image, path, match="not a readable image")


def test_an_all_black_prior_is_refused_at_config_validation(tmp_path):
    black = png(tmp_path / "black.png", np.zeros((16, 16)))
    text = tmp_path / "text.png"
    text.write_text("hello")
    for path, words in ((black, "all black"), (text, "not a readable image"),
                        (tmp_path, "is a folder")):
        data = {"name": "img", "sweeps": [{"T": 2, "prior": f"image:{path}", "grid": "torus:8",
                                           "schedule": {"kind": "linear", "start": 0.01,
                                                        "end": 0.05}}]}
        refused(parse_config, data, match=words)


# -- tables -------------------------------------------------------------------------------

def test_tables_by_suffix_and_bad_tables(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,2\n")
    assert loaders.read_table(csv).shape == (1, 2)
    refused(loaders.read_table, csv, max_bytes=3, match="the limit is 3")
    xlsx = tmp_path / "t.xlsx"
    xlsx.write_text("x")
    refused(loaders.read_table, xlsx, match="must end in")
    pq = tmp_path / "t.parquet"
    pq.write_bytes(os.urandom(300))
    refused(loaders.read_table, pq, match="cannot be read as parquet")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'a,b\n"1,2\n')
    refused(loaders.read_table, bad, match="cannot be read as csv")


# -- output paths -------------------------------------------------------------------------

def test_output_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    from serialrepro import atomic

    f = tmp_path / "f.txt"
    f.write_text("x")
    refused(atomic.check_output_folder, f, match="is not a folder")
    refused(atomic.check_output_folder, f / "sub", match="is a file, not a folder")
    refused(atomic.check_output_file, tmp_path, match="is a folder")
    refused(atomic.check_output_file, f / "x.png", match="is a file, not a folder")
    assert atomic.check_output_file(tmp_path / "new" / "a.png") == tmp_path / "new" / "a.png"
    assert atomic.check_output_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "new").exists() and not (tmp_path / "a").exists()  # checks only


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_refused(tmp_path):
    from serialrepro import atomic

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        refused(atomic.check_output_file, ro / "x.json", match="read-only")
        refused(atomic.check_output_folder, ro / "out", match="read-only")
    finally:
        ro.chmod(0o700)
