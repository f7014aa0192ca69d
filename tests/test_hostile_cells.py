"""Corrupted, tampered and NaN cell files are recomputed, never reused; strict JSON;
temporary files left by a kill are swept."""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest

from serialrepro import atomic
from serialrepro.experiments.config import expand, parse_config
from serialrepro.experiments.runner import run_cells
from serialrepro.store import CellStore, record_checksum

CONFIG = {"name": "tamper", "keep_distributions": True, "sweeps": [{
    "T": [2, 3], "schedule": {"kind": "linear", "start": 0.02, "end": 0.05},
    "grid": "torus:8"}]}


@pytest.fixture
def finished(tmp_path):
    cells = expand(parse_config(CONFIG))
    store = CellStore(tmp_path / "cells")
    run_cells(cells, store, progress=False)
    truth = {c.key: json.loads(store.json_path(c.key).read_text())["scores"] for c in cells}
    return cells, tmp_path / "cells", truth


def rerun(cells, root):
    store = CellStore(root)
    with pytest.warns(UserWarning, match="recomputed") as caught:
        stats = run_cells(cells, store, progress=False)
    assert len(caught) == 1  # one warning per run, however many cells were bad
    return store, stats


def edit(path, change):
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec))


def test_an_edited_score_fails_its_checksum_and_is_recomputed(finished):
    cells, root, truth = finished
    key = cells[0].key
    edit(root / f"{key}.json", lambda r: r["scores"].update(kl_bits=0.0))
    store, stats = rerun(cells, root)
    assert stats.computed == 1 and "checksum" in store.rejected[key]
    assert store.read(key)["scores"] == truth[key]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_score_is_not_json_and_is_recomputed(finished, value):
    cells, root, truth = finished
    path = root / f"{cells[1].key}.json"
    text = path.read_text()
    kl = json.loads(text)["scores"]["kl_bits"]
    path.write_text(text.replace(json.dumps(kl), value, 1))
    store, stats = rerun(cells, root)
    assert stats.computed == 1 and store.read(cells[1].key)["scores"] == truth[cells[1].key]


@pytest.mark.parametrize("field,value", [("jsd_bits", 5.0), ("kl_bits", -3.0),
                                         ("stationarity", "0.1"), ("kl_bits", True)])
def test_an_impossible_score_is_refused_even_with_a_matching_checksum(finished, field, value):
    cells, root, _ = finished

    def forge(rec):
        rec["scores"][field] = value
        rec["checksum"] = record_checksum(rec)

    edit(root / f"{cells[0].key}.json", forge)
    store, stats = rerun(cells, root)
    assert stats.computed == 1 and field in store.rejected[cells[0].key]


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:40]),  # torn by hand
    lambda p: p.write_bytes(b"\x00\xff" * 30),  # not text
    lambda p: p.write_text("[1, 2]"),  # not a record
    lambda p: edit(p, lambda r: r.pop("checksum")),  # old format or stripped
    lambda p: edit(p, lambda r: r.update(key="0" * 20)),  # another cell's file
])
def test_damaged_cell_files_are_recomputed(finished, damage):
    cells, root, truth = finished
    damage(root / f"{cells[0].key}.json")
    store, stats = rerun(cells, root)
    assert stats.computed == 1 and store.read(cells[0].key)["scores"] == truth[cells[0].key]


def test_tampered_arrays_are_recomputed(finished):
    cells, root, _ = finished
    key = cells[0].key
    store = CellStore(root)
    good = store.read_arrays(key)
    bad = {k: v.copy() for k, v in good.items()}
    bad["marginals"][0] *= 0.5
    np.savez_compressed(root / f"{key}.npz", **bad)
    store, stats = rerun(cells, root)
    assert stats.computed == 1 and "arrays" in store.rejected[key]
    np.testing.assert_array_equal(store.read_arrays(key)["marginals"], good["marginals"])


def test_a_clean_resume_recomputes_nothing_and_warns_nothing(finished, recwarn):
    cells, root, _ = finished
    stats = run_cells(cells, CellStore(root), progress=False)
    assert stats.computed == 0 and not [w for w in recwarn if "recomputed" in str(w.message)]


def test_non_finite_scores_are_stored_as_null_with_a_reason(tmp_path):
    store = CellStore(tmp_path)
    rec = {"key": "k1", "scores": {"kl_bits": math.nan, "jsd_bits": 0.1,
                                   "complexity_bits": None, "stationarity": math.inf}}
    store.write("k1", rec)
    text = store.json_path("k1").read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = store.read("k1")
    assert back["scores"]["kl_bits"] is None and back["scores"]["stationarity"] is None
    assert "not a finite number" in back["undefined"]["scores.kl_bits"]


def test_leftover_temporary_files_are_swept_when_the_store_opens(tmp_path):
    old = tmp_path / ".abc.json.sr-0123abcd.tmp"
    fresh = tmp_path / ".def.json.sr-89abcdef.tmp"
    other = tmp_path / ".someone-else.tmp"
    for p in (old, fresh, other):
        p.write_text("{")
    stale = time.time() - atomic.TEMP_MAX_AGE_S - 60
    os.utime(old, (stale, stale))
    os.utime(other, (stale, stale))
    CellStore(tmp_path)
    assert not old.exists() and fresh.exists() and other.exists()


def test_the_first_atomic_write_into_a_folder_sweeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_swept", set())
    old = tmp_path / ".x.png.sr-00000000.tmp"
    old.write_bytes(b"")
    os.utime(old, (0, 0))
    atomic.write_text(tmp_path / "a.txt", "a")
    assert not old.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


# -- strict JSON ----------------------------------------------------------------------

def test_dumps_strict_refuses_non_finite_numbers_naming_their_path():
    with pytest.raises(ValueError, match=r"scores\.kl"):
        atomic.dumps_strict({"scores": {"kl": np.float32("nan")}})
    with pytest.raises(ValueError, match=r"rows\.1"):
        atomic.dumps_strict({"rows": [1.0, math.inf]})


def test_dumps_strict_writes_undefined_as_null_with_its_reason():
    obj = {"fid": atomic.Undefined("fewer than 2 samples"), "n": np.int64(1),
           "kid": np.float64(0.25), "nested": [{"x": math.nan}]}
    out = json.loads(atomic.dumps_strict(obj, nonfinite="null"))
    assert out["fid"] is None and out["n"] == 1 and out["kid"] == 0.25
    assert out["undefined"] == {"fid": "fewer than 2 samples",
                                "nested.0.x": "not a finite number (nan)"}
    assert "NaN" not in atomic.dumps_strict(obj, nonfinite="null")


def test_write_json_never_writes_nan(tmp_path):
    path = atomic.write_json(tmp_path / "s.json", {"kl": float("nan"), "ok": 1.5})
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["kl"] is None
    with pytest.raises(ValueError):
        atomic.write_json_strict(tmp_path / "t.json", {"kl": float("inf")})
    assert not (tmp_path / "t.json").exists()


def test_the_store_serves_any_cache_with_its_own_check(tmp_path):
    """The general API (any key → strict-JSON record + npz arrays): a record that parses
    and matches its checksum is still refused when the caller's check says it is wrong."""
    def check(rec):
        fid = rec.get("fid")
        ok = isinstance(fid, float) and math.isfinite(fid) and fid >= 0
        return None if ok else f"fid {fid!r} is not a non-negative number"

    store = CellStore(tmp_path, check=check)
    samples = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.write("ddpm-naive-k01", {"key": "ddpm-naive-k01", "fid": 37.5}, {"samples": samples})
    assert store.read("ddpm-naive-k01")["fid"] == 37.5
    np.testing.assert_array_equal(store.read_arrays("ddpm-naive-k01")["samples"], samples)
    forged = json.loads(store.json_path("ddpm-naive-k01").read_text())
    forged["fid"] = -1.0
    forged["checksum"] = record_checksum(forged)
    store.json_path("ddpm-naive-k01").write_text(json.dumps(forged))
    with pytest.warns(UserWarning, match="recomputed"):
        assert store.read("ddpm-naive-k01") is None
    assert "fid -1.0" in store.rejected["ddpm-naive-k01"]
    assert store.read_arrays("ddpm-naive-k01") is None  # no trusted record, no arrays
    with pytest.raises(ValueError, match="not a plain file name"):
        store.write("../outside", {"key": "../outside"})


def test_arrays_changed_after_the_check_are_not_served(tmp_path):
    store = CellStore(tmp_path, check=None)
    store.write("k", {"n": 1}, {"a": np.arange(3.0)})
    assert store.read("k")["key"] == "k" and store.read_arrays("k")["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="names key"):
        store.write("k", {"key": "other"})
    np.savez_compressed(tmp_path / "k.npz", a=np.zeros(3))
    with pytest.warns(UserWarning, match="recomputed"):
        assert store.read_arrays("k") is None
    assert "arrays" in store.rejected["k"]
