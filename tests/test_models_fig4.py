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
