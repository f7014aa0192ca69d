"""Noise schedules: the shapes σ_1…σ_T that experiments sweep over.

A schedule is a *shape* (linear, geometric, cosine-shaped, constant) evaluated at a
number of steps T, optionally followed by two transformations:

1. **Equal total noise** (``total_variance = V``). For families whose level σ is a
   per-axis standard deviation of additive noise (gaussian, laplace, uniform,
   student-t), independent steps add variances, so after T steps the forward process
   has added total per-axis variance Σ_t σ_t². Rescaling the shape by one factor c so
   that Σ_t (c·s_t)² = V gives schedules of *equal total noise*: for Gaussian noise on
   the real line every such schedule ends at the same q_T = q_0 ⊛ N(0, V·I) whatever
   its shape or T, so differences between them are due to graduality alone.
2. **Equal per-step standard deviation across families** (``match_std``). The shape
   then gives a target per-axis standard deviation s_t of the displacement y − x, and
   each family gets the level that matches it:

   * gaussian, laplace, uniform, student-t: σ_t = s_t (their σ *is* the per-axis std);
   * fade-uniform, fade-fixed: the level is the probability f of replacing x by a
     fresh draw, otherwise jittering it by N(0, w²), w = 0.01. The displacement of a
     fresh uniform draw on the unit torus has per-axis variance 1/12, so the
     displacement variance is (1 − f) w² + f/12; f_t = (s_t² − w²)/(1/12 − w²),
     clipped to [0, 1]. fade-fixed uses the same f_t (its target is the three-mode
     density, whose displacement variance depends on x, so the match is only
     approximate there);
   * bimodal, trimodal: their displacement is the fixed shift ±s (s = 0.05 per axis)
     plus N(0, σ²), per-axis variance σ² + s² (bimodal) or σ² + s²/2 (trimodal). The
     shift alone exceeds the small stds of the paper's schedules, so no level can match;
     they keep σ_t = s_t as the width of each component (the paper's own
     parameterisation) and are *noisier* than the others by that shift — not strictly
     comparable, and reports say so.

Linear spacing follows the authors' MATLAB ``linspace`` (and ``serialrepro simulate``):
σ_i = a + (b − a)·i/(T − 1), and T = 1 gives [b].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from serialrepro.errors import UserInputError
from serialrepro.families import FADE_WIDTH, STRETCH_SHIFT, get_family

#: name → one-line meaning, for ``serialrepro list`` and validation messages
SCHEDULE_KINDS: dict[str, str] = {
    "linear": "σ_t linearly spaced from start to end (the paper's schedules)",
    "geometric": "σ_t geometrically spaced from start to end (equal ratios)",
    "cosine": "raised-cosine ramp from start to end: slow at both ends, fast in the middle",
    "constant": "σ_t = value at every step",
}

#: per-axis variance of the minimum-image displacement to a uniform draw on the unit torus
UNIFORM_DISPLACEMENT_VARIANCE = 1.0 / 12.0


def schedule_shape(kind: str, T: int, start: float | None = None, end: float | None = None,
                   value: float | None = None) -> list[float]:
    """The unscaled levels s_1…s_T of a schedule shape."""
    if T < 1:
        raise UserInputError(f"the number of steps T={T} must be ≥ 1")
    if kind == "constant":
        if value is None:
            raise UserInputError("a constant schedule needs 'value'")
        return [float(value)] * T
    if kind not in SCHEDULE_KINDS:
        raise UserInputError(
            f"unknown schedule kind {kind!r}; valid choices: {', '.join(SCHEDULE_KINDS)}")
    if start is None or end is None:
        raise UserInputError(f"a {kind} schedule needs 'start' and 'end'")
    a, b = float(start), float(end)
    if T == 1:
        return [b]
    frac = [i / (T - 1) for i in range(T)]
    if kind == "linear":
        return [a + (b - a) * f for f in frac]
    if kind == "geometric":
        if a <= 0 or b <= 0:
            raise UserInputError(f"a geometric schedule needs start, end > 0; got {a:g}, {b:g}")
        return [a * (b / a) ** f for f in frac]
    # cosine: a raised-cosine ramp, monotone as every forward schedule must be
    return [a + (b - a) * (1.0 - math.cos(math.pi * f)) / 2.0 for f in frac]


def scale_to_total_variance(levels: list[float], total_variance: float) -> list[float]:
    """c·levels with c chosen so that Σ (c σ_t)² = ``total_variance`` (equal total noise)."""
    ss = sum(s * s for s in levels)
    if ss <= 0:
        raise UserInputError("cannot rescale an all-zero schedule to a total variance")
    c = math.sqrt(total_variance / ss)
    return [c * s for s in levels]


def level_for_std(family: str, std: float) -> float:
    """The level of ``family`` whose per-step displacement has per-axis std ``std``
    (see the module docstring for what that means for each family)."""
    fam = get_family(family)
    if fam.sigma_is_std:
        return std
    if fam.name in ("fade-uniform", "fade-fixed"):
        w2 = FADE_WIDTH * FADE_WIDTH
        f = (std * std - w2) / (UNIFORM_DISPLACEMENT_VARIANCE - w2)
        return min(1.0, max(0.0, f))
    # bimodal / trimodal: the component width, the paper's parameterisation
    return std


def displacement_std(family: str, level: float) -> float | None:
    """Per-axis std of the displacement y − x of one step at ``level`` (continuous torus
    approximation); None where it is not defined by the family alone."""
    fam = get_family(family)
    if fam.sigma_is_std:
        return level
    if fam.name == "bimodal":
        return math.sqrt(level * level + STRETCH_SHIFT**2)
    if fam.name == "trimodal":
        return math.sqrt(level * level + STRETCH_SHIFT**2 / 2)
    if fam.name in ("fade-uniform", "fade-fixed"):
        return math.sqrt((1 - level) * FADE_WIDTH**2 + level * UNIFORM_DISPLACEMENT_VARIANCE)
    return None


@dataclass(frozen=True)
class Schedule:
    """A schedule shape plus the optional equal-total-noise and equal-std transforms."""

    kind: str
    start: float | None = None
    end: float | None = None
    value: float | None = None
    total_variance: float | None = None
    match_std: bool = False

    @property
    def label(self) -> str:
        if self.kind == "constant":
            base = f"constant {self.value:g}"
        else:
            base = f"{self.kind} {self.start:g}→{self.end:g}"
        if self.total_variance is not None:
            base += f", Σσ²={self.total_variance:g}"
        if self.match_std:
            base += ", equal std"
        return base

    def levels(self, T: int, family: str) -> list[float]:
        """σ_1…σ_T for ``family``: shape, then total-variance scaling, then std matching."""
        fam = get_family(family)
        levels = schedule_shape(self.kind, T, self.start, self.end, self.value)
        if self.total_variance is not None:
            if not (fam.sigma_is_std or self.match_std):
                raise UserInputError(
                    f"total_variance needs a family whose σ is a standard deviation "
                    f"(gaussian, laplace, uniform, student-t) or match_std: true; "
                    f"{fam.name!r} is neither")
            levels = scale_to_total_variance(levels, self.total_variance)
        if self.match_std:
            levels = [level_for_std(fam.name, s) for s in levels]
        return levels
