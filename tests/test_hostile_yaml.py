"""Hostile YAML and configs: refused fast, in one line, before validation builds anything.

Each refusal is timed in-process (the bound is generous: the point is milliseconds
against the minutes and gigabytes these inputs cost before), and the CLI path is checked
once for exit code 2 and a one-line message without a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from serialrepro import configio
from serialrepro.configio import parse_yaml, read_yaml, short_repr
from serialrepro.errors import UserInputError
from serialrepro.experiments.config import expand, load_configs, parse_config, resolved_dict

SERIALREPRO = Path(sys.executable).with_name("serialrepro")


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` references to the previous one:
    width**levels nodes once expanded, from a few hundred bytes."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def refused(text: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    with pytest.raises(UserInputError) as info:
        parse_yaml(text, "hostile.yaml")
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300, msg
    return msg, elapsed


def test_an_alias_bomb_is_refused_in_milliseconds():
    text = alias_bomb()
    assert len(text) < 600
    msg, elapsed = refused(text)
    assert "aliases expand to more than" in msg
    assert elapsed < 2.0


def test_ten_thousand_levels_of_nesting_are_refused():
    for text in ("[" * 10_000 + "]" * 10_000, "{a: " * 10_000 + "1" + "}" * 10_000):
        msg, elapsed = refused(text)
        assert f"deeper than {configio.MAX_DEPTH} levels" in msg
        assert elapsed < 2.0


def test_an_integer_with_thousands_of_digits_is_refused():
    msg, elapsed = refused("seed: " + "7" * 5000)
    assert "more than 100 digits" in msg and elapsed < 2.0


def test_a_recursive_alias_is_refused():
    msg, _ = refused("a: &a [1, *a]")
    assert "recursive alias" in msg


def test_a_huge_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(configio.MAX_YAML_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(UserInputError, match="the limit is"):
        read_yaml(path)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00bad", b"a: [1, 2", b"key: value\n\tbad: tab"])
def test_unreadable_or_malformed_files_are_one_line(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(UserInputError) as info:
        read_yaml(path)
    assert "\n" not in str(info.value)


def test_a_folder_or_a_missing_file_is_one_line(tmp_path):
    for path in (tmp_path, tmp_path / "missing.yaml"):
        with pytest.raises(UserInputError, match="does not exist"):
            read_yaml(path)


def test_small_aliases_still_work_and_the_resolved_config_round_trips():
    # yaml.safe_dump writes anchors for shared lists: config.resolved.yaml may hold some
    text = "a: &x [1, 2]\nb: *x\nc: {k: *x}\n"
    assert parse_yaml(text) == {"a": [1, 2], "b": [1, 2], "c": {"k": [1, 2]}}
    shared = ["gaussian", "laplace"]
    cfg = parse_config({"name": "t", "sweeps": [
        {"T": 2, "noise": shared, "schedule": {"kind": "linear", "start": 0.01, "end": 0.05},
         "grid": "torus:8"},
        {"T": 3, "noise": shared, "schedule": {"kind": "linear", "start": 0.01, "end": 0.05},
         "grid": "torus:8"}]})
    dumped = yaml.safe_dump({"experiments": [resolved_dict(cfg)]})
    again = parse_yaml(dumped)["experiments"][0]
    assert [c.key for c in expand(parse_config(again))] == [c.key for c in expand(cfg)]


# -- validation: values echoed truncated, every hostile value one line -----------------

BASE = {"name": "t", "sweeps": [{"T": 3, "schedule": {"kind": "linear", "start": 0.01,
                                                      "end": 0.05}, "grid": "torus:8"}]}


def invalid(data) -> str:
    with pytest.raises(UserInputError) as info:
        expand(parse_config(data, "cfg.yaml"))
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 1200, msg
    return msg


def with_sweep(**changes) -> dict:
    return {**BASE, "sweeps": [{**BASE["sweeps"][0], **changes}]}


def test_validation_errors_truncate_the_values_they_echo():
    msg = invalid(with_sweep(T="x" * 100_000))
    assert "..." in msg and len(msg) < 400
    nested = list(range(50))
    for _ in range(5):
        nested = [nested] * 20
    assert len(invalid(with_sweep(T={"deep": nested}))) < 600
    assert len(short_repr("y" * 10_000)) <= configio.MAX_ECHO


def test_a_5000_character_name_is_refused():
    msg = invalid({**BASE, "name": "n" * 5000})
    assert "name" in msg and "at most 100 characters" in msg and "nnnnnnnnnnnnnnnnnn" not in msg


@pytest.mark.parametrize("seed", [2**63, 2**64 + 5, -1])
def test_seeds_outside_int64_are_refused(seed):
    assert "seed" in invalid({**BASE, "seed": seed})
    assert "seed" in invalid(with_sweep(seed=[0, seed]))


@pytest.mark.parametrize("axis,values", [
    ("T", [2, 3, 2]), ("noise", ["gaussian", "gaussian"]), ("grid", ["torus:8", "torus:8"]),
    ("grid", ["paper:0.04", "paper:0.040"]), ("seed", [1, 1]),
])
def test_duplicated_axis_values_are_refused_at_validation(axis, values):
    assert "given twice" in invalid(with_sweep(**{axis: values}))


def test_duplicated_schedules_are_refused():
    lin = {"kind": "linear", "start": 0.01, "end": 0.05}
    assert "given twice" in invalid(with_sweep(schedule=[lin, dict(lin)]))
    assert "given twice" in invalid(with_sweep(schedule={**lin, "start": [0.01, 0.01]}))


@pytest.mark.parametrize("value", [[1, [2, 3]], [[2], [3, 4]], {"start": 1}, "3", 2.5, None,
                                   float("nan"), True])
def test_ragged_or_mistyped_T_is_one_line(value):
    invalid(with_sweep(T=value))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_schedule_values_are_refused(bad):
    assert "finite" in invalid(with_sweep(schedule={"kind": "linear", "start": bad,
                                                    "end": 0.05}))


def test_the_cli_refuses_a_bomb_with_exit_code_2_and_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    proc = subprocess.run([str(SERIALREPRO), "run", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    assert len(lines) == 1 and "aliases expand" in lines[0] and "Traceback" not in lines[0]
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_a_bomb_inside_an_experiments_list_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(alias_bomb() + "experiments: [*l8]\n")
    with pytest.raises(UserInputError, match="aliases expand"):
        load_configs(path)


def test_the_same_condition_in_two_blocks_is_refused_unless_labelled_apart():
    block = BASE["sweeps"][0]
    msg = invalid({**BASE, "sweeps": [block, {**block, "T": [2, 3]}]})
    assert "sweeps.0 and sweeps.1 both give the condition" in msg
    ok = {**BASE, "sweeps": [block, {**block, "label": "again"}]}
    assert len(expand(parse_config(ok))) == 2
