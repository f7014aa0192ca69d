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


# -- a shape that needs a context: equal-complexity --------------------------------------

EQ_GRID, EQ_T, EQ_ENDS = "paper:0.1", 4, (0.02, 0.1)


def eq_context(prior="swiss-roll", family="gaussian", grid=EQ_GRID):
    from serialrepro.schedules import ScheduleContext

    return ScheduleContext(prior=prior, grid=grid, family=family)


def step_kls(prior, family, grid, levels):
    """KL(q_t‖q_{t+1}) in bits for t = 1..T−1 from the engine's forward marginals."""
    import torch

    from serialrepro.grid import KernelSchedule, forward_marginals, make_prior, parse_grid

    space = parse_grid(grid)
    q = forward_marginals(make_prior(prior, space), KernelSchedule(space, family, levels))
    eps = 2.2e-16
    return [float((q[t] * torch.log2((q[t] + eps) / (q[t + 1] + eps))).sum())
            for t in range(1, len(levels))]


def test_equal_complexity_shape_is_the_builder_with_equal_step_kls():
    from serialrepro.grid import make_prior, parse_grid
    from serialrepro.grid.optimize import Problem, equal_complexity_levels, parse_constraint

    a, b = EQ_ENDS
    lv = Schedule("equal-complexity", a, b).levels(EQ_T, "gaussian", eq_context())
    space = parse_grid(EQ_GRID)
    pb = Problem(make_prior("swiss-roll", space), "gaussian", space, EQ_T,
                 parse_constraint(f"ends:{a}:{b}", "gaussian", EQ_T))
    assert lv == equal_complexity_levels(pb)  # the same numbers, not just close
    assert lv[0] == a and lv[-1] == b and all(x < y for x, y in zip(lv[:-1], lv[1:], strict=True))
    kls = step_kls("swiss-roll", "gaussian", EQ_GRID, lv)
    assert max(kls) - min(kls) < 1e-6 * max(kls), kls
    # the check can fail: linear spacing between the same ends has unequal steps
    lin = step_kls("swiss-roll", "gaussian", EQ_GRID, schedule_shape("linear", EQ_T, a, b))
    assert max(lin) - min(lin) > 0.05 * max(lin), lin
    # the levels depend on the prior, so a resolver that ignored the context would fail
    other = Schedule("equal-complexity", a, b).levels(EQ_T, "gaussian",
                                                      eq_context(prior="three-modes"))
    assert max(abs(x - y) for x, y in zip(lv, other, strict=True)) > 1e-4
    assert Schedule("equal-complexity", a, b).label == "equal-complexity 0.02→0.1"


def test_equal_complexity_without_context_is_a_one_line_error():
    from serialrepro.schedules import ScheduleContext

    for call in (lambda: Schedule("equal-complexity", 0.02, 0.1).levels(4, "gaussian"),
                 lambda: schedule_shape("equal-complexity", 4, 0.02, 0.1)):
        with pytest.raises(UserInputError, match="depends on the prior, grid and family") as e:
            call()
        assert "\n" not in str(e.value) and "no prior, grid or family was given" in str(e.value)
    with pytest.raises(UserInputError, match="no family was given"):
        Schedule("equal-complexity", 0.02, 0.1).levels(
            4, "gaussian", ScheduleContext(prior="swiss-roll", grid=EQ_GRID))
    with pytest.raises(UserInputError, match="total_variance and match_std do not apply"):
        Schedule("equal-complexity", 0.02, 0.1, total_variance=0.01).levels(
            4, "gaussian", eq_context())
    with pytest.raises(UserInputError, match="at T=1 has one level"):
        Schedule("equal-complexity", 0.02, 0.1).levels(1, "gaussian", eq_context())
    with pytest.raises(UserInputError, match="levels must not decrease"):
        Schedule("equal-complexity", 0.1, 0.02).levels(3, "gaussian", eq_context())
    with pytest.raises(UserInputError, match="was given the context of family 'laplace'"):
        Schedule("equal-complexity", 0.02, 0.1).levels(3, "gaussian", eq_context(family="laplace"))


@pytest.fixture
def counting():
    """A context shape whose resolver counts its calls (levels: T copies of end × dims)."""
    from serialrepro.schedules import SCHEDULE_RESOLVERS, register_resolver

    calls = []
    register_shape("counting-test", "end × dims, counted", ("end",), needs=("grid",))(None)

    @register_resolver("counting-test")
    def _resolve(T, p, ctx):
        calls.append((T, ctx))
        return [p["end"] * ctx.dims] * T

    yield calls
    del SCHEDULE_SHAPES["counting-test"], SCHEDULE_KINDS["counting-test"]
    del SCHEDULE_RESOLVERS["counting-test"]


def test_context_shapes_are_resolved_once_per_condition(counting):
    from serialrepro.schedules import ScheduleContext, needs_context

    assert needs_context("counting-test") and not needs_context("linear")
    ctx = ScheduleContext(grid="torus:8", dims=3)
    sched = Schedule("counting-test", end=0.5)
    assert sched.levels(2, "gaussian", ctx) == [1.5, 1.5]
    assert sched.levels(2, "gaussian", ctx) == [1.5, 1.5]
    assert len(counting) == 1  # cached
    sched.levels(3, "gaussian", ctx)
    sched.levels(2, "gaussian", ScheduleContext(grid="torus:8", dims=2))
    assert len(counting) == 3  # another T, another context: solved again
    with pytest.raises(ValueError, match="not fields of ScheduleContext"):
        register_shape("bad-test", "x", needs=("colour",))
    from serialrepro.schedules import register_resolver

    with pytest.raises(ValueError, match="not a registered shape that needs a context"):
        register_resolver("linear")


def test_existing_shapes_ignore_a_context():
    ctx = eq_context()
    for kind in ("linear", "geometric", "cosine"):
        assert Schedule(kind, 0.01, 0.05).levels(6, "gaussian", ctx) == schedule_shape(
            kind, 6, 0.01, 0.05)
    assert Schedule("constant", value=0.03).levels(3, "gaussian", ctx) == [0.03] * 3
