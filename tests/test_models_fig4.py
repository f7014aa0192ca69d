"""``models.fig4``: which cached cells are trusted on a rerun."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from serialrepro.models.fig4 import (
    _noise_floor,
    _read_cell,
    _trained_steps,
    cell_problem,
    floor_problem,
)
from serialrepro.store import CellStore, record_checksum

ROW = {"dataset": "digits", "family": "gaussian", "sampler": "ddpm", "stride": 2,
       "steps": 500, "fid": 2.1, "kid": 0.01, "kid_std": 1e-7, "n_samples": 539,
       "n_real": 539, "warning": ""}


def _stored(tmp_path, row, key="ddpm-k02"):
    store = CellStore(tmp_path / "cells", check=cell_problem)
    store.write(key, row, {"samples": np.zeros((2, 1, 4, 4), np.float32)})
    return store


def _resealed(store, key, record):
    """Write ``record`` as cell ``key`` with a valid checksum (an edit that passes the
    store's integrity check, so only the content check can catch it)."""
    record = {k: v for k, v in record.items() if k != "checksum"}
    record["checksum"] = record_checksum(record)
    store.json_path(key).write_text(json.dumps(record))


def test_a_finished_cell_is_reused_with_its_sample_grid(tmp_path):
    store = _stored(tmp_path, ROW)
    fresh = CellStore(tmp_path / "cells", check=cell_problem)
    row = _read_cell(fresh, "ddpm-k02")
    assert {k: row[k] for k in ROW} == ROW
    assert fresh.read_arrays("ddpm-k02")["samples"].shape == (2, 1, 4, 4)
    assert _read_cell(store, "missing") is None


@pytest.mark.parametrize("damage", [
    lambda text: text[:40],                                    # torn by a kill
    lambda text: text.replace('"fid": 2.1', '"fid": NaN'),     # bare NaN
    lambda text: text.replace('"fid": 2.1', '"fid": 3.1'),     # edited: checksum fails
    lambda text: "",
    lambda text: "[1, 2]",
])
def test_a_damaged_cell_is_recomputed(tmp_path, damage):
    store = _stored(tmp_path, ROW)
    path = store.json_path("ddpm-k02")
    path.write_text(damage(json.dumps(json.loads(path.read_text()))))
    with pytest.warns(UserWarning, match="recomputed"):
        assert _read_cell(CellStore(tmp_path / "cells", check=cell_problem), "ddpm-k02") is None


@pytest.mark.parametrize("change", [{"fid": "2.1"}, {"steps": True}, {"kid": None},
                                    {"warning": 3}])
def test_a_resealed_cell_with_a_wrong_number_is_recomputed(tmp_path, change):
    """Even with a recomputed checksum, a number that is not a finite number (or a
    warning that is not text) is not reused."""
    store = _stored(tmp_path, ROW)
    rec = json.loads(store.json_path("ddpm-k02").read_text())
    _resealed(store, "ddpm-k02", {**rec, **change})
    with pytest.warns(UserWarning, match="recomputed"):
        assert _read_cell(CellStore(tmp_path / "cells", check=cell_problem), "ddpm-k02") is None


def test_a_tampered_sample_grid_is_not_drawn(tmp_path):
    store = _stored(tmp_path, ROW)
    store.arrays_path("ddpm-k02").write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="recomputed"):
        assert CellStore(tmp_path / "cells", check=cell_problem).read_arrays("ddpm-k02") is None


def test_the_noise_floor_is_recomputed_unless_cached_for_this_n(tmp_path):
    class Evaluator:
        calls = 0

        def __call__(self, x):
            Evaluator.calls += 1
            return type("R", (), {"fid": 1.5, "kid": 0.0, "n_fake": len(x)})()

    store = CellStore(tmp_path, check=floor_problem)
    assert _noise_floor(store, "floor", Evaluator(), torch.zeros(10, 1, 8, 8), 5, 0) == 1.5
    assert Evaluator.calls == 1 and store.read("floor")["fid"] == 1.5
    assert _noise_floor(store, "floor", Evaluator(), torch.zeros(10, 1, 8, 8), 5, 0) == 1.5
    assert Evaluator.calls == 1  # the good cache is reused
    assert _noise_floor(store, "floor", Evaluator(), torch.zeros(10, 1, 8, 8), 7, 0) == 1.5
    assert Evaluator.calls == 2  # another sample count is another floor
    _resealed(store, "floor", {**store.read("floor"), "fid": None})
    with pytest.warns(UserWarning, match="recomputed"):
        _noise_floor(CellStore(tmp_path, check=floor_problem), "floor", Evaluator(),
                     torch.zeros(10, 1, 8, 8), 7, 0)
    assert Evaluator.calls == 3


def test_a_checkpoint_without_a_step_is_one_line(tmp_path):
    from serialrepro.errors import UserInputError
    from serialrepro.models.training import CHECKPOINT_FILE

    assert _trained_steps(tmp_path) == 0
    torch.save({"model": {}}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(UserInputError, match="has no training step"):
        _trained_steps(tmp_path)
    torch.save({"step": 7}, tmp_path / CHECKPOINT_FILE)
    assert _trained_steps(tmp_path) == 7


def test_cells_naming_another_cell_are_not_read(tmp_path):
    """A cell file is reused only for the cell it names: an old ``reproduction`` record (the
    x0-renoise curve's former key), another model or other FID features are recomputed."""
    ident = {"dataset": "digits", "family": "gaussian", "sampler": "x0-renoise", "stride": 2,
             "steps": 500, "model": "serialrepro", "fid_features": "classifier"}
    store = _stored(tmp_path, {**ROW, **ident}, key="x0-renoise-k02")
    assert {k: v for k, v in _read_cell(store, "x0-renoise-k02", ident).items()
            if k in ROW or k in ident} == {**ROW, **ident}
    for change in ({"sampler": "reproduction"}, {"model": "diffusers:unet"},
                   {"fid_features": "inception"}, {"steps": 50}):
        store.write("x0-renoise-k02", {**ROW, **ident, **change})
        assert _read_cell(store, "x0-renoise-k02", ident) is None


def test_presets_key_the_x0_renoise_curve_by_its_name():
    from serialrepro.models.fig4 import PRESETS, sampler_variant

    entries = [v for p in PRESETS.values() for vs in p.samplers.values() for v in vs]
    assert "reproduction" not in entries and "x0-renoise" in entries
    assert all("serial" in p.samplers["gaussian"] for p in PRESETS.values())
    assert sampler_variant("x0-renoise") == ("x0-renoise", "recompute")


def test_every_preset_entry_names_a_registered_sampler():
    """Figure 4 runs every entry of its preset (it does not skip unknown samplers), so each
    must resolve in the sampler registry."""
    from serialrepro.models.fig4 import PRESETS, sampler_variant
    from serialrepro.models.samplers import get_sampler

    for preset in PRESETS.values():
        for entries in preset.samplers.values():
            for entry in entries:
                get_sampler(sampler_variant(entry)[0])


def _table(serial_fids, ddpm_fids, steps=(50, 100, 200, 500, 1000)):
    import pandas as pd

    return pd.DataFrame(
        [{"dataset": "digits", "family": "gaussian", "sampler": smp, "steps": s, "fid": f}
         for smp, fids in (("serial", serial_fids), ("ddpm", ddpm_fids))
         for s, f in zip(steps, fids, strict=True)])


def test_serial_notes_say_whether_the_paper_step_improves_and_tracks_ddpm():
    from serialrepro.models.fig4 import serial_step_notes

    improving = serial_step_notes(_table([40, 20, 10, 6, 5], [20, 10, 5, 3, 2.5]))
    assert len(improving) == 1
    line = improving[0]
    assert "improves with more steps, as the grid's does" in line
    assert "It tracks DDPM on the same model" in line and "+1.00" in line
    assert "its FID is 2× DDPM's" in line
    assert "the grid's exact serial step improves with more steps" in line
    flat = serial_step_notes(_table([6, 5, 7, 6, 5.5], [20, 10, 5, 3, 2.5]))[0]
    assert "does not improve with more steps, unlike the grid's" in flat
    assert "does not track DDPM" in flat
    worse = serial_step_notes(_table([5, 6, 10, 20, 40], [20, 10, 5, 3, 2.5]))[0]
    assert "does not improve" in worse and "-1.00" in worse
