"""serialrepro.atomic: files appear whole or not at all, in the format their name says."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from serialrepro import atomic
from serialrepro.errors import UserInputError


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "new" / "sub" / "a.txt"  # parent folders are created
    assert atomic.write_text(path, "old") == path
    atomic.write_text(path, "new ρ\n")
    assert path.read_bytes() == "new ρ\n".encode()
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "cell.json"
    atomic.write_json(path, {"done": 1})
    seen = []

    def half_write(tmp):
        seen.append(tmp)
        tmp.write_text('{"do')  # a torn file, then the run dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(path, half_write)
    assert json.loads(path.read_text()) == {"done": 1}
    assert seen and not seen[0].exists()
    # a temporary left by a hard kill would be hidden and never look like a result file
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".cell.json.")
    assert seen[0].suffix == ".tmp"
    assert [p.name for p in tmp_path.iterdir()] == ["cell.json"]


def test_files_get_the_usual_permissions_not_private_temp_ones(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic.write_bytes(tmp_path / "x.bin", b"\0\1")
    finally:
        os.umask(umask)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_ends_in_a_newline_and_turns_numpy_scalars_into_floats(tmp_path):
    path = atomic.write_json(tmp_path / "s.json", {"kl": np.float32(0.5)})
    assert path.read_text().endswith("}\n")
    assert json.loads(path.read_text()) == {"kl": 0.5}


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.PQ"])
def test_tables_round_trip_in_the_format_of_their_suffix(tmp_path, name):
    frame = pd.DataFrame({"T": [1, 2], "kl": [0.1 + 0.2, 1 / 3]})
    path = atomic.write_table(frame, tmp_path / name)
    if path.suffix == ".csv":
        back = pd.read_csv(path)
    else:
        back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, frame)  # exact: CSV keeps full precision


def test_a_table_with_another_suffix_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="must end in .csv or .parquet"):
        atomic.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.xlsx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_lands_at_the_exact_path(tmp_path, compressed):
    path = atomic.write_npz(tmp_path / "s.npz", {"x": np.arange(3.0)}, compressed=compressed)
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["x"], np.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


def test_torch_save_round_trips_with_weights_only(tmp_path):
    obj = {"w": torch.arange(4.0), "step": 3}
    path = atomic.torch_save(obj, tmp_path / "ck.pt")
    back = torch.load(path, weights_only=True)
    assert back["step"] == 3 and torch.equal(back["w"], obj["w"])


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                           (".svg", b"<?xml")])
def test_figures_are_written_in_the_format_of_their_suffix_and_closed(tmp_path, suffix, magic):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = atomic.save_figure(fig, tmp_path / f"f{suffix}", dpi=50)
    assert path.read_bytes().startswith(magic)
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
