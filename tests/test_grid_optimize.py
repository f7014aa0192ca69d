"""Optimal schedules (grid/optimize.py): gradients, constraints, baselines, optimality."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.families import FAMILIES, GRID
from serialrepro.grid import make_prior, parse_grid, simulate
from serialrepro.grid.optimize import (
    BASELINES,
    Problem,
    baseline_levels,
    constraint_residual,
    equal_complexity_levels,
    level_bounds,
    optimize_levels,
    optimize_schedule,
    parse_constraint,
)


def problem(family="gaussian", T=4, constraint=None, grid="paper:0.1", objective="kl",
            step="serial"):
    space = parse_grid(grid, 2)
    data = make_prior("swiss-roll", space)
    return Problem(data, family, space, T, parse_constraint(constraint, family, T),
                   step=step, objective=objective)


def test_level_bounds_come_from_the_families():
    assert level_bounds("fade-uniform") == (0.0, 1.0)
    lo, hi = level_bounds("gaussian")
    assert 0 < lo < 1e-300 and hi == math.inf


@pytest.mark.parametrize("grid", ["paper:0.1", "torus:8"])  # dense and FFT paths
@pytest.mark.parametrize("family", sorted(n for n, f in FAMILIES.items() if f.offers(GRID)))
def test_gradients_match_finite_differences(family, grid):
    fade = level_bounds(family)[1] == 1.0
    for objective in ("kl", "jsd"):
        pb = problem(family, 3, grid=grid, objective=objective)
        assert pb.kernels([0.1]).backend == ("dense" if grid.startswith("paper") else "fft")
        lv = torch.tensor([0.1, 0.4, 0.8] if fade else [0.04, 0.07, 0.12],
                          dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(pb.loss, (lv,))


def test_final_kl_map_gradient_is_the_implicit_derivative():
    # z -> levels under KL(q_T||p_F) = D goes through a root search; its gradient comes
    # from the implicit-function theorem and must match finite differences
    pb = problem("gaussian", 3, "final-kl:1.0")
    z = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: pb.loss(pb.levels_from_z(z)), (z,), atol=1e-6)
    with torch.no_grad():
        lv = pb.levels_from_z(z)
    assert abs(float(pb.final_kl(lv)) - 1.0) < 1e-9


@pytest.mark.parametrize("spec, message", [
    ("ends:0.05:0.01", "must not decrease"),
    ("ends:0.01:1.5", "outside"),            # fade levels lie in [0, 1]
    ("total-variance:9", "reach"),            # 4 fade levels reach at most 4
    ("total-variance:-1", "> 0"),
    ("max-level:2", "(0, 1]"),
    ("final-kl:0", "> 0"),
    ("widths:3", "valid choices"),
    ("ends:0.1", "invalid"),
    ("ends:a:b", "invalid"),
])
def test_infeasible_constraints_are_one_line_errors(spec, message):
    with pytest.raises(UserInputError) as exc:
        parse_constraint(spec, "fade-uniform", 4)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_negative_ends_are_refused_for_positive_families():
    with pytest.raises(UserInputError, match="outside"):
        parse_constraint("ends:-0.01:0.05", "gaussian", 4)


def test_unreachable_final_kl_is_an_error():
    pb = problem("gaussian", 3, "final-kl:100")  # above KL(data||p_F): no noise gets there
    with pytest.raises(UserInputError, match="infeasible"):
        pb.levels_from_z(torch.zeros(3, dtype=torch.float64))


CASES = [
    ("gaussian", None),
    ("gaussian", "total-variance:0.01"),
    ("gaussian", "max-level:0.06"),
    ("gaussian", "final-kl:1.5"),
    ("fade-uniform", None),
    ("fade-uniform", "total-variance:2.5"),
    ("bimodal", "ends:0.02:0.07"),
]


@pytest.mark.parametrize("family, spec", CASES)
def test_every_baseline_meets_the_constraint(family, spec):
    pb = problem(family, 4, spec)
    for kind in BASELINES:
        lv = baseline_levels(pb, kind)
        if lv is None:
            continue
        assert len(lv) == 4
        assert all(b >= a for a, b in zip(lv, lv[1:], strict=False)), (kind, lv)
        assert constraint_residual(pb, lv) < 1e-8, (kind, lv)


def test_total_variance_respects_the_fade_bound():
    # Σf² = 3.5 with 4 levels ≤ 1 forces the top levels onto the bound
    pb = problem("fade-uniform", 4, "total-variance:3.5")
    x = torch.tensor([0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    lv = pb.levels_from_shape(x)
    assert float(lv.max()) <= 1.0 + 1e-15
    assert abs(float((lv * lv).sum()) - 3.5) < 1e-12


@pytest.mark.parametrize("family, spec", CASES)
def test_optimum_beats_or_equals_every_baseline(family, spec):
    pb = problem(family, 4, spec)
    out = optimize_schedule(pb, restarts=1, max_iter=40)
    assert set(out) == {"sigmas", "kl_bits", "jsd_bits", "complexity_bits", "stationarity",
                        "constraint", "iterations", "seconds", "baselines"}
    assert constraint_residual(pb, out["sigmas"]) < 1e-8
    for name, b in out["baselines"].items():
        if b is not None:
            assert out["kl_bits"] <= b["kl_bits"] + 1e-12, name


def test_optimum_is_strictly_better_than_linear_at_the_paper_ends():
    pb = problem("gaussian", 5)
    out = optimize_schedule(pb, restarts=0, max_iter=40)
    assert out["kl_bits"] < out["baselines"]["linear"]["kl_bits"] - 1e-3


def _perturbations(pb, levels, delta):
    """Schedules next to ``levels`` that still meet the constraint: one interior level
    moved by ±delta (kept monotone), then the constraint re-imposed where it is a sum."""
    kind = pb.constraint.kind
    lo = 1 if kind == "ends" else 0
    hi = len(levels) - 1 if kind == "ends" else len(levels)
    for i in range(lo, hi):
        for sign in (-1.0, 1.0):
            lv = list(levels)
            left = lv[i - 1] if i > 0 else pb.floor
            right = lv[i + 1] if i + 1 < len(lv) else math.inf
            if kind == "max-level":
                right = min(right, pb.constraint.values[0])
            lv[i] = min(max(lv[i] + sign * delta, left), right)
            if lv[i] == levels[i]:
                continue
            if kind == "total-variance":
                c = math.sqrt(pb.constraint.values[0] / sum(v * v for v in lv))
                lv = [c * v for v in lv]
            yield lv


@pytest.mark.parametrize("family, spec", [("gaussian", None), ("gaussian", "total-variance:0.01"),
                                          ("gaussian", "max-level:0.06"),
                                          ("fade-uniform", None)])
def test_optimum_is_locally_optimal(family, spec):
    pb = problem(family, 4, spec)
    res = optimize_levels(pb, restarts=1, max_iter=60,
                          inits=[baseline_levels(pb, k) for k in ("linear", "cosine")])
    best = float(pb.loss(torch.tensor(res.sigmas, dtype=torch.float64)).detach())
    assert abs(best - res.loss_bits) < 1e-9
    delta = 0.02 if family.startswith("fade") else 0.002
    tried = 0
    for lv in _perturbations(pb, res.sigmas, delta):
        tried += 1
        val = float(pb.loss(torch.tensor(lv, dtype=torch.float64)).detach())
        assert val >= best - 1e-7, (lv, val, best)
    assert tried > 0


@pytest.mark.parametrize("family, spec", [("gaussian", None), ("fade-uniform", None),
                                          ("gaussian", "total-variance:0.01"),
                                          ("gaussian", "final-kl:1.5")])
def test_equal_complexity_steps_have_equal_kl(family, spec):
    pb = problem(family, 5, spec)
    lv = equal_complexity_levels(pb)
    assert constraint_residual(pb, lv) < 1e-8
    res = simulate(pb.data, family, lv, pb.space, keep="all")
    q = res.marginals
    first = 1 if pb.constraint.kind == "ends" else 0  # under ends σ_1 is fixed
    kls = [float((q[t] * torch.log2((q[t] + 2.2e-16) / (q[t + 1] + 2.2e-16))).sum())
           for t in range(first, 5)]
    assert max(kls) - min(kls) < 1e-6 * max(kls), kls
    assert abs(res.complexity_bits - kls[-1]) < 1e-6 * kls[-1]


def test_equal_complexity_is_not_the_linear_schedule():
    # a builder that returned linear spacing would pass the constraint checks
    pb = problem("gaussian", 5)
    lv = equal_complexity_levels(pb)
    lin = baseline_levels(pb, "linear")
    assert max(abs(a - b) for a, b in zip(lv, lin, strict=True)) > 1e-3


def test_equal_complexity_says_where_monotone_levels_cannot_equalise():
    # bimodal noise at the paper's first width already moves q_1 by more than the common
    # KL of the later steps: levels stay at 0.02 (monotone) and those steps exceed it
    pb = problem("bimodal", 5)
    lv = equal_complexity_levels(pb)
    assert lv[1] == lv[0] == 0.02 and lv[-1] == 0.07
    res = simulate(pb.data, "bimodal", lv, pb.space, keep="all")
    q = res.marginals
    kls = [float((q[t] * torch.log2((q[t] + 2.2e-16) / (q[t + 1] + 2.2e-16))).sum())
           for t in range(1, 5)]
    assert kls[0] > kls[-1] * 1.5 and abs(kls[-1] - kls[-2]) < 1e-6 * kls[-1]


@pytest.mark.parametrize("spec", ["total-variance:0.01", "final-kl:1.5", "max-level:0.06"])
def test_more_steps_never_lose_when_zero_levels_are_allowed(spec):
    # a T-step schedule contains every shorter one (levels at the floor are identities),
    # so the optimum cannot get worse with T under a constraint that allows them
    kl = [optimize_schedule(problem("gaussian", T, spec), restarts=0, max_iter=30)["kl_bits"]
          for T in (2, 5)]
    assert kl[1] <= kl[0] + 1e-9, kl


def test_unreachable_equal_complexity_ends_are_a_null_baseline_not_a_crash():
    """Bimodal noise between the paper's ends on a coarse torus: no common per-step KL
    reaches the end level. The builder says so in one line; the optimiser reports that
    baseline as null and still optimises."""
    pb = problem("bimodal", T=3, grid="torus:16")
    with pytest.raises(UserInputError, match="no equal-complexity schedule"):
        equal_complexity_levels(pb)
    assert baseline_levels(pb, "equal-complexity") is None
    out = optimize_schedule(pb, restarts=0, max_iter=20)
    assert out["baselines"]["equal-complexity"] is None
    assert math.isfinite(out["kl_bits"])
    assert out["kl_bits"] <= out["baselines"]["linear"]["kl_bits"] + 1e-12
