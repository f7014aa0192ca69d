"""Experiment configs: validation with key paths, expansion into cells, schedules, store."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml

from serialrepro.errors import UserInputError
from serialrepro.experiments.catalog import reproduce_configs, reproduce_names
from serialrepro.experiments.config import expand, parse_config
from serialrepro.families import FADE_WIDTH, FAMILIES, GRID, family_names
from serialrepro.schedules import (
    UNIFORM_DISPLACEMENT_VARIANCE,
    Schedule,
    displacement_std,
    level_for_std,
    schedule_shape,
)
from serialrepro.store import CellStore

LINEAR = {"kind": "linear", "start": 0.01, "end": 0.05}


def config(**sweep) -> dict:
    block = {"T": 3, "schedule": dict(LINEAR), **sweep}
    return {"name": "t", "sweeps": [block]}


def error_of(data: dict) -> str:
    with pytest.raises(UserInputError) as info:
        expand(parse_config(data, "cfg.yaml"))
    msg = str(info.value)
    assert "\n" not in msg  # one line
    return msg


# -- validation ------------------------------------------------------------------------

def test_unknown_key_names_its_path_and_the_valid_keys():
    msg = error_of(config(noize="gaussian"))
    assert "sweeps.0.noize: unknown key 'noize'" in msg
    assert "valid keys here:" in msg and "noise" in msg
    nested = config()
    nested["sweeps"][0]["schedule"]["ends"] = 0.05
    msg = error_of(nested)
    assert "sweeps.0.schedule.ends: unknown key 'ends'" in msg
    assert "start, end, value" in msg
    assert "sed: unknown key" in error_of({**config(), "sed": 1})


@pytest.mark.parametrize("key, value, path", [
    ("T", "ten", "sweeps.0.T"),
    ("T", 2.5, "sweeps.0.T"),
    ("seed", "1", "sweeps.0.seed"),
    ("noise", 3, "sweeps.0.noise"),
])
def test_wrong_type_names_its_path_and_the_value(key, value, path):
    msg = error_of(config(**{key: value}))
    assert f"{path}: got {value!r}" in msg
    assert "expected" in msg


def test_wrong_type_inside_a_list_and_a_schedule():
    assert "sweeps.0.T.1: got 2.5" in error_of(config(T=[3, 2.5]))
    bad = config()
    bad["sweeps"][0]["schedule"]["start"] = "small"
    assert "sweeps.0.schedule.start: got 'small'" in error_of(bad)


def test_empty_list_and_empty_range_fail():
    assert "sweeps.0.T: is empty" in error_of(config(T=[]))
    assert "sweeps.0.noise: is empty" in error_of(config(noise=[]))
    assert "sweeps.0.T: range 10..2 is empty" in error_of(config(T={"start": 10, "stop": 2}))
    assert "sweeps: is empty" in error_of({"name": "t", "sweeps": []})


def test_bad_names_list_the_valid_choices():
    msg = error_of(config(noise=["gaussian", "gausian"]))
    assert "sweeps.0.noise: unknown noise family 'gausian'" in msg
    for name in FAMILIES:
        assert name in msg
    assert "unknown prior 'swiss'" in error_of(config(prior="swiss"))
    assert "unknown step 'reverse'" in error_of(config(step="reverse"))
    assert "sweeps.0.grid: grid 'torus:x' is invalid" in error_of(config(grid="torus:x"))
    bad = config()
    bad["sweeps"][0]["schedule"] = [{"kind": "lin", "start": 0.01, "end": 0.05}]
    assert "sweeps.0.schedule.0.kind: unknown schedule kind 'lin'" in error_of(bad)


def test_values_a_family_refuses_fail_at_expansion_before_running():
    bad = config(noise="fade-uniform")
    bad["sweeps"][0]["schedule"]["end"] = 2.0
    msg = error_of(bad)
    assert msg.startswith("t: sweeps.0 (fade-uniform")
    assert "fade level must lie in [0, 1]" in msg
    bad = config(noise="bimodal")
    bad["sweeps"][0]["schedule"]["total_variance"] = 0.1
    assert "total_variance needs" in error_of(bad)
    too_big = {**config(grid="torus:512"), "backend": "dense"}
    msg = error_of(too_big)
    assert "needs about 2.5 TiB" in msg and "backend: fft" in msg


def test_an_image_prior_is_part_of_the_cell_key(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("L", (8, 8), 200).save(path)
    data = config(prior=f"image:{path}")
    first = expand(parse_config(data))[0]
    Image.new("L", (8, 8), 100).save(path)
    second = expand(parse_config(data))[0]
    assert first.key != second.key  # same file name, new content: not a cached result
    assert "image file" in error_of(config(prior=f"image:{tmp_path / 'missing.png'}"))


def test_missing_and_inconsistent_keys():
    assert "a sweep needs 'schedule'" in error_of({"name": "t", "sweeps": [{"T": 3}]})
    assert "name: required key is missing" in error_of({"sweeps": config()["sweeps"]})
    bad = config()
    bad["sweeps"][0]["schedule"] = {"kind": "constant", "start": 0.1}
    assert "a constant schedule needs 'value'" in error_of(bad)
    assert "keep_distributions" in error_of({**config(), "plot": "process"})


def test_cli_rejects_a_bad_config_before_running(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(config(T=[3, "x"])))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "serialrepro", "run", str(cfg), "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid config")
    assert "sweeps.0.T.1: got 'x'" in proc.stderr
    assert not out.exists()  # nothing ran, nothing was written


# -- expansion ---------------------------------------------------------------------------

def test_expansion_is_the_product_in_a_fixed_order_with_ranges_and_lists():
    cfg = parse_config(config(noise=["gaussian", "laplace"], step=["serial", "ancestral"],
                              T={"start": 2, "stop": 6, "step": 2}, seed=[0, 1]))
    cells = expand(cfg)
    assert len(cells) == 2 * 2 * 3 * 2
    assert [c.T for c in cells[:3]] == [2, 4, 6]  # T innermost
    assert (cells[0].noise, cells[0].step, cells[0].seed) == ("gaussian", "serial", 0)
    assert (cells[-1].noise, cells[-1].step, cells[-1].seed) == ("laplace", "ancestral", 1)
    log = parse_config(config(T={"start": 2, "stop": 100, "num": 7, "spacing": "log"}))
    assert [c.T for c in expand(log)] == [2, 4, 7, 14, 27, 52, 100]
    sched = config()
    sched["sweeps"][0]["schedule"]["end"] = {"start": 0.05, "stop": 0.2, "num": 4}
    assert sorted({c.sigmas[-1] for c in expand(parse_config(sched))}) == pytest.approx(
        [0.05, 0.1, 0.15, 0.2])


def test_cell_keys_depend_on_the_computation_only():
    a = expand(parse_config(config()))[0]
    b = expand(parse_config({**config(), "name": "other", "figure": "9"}))[0]
    assert a.key == b.key  # labels are not part of the computation
    c = expand(parse_config(config(seed=1)))[0]
    d = expand(parse_config(config(step="ancestral")))[0]
    e = expand(parse_config({**config(), "backend": "dense"}))[0]
    assert len({a.key, c.key, d.key}) == 3
    assert e.key == a.key  # auto resolves to dense on the paper grid: same computation
    # stable across runs, processes and versions (resuming depends on it): a pinned value
    assert a.key == "3da3d11f55c499fe7dfc"


def test_quick_override_replaces_axes():
    data = {**config(T=[2, 3, 6], grid="paper:0.025"), "quick": {"grid": "paper:0.04"}}
    cfg = parse_config(data)
    assert {c.grid for c in expand(cfg)} == {"paper:0.025"}
    assert {c.grid for c in expand(cfg, quick=True)} == {"paper:0.04"}
    assert [c.T for c in expand(cfg, quick=True)] == [2, 3, 6]


def test_shipped_experiments_validate_and_cover_design_table():
    assert reproduce_names() == ["fig2", "fig3", "figS2", "figS3-S4", "figS5", "ext-families",
                                 "ext-schedules", "ext-resolution", "ext-optimal"]
    cells = {c.name: expand(c) for c in reproduce_configs()}
    fig3 = cells["fig3"]
    assert [c.T for c in fig3] == [2, 3, 6, 12, 24, 48, 100]
    assert {(c.noise, c.grid, c.sigmas[0], c.sigmas[-1]) for c in fig3} == {
        ("gaussian", "paper:0.04", 0.01, 0.05)}
    fig2 = {c.figure: c for c in cells["fig2"]}
    assert fig2["2A-B"].noise == "gaussian" and fig2["2A-B"].sigmas[-1] == 0.1
    assert fig2["2C"].noise == "bimodal" and fig2["2C"].sigmas[0] == 0.02
    assert fig2["2D"].noise == "fade-uniform" and fig2["2E"].noise == "fade-fixed"
    assert all(c.grid == "paper:0.025" and c.T == 10 for c in cells["fig2"])
    s3 = {(c.noise, c.T): set(c.sigmas) for c in cells["figS3-S4"]}
    assert s3 == {("gaussian", 10): {0.01}, ("gaussian", 100): {0.01}, ("bimodal", 10): {1e-4},
                  ("fade-uniform", 10): {1e-4}, ("fade-fixed", 10): {1e-4}}
    assert {c.step for c in cells["figS2"]} == {"serial", "ancestral"}
    assert [c.T for c in cells["figS5"]] == [2, 3, 6, 12, 24, 48, 100]
    fams = cells["ext-families"]
    assert {c.noise for c in fams} == set(family_names(GRID))
    assert {c.grid for c in fams} == {"torus:64"} and {c.prior for c in fams} == {
        "swiss-roll", "three-modes"}
    assert {c.grid for c in cells["ext-resolution"]} == {f"torus:{n}" for n in (32, 64, 128, 256)}


# -- schedules ---------------------------------------------------------------------------

def test_linear_schedule_is_matlab_linspace():
    assert schedule_shape("linear", 5, 0.01, 0.05) == pytest.approx([0.01, 0.02, 0.03, 0.04,
                                                                      0.05], abs=1e-15)
    assert schedule_shape("linear", 1, 0.01, 0.05) == [0.05]


def test_schedule_shapes():
    geo = schedule_shape("geometric", 6, 0.01, 0.32)
    ratios = [b / a for a, b in zip(geo, geo[1:], strict=False)]
    assert ratios == pytest.approx([2.0] * 5)
    cos = schedule_shape("cosine", 9, 0.01, 0.05)
    assert cos[0] == pytest.approx(0.01) and cos[-1] == pytest.approx(0.05)
    assert all(b > a for a, b in zip(cos, cos[1:], strict=False))
    assert cos[4] == pytest.approx(0.03)  # symmetric ramp: midpoint halfway
    steps = [b - a for a, b in zip(cos, cos[1:], strict=False)]
    assert steps[0] < steps[3] and steps[-1] < steps[4]  # slow at both ends


@pytest.mark.parametrize("kind", ["linear", "geometric", "cosine", "constant"])
@pytest.mark.parametrize("T", [1, 7, 100])
def test_equal_total_noise_sums_variances(kind, T):
    s = Schedule(kind, None if kind == "constant" else 0.01, None if kind == "constant"
                 else 0.05, 0.03 if kind == "constant" else None, total_variance=0.1)
    levels = s.levels(T, "gaussian")
    assert sum(x * x for x in levels) == pytest.approx(0.1, rel=1e-12)
    assert len(levels) == T


def test_equal_total_noise_gives_the_same_end_marginal():
    """Gaussian variances add: every shape with Σσ² = V ends at (almost) the same q_T."""
    from serialrepro.grid import GridSpace, KernelSchedule, forward_marginals, make_prior

    space = GridSpace.torus(64)
    data = make_prior("swiss-roll", space)
    ends = []
    for kind, T in [("linear", 4), ("constant", 9), ("geometric", 6)]:
        s = Schedule(kind, 0.01 if kind != "constant" else None,
                     0.05 if kind != "constant" else None,
                     0.03 if kind == "constant" else None, total_variance=0.004)
        ends.append(forward_marginals(data, KernelSchedule(space, "gaussian",
                                                           s.levels(T, "gaussian")))[-1])
    start_gap = 0.5 * (data - ends[0]).abs().sum()
    for other in ends[1:]:
        tv = 0.5 * (ends[0] - other).abs().sum()
        assert tv < 0.01 * start_gap  # the shape barely matters for where it ends


def test_equal_std_levels_match_the_displacement_variance():
    for name in ("gaussian", "laplace", "uniform", "student-t"):
        assert level_for_std(name, 0.03) == 0.03
        assert displacement_std(name, 0.03) == 0.03
    for name in ("fade-uniform", "fade-fixed"):
        for s in (0.02, 0.05, 0.2):
            f = level_for_std(name, s)
            assert (1 - f) * FADE_WIDTH**2 + f * UNIFORM_DISPLACEMENT_VARIANCE == pytest.approx(
                s * s)
            assert displacement_std(name, f) == pytest.approx(s)
        assert level_for_std(name, 0.005) == 0.0  # below the jitter: no fading
        assert level_for_std(name, 1.0) == 1.0  # above a uniform draw: clipped
    assert displacement_std("bimodal", 0.01) == pytest.approx(math.sqrt(0.01**2 + 0.05**2))


def test_uniform_displacement_variance_on_a_fine_torus():
    # the fade mapping's 1/12: per-axis variance of the minimum-image offset to a uniform draw
    n = 512
    d = (torch.arange(n, dtype=torch.float64) - n // 2) / n
    assert float((d * d).mean()) == pytest.approx(UNIFORM_DISPLACEMENT_VARIANCE, rel=1e-4)


# -- the store ------------------------------------------------------------------------------

def test_store_is_atomic_and_detects_unfinished_cells(tmp_path):
    import numpy as np

    store = CellStore(tmp_path / "cells")
    scores = {"kl_bits": 0.5, "jsd_bits": 0.1, "complexity_bits": None, "stationarity": 0.0}
    assert not store.done("abc")
    store.write("abc", {"key": "abc", "x": 1, "scores": scores}, {"a": np.arange(3.0)})
    assert store.done("abc", need_arrays=True)
    assert store.read_arrays("abc")["a"].tolist() == [0.0, 1.0, 2.0]
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["abc.json", "abc.npz"]
    store.write("def", {"key": "def", "scores": scores})
    assert store.done("def") and not store.done("def", need_arrays=True)
    (tmp_path / "cells" / "ghi.json").write_text('{"key": "ghi", "trunc')
    with pytest.warns(UserWarning, match="recomputed"):
        assert not store.done("ghi")  # a torn or hand-edited file is recomputed
    (tmp_path / "cells" / "jkl.json").write_text(json.dumps({"key": "other"}))
    assert not store.done("jkl")


def test_list_shows_experiments_families_priors_and_schedules():
    from typer.testing import CliRunner

    from serialrepro.cli import app

    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for name in (*reproduce_names(), *family_names(GRID), "swiss-roll", "three-modes", "image:PATH",
                 "linear", "geometric", "cosine", "constant", "equal-complexity", "paper:H",
                 "torus:N"):
        assert name in result.output, name
    assert "  7 cells (7 quick)  Figure 3" in result.output


@pytest.mark.parametrize("quick", [False, True])
def test_resolved_config_is_a_config_with_the_same_cells(quick, tmp_path):
    from serialrepro.experiments.config import load_configs, resolved_dict

    configs = reproduce_configs()
    path = tmp_path / "config.resolved.yaml"
    path.write_text(yaml.safe_dump({"experiments": [resolved_dict(c, quick) for c in configs]},
                                   allow_unicode=True))
    again = load_configs(path)
    assert [c.name for c in again] == [c.name for c in configs]
    for original, resolved in zip(configs, again, strict=True):
        a, b = expand(original, quick=quick), expand(resolved)
        assert [c.key for c in a] == [c.key for c in b]
        assert [(c.figure, c.label, c.schedule) for c in a] == [
            (c.figure, c.label, c.schedule) for c in b]


def test_multi_experiment_file_errors_name_the_experiment(tmp_path):
    from serialrepro.experiments.config import load_configs

    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({"experiments": [config(), {**config(), "nme": "x"}]}))
    with pytest.raises(UserInputError, match=r"\(experiments\.1\): nme: unknown key"):
        load_configs(path)


# -- a schedule shape solved per cell: equal-complexity ---------------------------------

EQUAL = {"kind": "equal-complexity", "start": 0.02, "end": 0.1}


def test_an_equal_complexity_sweep_runs_with_equal_step_kls(tmp_path):
    """``schedule: {kind: equal-complexity, …}`` through ``serialrepro run``: each cell's
    levels are solved for its prior, grid and family, and its KL(q_t‖q_(t+1)) are equal."""
    import pandas as pd

    from serialrepro.grid import KernelSchedule, forward_marginals, make_prior, parse_grid

    cfg = tmp_path / "eq.yaml"
    cfg.write_text(yaml.safe_dump({"name": "eq", "sweeps": [{
        "grid": "torus:16", "prior": ["swiss-roll", "three-modes"], "T": [2, 4],
        "schedule": [EQUAL, dict(EQUAL, kind="linear")]}]}, allow_unicode=True))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "serialrepro", "run", str(cfg), "--out",
                           str(out), "--no-progress"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "scores.csv")
    eq = table[table["schedule"] == "equal-complexity 0.02→0.1"]
    assert sorted(zip(eq["prior"], eq["T"], strict=True)) == [("swiss-roll", 2), ("swiss-roll", 4),
                                                 ("three-modes", 2), ("three-modes", 4)]
    space = parse_grid("torus:16")
    seen = {}
    for prior, T, key in zip(eq["prior"], eq["T"], eq["cell"], strict=True):
        levels = json.loads((out / "cells" / f"{key}.json").read_text())["spec"]["sigmas"]
        assert len(levels) == T and levels[0] == 0.02 and levels[-1] == 0.1
        q = forward_marginals(make_prior(prior, space), KernelSchedule(space, "gaussian", levels))
        kls = [float((q[t] * torch.log2((q[t] + 2.2e-16) / (q[t + 1] + 2.2e-16))).sum())
               for t in range(1, T)]
        assert max(kls) - min(kls) < 1e-6 * max(kls), (prior, T, kls)
        seen[(prior, T)] = levels
    # solved per prior, and not the linear levels
    assert seen[("swiss-roll", 4)] != seen[("three-modes", 4)]
    lin = table[(table["schedule"] == "linear 0.02→0.1") & (table["T"] == 4)]
    assert not set(lin["cell"]) & {k for k, T in zip(eq["cell"], eq["T"], strict=True) if T == 4}


def test_equal_complexity_is_solved_once_per_condition(monkeypatch):
    """Steps, seeds and experiments share a condition's levels: the resolver runs once per
    (prior, grid, family, T, start, end)."""
    from serialrepro.schedules import SCHEDULE_RESOLVERS, _context_levels

    calls = []

    def fake(T, p, ctx):
        calls.append((T, ctx.prior, ctx.grid, ctx.family))
        return [p["start"] + (p["end"] - p["start"]) * (i / (T - 1)) ** 2 for i in range(T)]

    _context_levels.cache_clear()
    monkeypatch.setitem(SCHEDULE_RESOLVERS, "equal-complexity", fake)
    try:
        cfg = parse_config(config(T=[3, 5], schedule=EQUAL, step=["serial", "ancestral"],
                                  seed=[0, 1], noise=["gaussian", "laplace"]))
        cells = expand(cfg)
        expand(cfg)
        assert len(cells) == 2 * 2 * 2 * 2 and len(calls) == 2 * 2
        assert {c[3] for c in calls} == {"gaussian", "laplace"}
        assert {c[2] for c in calls} == {"paper:0.04"}
        assert cells[1].sigmas == pytest.approx([0.02, 0.025, 0.04, 0.065, 0.1])
        assert cells[0].schedule == "equal-complexity 0.02→0.1"
    finally:
        _context_levels.cache_clear()


def test_equal_complexity_config_errors():
    msg = error_of(config(schedule=dict(EQUAL, total_variance=0.01)))
    assert "total_variance and match_std do not apply" in msg
    msg = error_of(config(schedule={"kind": "equal-complexity", "start": 0.02}))
    assert "needs 'start' and 'end'" in msg
    msg = error_of(config(T=1, schedule=EQUAL))
    assert "at T=1 has one level" in msg and "sweeps.0" in msg
    msg = error_of(config(schedule=dict(EQUAL, start=0.2)))
    assert "levels must not decrease" in msg
