"""``models.fig4``: which cached cells are trusted on a rerun."""

from __future__ import annotations

import json

import pytest
import torch

from serialrepro.models.fig4 import _noise_floor, _read_cell, _trained_steps

ROW = {"dataset": "digits", "family": "gaussian", "sampler": "ddpm", "stride": 2,
       "steps": 500, "fid": 2.1, "kid": 0.01, "kid_std": 1e-7, "n_samples": 539,
       "n_real": 539, "warning": ""}


@pytest.mark.parametrize("text,trusted", [
    (json.dumps(ROW), True),
    (json.dumps(ROW)[:40], False),                                  # torn by a kill
    (json.dumps({**ROW, "fid": "2.1"}), False),                     # edited to text
    (json.dumps(ROW).replace('"fid": 2.1', '"fid": NaN'), False),   # bare NaN
    (json.dumps({k: v for k, v in ROW.items() if k != "kid"}), False),
    (json.dumps({**ROW, "steps": True}), False),
    ("", False),
    ("[1, 2]", False),
])
def test_a_cell_is_reused_only_when_it_holds_finite_numbers(tmp_path, text, trusted):
    cell = tmp_path / "ddpm-k02.json"
    cell.write_text(text)
    assert (_read_cell(cell) == ROW) if trusted else (_read_cell(cell) is None)
    assert _read_cell(tmp_path / "missing.json") is None


def test_a_bad_noise_floor_cache_is_recomputed(tmp_path):
    class Evaluator:
        calls = 0

        def __call__(self, x):
            Evaluator.calls += 1
            return type("R", (), {"fid": 1.5, "kid": 0.0, "n_fake": len(x)})()

    path = tmp_path / "floor.json"
    path.write_text('{"fid": NaN}')
    assert _noise_floor(path, Evaluator(), torch.zeros(10, 1, 8, 8), 5, 0) == 1.5
    assert Evaluator.calls == 1 and json.loads(path.read_text())["fid"] == 1.5
    assert _noise_floor(path, Evaluator(), torch.zeros(10, 1, 8, 8), 5, 0) == 1.5
    assert Evaluator.calls == 1  # the good cache is reused


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
    cell = tmp_path / "x0-renoise-k02.json"
    cell.write_text(json.dumps({**ROW, **ident}))
    assert _read_cell(cell, ident) == {**ROW, **ident}
    for change in ({"sampler": "reproduction"}, {"model": "diffusers:unet"},
                   {"fid_features": "inception"}, {"steps": 50}):
        cell.write_text(json.dumps({**ROW, **ident, **change}))
        assert _read_cell(cell, ident) is None


def test_presets_key_the_x0_renoise_curve_by_its_name():
    from serialrepro.models.fig4 import PRESETS, sampler_variant

    entries = [v for p in PRESETS.values() for vs in p.samplers.values() for v in vs]
    assert "reproduction" not in entries and "x0-renoise" in entries
    assert all("serial" in p.samplers["gaussian"] for p in PRESETS.values())
    assert sampler_variant("x0-renoise") == ("x0-renoise", "recompute")


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
