"""Noise schedules: the shapes σ_1…σ_T that commands and experiments sweep over.

A schedule is a *shape* (one entry of :data:`SCHEDULE_SHAPES`: linear, geometric,
cosine-shaped, constant) evaluated at a number of steps T, optionally followed by two
transformations:

1. **Equal total noise** (``total_variance = V``). For families whose level σ is a
   per-axis standard deviation of additive noise (gaussian, laplace, uniform,
   student-t), independent steps add variances, so after T steps the forward process
   has added total per-axis variance Σ_t σ_t². Rescaling the shape by one factor c so
   that Σ_t (c·s_t)² = V gives schedules of *equal total noise*: for Gaussian noise on
   the real line every such schedule ends at the same q_T = q_0 ⊛ N(0, V·I) whatever
   its shape or T, so differences between them are due to graduality alone.
2. **Equal per-step standard deviation across families** (``match_std``). The shape
   then gives a target per-axis standard deviation s_t of the displacement y − x, and
   each family gets the level that matches it,
   :meth:`~serialrepro.families.NoiseFamily.level_for_std` (the fades invert their
   displacement variance (1 − f) w² + f/12; bimodal and trimodal keep σ_t = s_t as the
   component width, noisier than the others by their shift: not strictly comparable,
   and reports say so).

Linear spacing follows the authors' MATLAB ``linspace`` (and ``serialrepro simulate``):
σ_i = a + (b − a)·i/(T − 1), and T = 1 gives [b].

A new shape is one :func:`register_shape` entry: its parameters and a function of T and
those parameters.

Some shapes depend on more than T and numbers: the equal-complexity schedule (levels with
the same KL(q_t‖q_{t+1}) at every step, σ_1 = start and σ_T = end) is solved on the
exact engine for one prior, grid and family. Such a shape declares what it ``needs``
(fields of a :class:`ScheduleContext`) and is resolved by a function that the layer
which can compute it registers with :func:`register_resolver`
(:mod:`serialrepro.grid.optimize` registers ``equal-complexity`` when imported), so
this module stays below the grid layer. Its levels are cached per (shape, T, parameters,
context): a sweep solves each condition once.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache

from serialrepro.errors import UserInputError
from serialrepro.families import (
    FAMILIES,
    UNIFORM_DISPLACEMENT_VARIANCE,
    NoiseFamily,
    get_family,
)

__all__ = ["MIN_STD_LEVEL", "SCHEDULE_KINDS", "SCHEDULE_SHAPES", "UNIFORM_DISPLACEMENT_VARIANCE",
           "Schedule", "ScheduleContext", "ScheduleShape", "check_representable",
           "displacement_std", "level_for_std", "register_resolver", "register_shape",
           "scale_to_total_variance", "schedule_shape"]

#: smallest standard deviation whose square is a normal float64 (√2.2e−308): below it
#: σ² underflows and a kernel exp(−d²/2σ²) becomes 0/0 = NaN at d = 0
MIN_STD_LEVEL = math.sqrt(sys.float_info.min)


@dataclass(frozen=True)
class ScheduleContext:
    """What a context-needing shape is solved for: the prior (a prior name or
    ``image:PATH``), the grid (``paper:H`` or ``torus:N``, with ``dims``) and the noise
    family, plus how the engine runs (kernel backend, torch device)."""

    prior: str | None = None
    grid: str | None = None
    family: str | None = None
    dims: int = 2
    backend: str = "auto"
    device: str = "cpu"


#: the fields of :class:`ScheduleContext` a shape may declare it ``needs``
CONTEXT_FIELDS = tuple(f.name for f in fields(ScheduleContext))

ContextLevels = Callable[[int, dict[str, float], ScheduleContext], list[float]]


@dataclass(frozen=True)
class ScheduleShape:
    """One schedule shape: its meaning, the parameters it needs, and its levels."""

    description: str
    params: tuple[str, ...]
    #: (T, {param: value}) → s_1…s_T, for T ≥ 1 and every parameter given (None for a
    #: shape that needs a context: its resolver is in :data:`SCHEDULE_RESOLVERS`)
    levels: Callable[[int, dict[str, float]], list[float]] | None
    #: the :class:`ScheduleContext` fields the levels depend on (empty: T and params only)
    needs: tuple[str, ...] = ()


#: name → shape; :data:`SCHEDULE_KINDS` is the name → meaning view of it
SCHEDULE_SHAPES: dict[str, ScheduleShape] = {}
#: name → one-line meaning, for ``serialrepro list`` and validation messages
SCHEDULE_KINDS: dict[str, str] = {}
#: name → ``fn(T, params, context) -> levels`` of the shapes that need a context
SCHEDULE_RESOLVERS: dict[str, ContextLevels] = {}


def register_shape(name: str, description: str, params: tuple[str, ...] = ("start", "end"),
                   needs: tuple[str, ...] = ()):
    """Decorator registering ``fn(T, params) -> levels`` as the schedule shape ``name``.

    With ``needs`` (fields of :class:`ScheduleContext`) the shape depends on them too;
    its levels then come from the resolver given to :func:`register_resolver`, and the
    decorated function is not called (use ``register_shape(...)(None)``)."""
    unknown = [n for n in needs if n not in CONTEXT_FIELDS]
    if unknown:
        raise ValueError(f"shape {name!r} needs {unknown}, not fields of ScheduleContext "
                         f"({', '.join(CONTEXT_FIELDS)})")

    def add(fn: Callable[[int, dict[str, float]], list[float]] | None):
        SCHEDULE_SHAPES[name] = ScheduleShape(description, params, None if needs else fn, needs)
        SCHEDULE_KINDS[name] = description
        return fn

    return add


def register_resolver(name: str):
    """Decorator registering ``fn(T, params, context) -> levels`` as the levels of the
    context-needing shape ``name`` (declared with :func:`register_shape`)."""
    if name not in SCHEDULE_SHAPES or not SCHEDULE_SHAPES[name].needs:
        raise ValueError(f"{name!r} is not a registered shape that needs a context")

    def add(fn: ContextLevels) -> ContextLevels:
        SCHEDULE_RESOLVERS[name] = fn
        _context_levels.cache_clear()
        return fn

    return add


def needs_context(kind: str) -> bool:
    """Whether the shape ``kind`` depends on a :class:`ScheduleContext`."""
    return kind in SCHEDULE_SHAPES and bool(SCHEDULE_SHAPES[kind].needs)


@lru_cache(maxsize=4096)
def _context_levels(kind: str, T: int, params: tuple[tuple[str, float], ...],
                    context: ScheduleContext) -> tuple[float, ...]:
    levels = SCHEDULE_RESOLVERS[kind](T, dict(params), context)
    return tuple(float(v) for v in levels)


def _ramp(T: int, p: dict[str, float], frac_to_level: Callable[[float, float, float], float]):
    a, b = float(p["start"]), float(p["end"])
    if T == 1:
        return [b]
    return [frac_to_level(a, b, i / (T - 1)) for i in range(T)]


@register_shape("linear", "σ_t linearly spaced from start to end (the paper's schedules)")
def _linear(T: int, p: dict[str, float]) -> list[float]:
    return _ramp(T, p, lambda a, b, f: a + (b - a) * f)


@register_shape("geometric", "σ_t geometrically spaced from start to end (equal ratios)")
def _geometric(T: int, p: dict[str, float]) -> list[float]:
    a, b = float(p["start"]), float(p["end"])
    if T > 1 and (a <= 0 or b <= 0):
        raise UserInputError(f"a geometric schedule needs start, end > 0; got {a:g}, {b:g}")
    return _ramp(T, p, lambda a, b, f: a * (b / a) ** f)


@register_shape("cosine",
                "raised-cosine ramp from start to end: slow at both ends, fast in the middle")
def _cosine(T: int, p: dict[str, float]) -> list[float]:
    # a raised-cosine ramp, monotone as every forward schedule must be
    return _ramp(T, p, lambda a, b, f: a + (b - a) * (1.0 - math.cos(math.pi * f)) / 2.0)


@register_shape("constant", "σ_t = value at every step", params=("value",))
def _constant(T: int, p: dict[str, float]) -> list[float]:
    return [float(p["value"])] * T


# solved on the exact engine for the prior, grid and family: resolved by
# serialrepro.grid.optimize (register_resolver)
register_shape("equal-complexity",
               "σ_1 = start, σ_T = end, and KL(q_t‖q_(t+1)) the same at every step between "
               "(solved for the prior, grid and family)",
               needs=("prior", "grid", "family"))(None)


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _or(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def schedule_shape(kind: str, T: int, start: float | None = None, end: float | None = None,
                   value: float | None = None,
                   context: ScheduleContext | None = None) -> list[float]:
    """The unscaled levels s_1…s_T of a schedule shape (``context``: what a shape that
    needs one is solved for; the other shapes ignore it)."""
    if T < 1:
        raise UserInputError(f"the number of steps T={T} must be ≥ 1")
    if kind not in SCHEDULE_SHAPES:
        raise UserInputError(
            f"unknown schedule kind {kind!r}; valid choices: {', '.join(SCHEDULE_SHAPES)}")
    shape = SCHEDULE_SHAPES[kind]
    given = {"start": start, "end": end, "value": value}
    if any(given.get(k) is None for k in shape.params):
        raise UserInputError(f"a {kind} schedule needs "
                             + " and ".join(f"'{k}'" for k in shape.params))
    if not shape.needs:
        return shape.levels(int(T), {k: given[k] for k in shape.params})
    params = {k: float(given[k]) for k in shape.params}
    missing = [n for n in shape.needs if context is None or getattr(context, n) is None]
    if missing:
        raise UserInputError(
            f"the {kind} schedule depends on the {_and(shape.needs)}, so it is usable only "
            f"where they are known (serialrepro simulate --sigmas {kind}:A:B:T, or a sweep "
            f"of an experiment config); no {_or(missing)} was given")
    if kind not in SCHEDULE_RESOLVERS:
        raise UserInputError(f"the {kind} schedule has no resolver: the module that solves "
                             "it (serialrepro.grid.optimize) was not imported")
    return list(_context_levels(kind, int(T), tuple(params.items()), context))


def scale_to_total_variance(levels: list[float], total_variance: float) -> list[float]:
    """c·levels with c chosen so that Σ (c σ_t)² = ``total_variance`` (equal total noise)."""
    ss = sum(s * s for s in levels)
    if ss <= 0:
        raise UserInputError("cannot rescale an all-zero schedule to a total variance")
    c = math.sqrt(total_variance / ss)
    return [c * s for s in levels]


def level_for_std(family: str | NoiseFamily, std: float) -> float:
    """The level of ``family`` whose per-step displacement has per-axis std ``std``."""
    return get_family(family).level_for_std(std)


def displacement_std(family: str | NoiseFamily, level: float) -> float | None:
    """Per-axis std of the displacement y − x of one step of ``family`` at ``level``."""
    return get_family(family).displacement_std(level)


def check_representable(family: NoiseFamily, levels: list[float]) -> list[float]:
    """Refuse levels that are not finite, or standard deviations so small that σ²
    underflows in float64 (every score of such a run would be NaN)."""
    for t, s in enumerate(levels, start=1):
        if not math.isfinite(s):
            raise UserInputError(f"level {t} of the schedule is {s!r}, not a finite number")
        if family.sigma_is_std and 0 < s < MIN_STD_LEVEL:
            raise UserInputError(
                f"level {t} of the schedule, σ={s:g}, is below {MIN_STD_LEVEL:.3g}: σ² "
                "underflows in float64; use a larger noise level")
    return levels


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
        params = SCHEDULE_SHAPES[self.kind].params if self.kind in SCHEDULE_SHAPES else ()
        base = f"{self.kind} " + "→".join(f"{getattr(self, p):g}" for p in params)
        if self.total_variance is not None:
            base += f", Σσ²={self.total_variance:g}"
        if self.match_std:
            base += ", equal std"
        return base

    def levels(self, T: int, family: str | NoiseFamily,
               context: ScheduleContext | None = None) -> list[float]:
        """σ_1…σ_T for ``family``: shape, then total-variance scaling, then std matching.

        ``context`` is what a shape that needs one is solved for (its family must be
        ``family``); without it such a shape is a one-line :class:`UserInputError`."""
        fam = get_family(family)
        if needs_context(self.kind):
            if self.total_variance is not None or self.match_std:
                raise UserInputError(
                    f"a {self.kind} schedule is solved for its family's own levels: "
                    "total_variance and match_std do not apply to it")
            if context is not None and context.family is not None and (
                    get_family(context.family).name != fam.name):
                raise UserInputError(f"a {self.kind} schedule for {fam.name} was given the "
                                     f"context of family {context.family!r}")
        levels = schedule_shape(self.kind, T, self.start, self.end, self.value, context)
        if self.total_variance is not None:
            if not (fam.sigma_is_std or self.match_std):
                std = ", ".join(n for n, f in FAMILIES.items() if f.sigma_is_std)
                raise UserInputError(
                    f"total_variance needs a family whose σ is a standard deviation "
                    f"({std}) or match_std: true; {fam.name!r} is neither")
            levels = scale_to_total_variance(levels, self.total_variance)
        if self.match_std:
            levels = [fam.level_for_std(s) for s in levels]
        return levels

