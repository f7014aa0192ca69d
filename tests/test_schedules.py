"""The schedule-shape registry of serialrepro.schedules: one entry per shape."""

from __future__ import annotations

import pytest

from serialrepro.errors import UserInputError
from serialrepro.schedules import (
    SCHEDULE_KINDS,
    SCHEDULE_SHAPES,
    Schedule,
    register_shape,
    schedule_shape,
)


@pytest.fixture
def halving():
    @register_shape("halving-test", "each level half the next, ending at end", ("end",))
    def _halving(T, p):
        return [p["end"] / 2 ** (T - 1 - i) for i in range(T)]

    yield
    del SCHEDULE_SHAPES["halving-test"], SCHEDULE_KINDS["halving-test"]


def test_a_registered_shape_is_used_by_schedules_and_listed(halving):
    assert SCHEDULE_KINDS["halving-test"].startswith("each level half")
    assert schedule_shape("halving-test", 3, end=0.04) == pytest.approx([0.01, 0.02, 0.04])
    sched = Schedule("halving-test", end=0.04, match_std=True)
    assert sched.label == "halving-test 0.04, equal std"
    # equal std: the fade level that gives each displacement std
    fade = sched.levels(3, "fade-uniform")
    assert fade[0] == 0.0 and 0 < fade[1] < fade[2] < 1
    with pytest.raises(UserInputError, match="a halving-test schedule needs 'end'"):
        schedule_shape("halving-test", 3, start=0.01)


def test_unknown_shapes_and_missing_parameters_are_one_line_errors():
    with pytest.raises(UserInputError, match="valid choices: linear, geometric, cosine"):
        schedule_shape("quadratic", 3, 0.01, 0.05)
    with pytest.raises(UserInputError, match="a linear schedule needs 'start' and 'end'"):
        schedule_shape("linear", 3, start=0.01)
    with pytest.raises(UserInputError, match="a constant schedule needs 'value'"):
        schedule_shape("constant", 3)
    assert Schedule("constant", value=0.03).label == "constant 0.03"
    assert Schedule("linear", 0.01, 0.05, total_variance=0.01).label == (
        "linear 0.01→0.05, Σσ²=0.01")
