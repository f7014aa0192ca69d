"""Experiments as data: a validated config that expands into cells (docs/design.md §3).

A config names an experiment and lists one or more *sweep blocks*. Each block is the
Cartesian product of its axes — prior, grid, noise family, step, schedule, seed and
number of steps T — and every axis takes a single value or a list (numeric axes also a
range). The cells of all blocks, in order, are the experiment's conditions::

    name: fig3
    title: "Figure 3: graduality and complexity"
    plot: kl-vs-T          # the drawing (figures.PLOTS)
    verdict: kl-falls      # the findings and judgement (verdicts.VERDICTS; default: the plot's)
    reference: golden      # or {experiment: fig2, where: {noise: gaussian}, label: Figure 2}
    reproduce: 2           # position in `serialrepro reproduce` (unset: not part of it)
    sweeps:
      - noise: gaussian
        T: [2, 3, 6, 12, 24, 48, 100]
        schedule: {kind: linear, start: 0.01, end: 0.05}
        grid: paper:0.04

Nothing in the code looks at an experiment's name: what the report draws, concludes and
compares with comes from these fields, so adding an experiment is adding one YAML file
(``kind`` names how its cells are computed, :mod:`serialrepro.experiments.kinds`).

Validation is strict (pydantic, ``extra='forbid'``, no type coercion): an unknown key,
a value of the wrong type, an empty list or range, or an unknown family, prior, grid or
step fails before anything runs, with the key path in a one-line
:class:`~serialrepro.errors.UserInputError`. Levels that a family refuses (a fade level
above 1, a decreasing schedule) are found by expanding every cell, also before running.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from serialrepro import configio
from serialrepro.budget import MAX_SEED, check_memory
from serialrepro.configio import StrictModel, read_yaml, short_repr
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.experiments.golden import FIG3_GOLDEN, GOLDEN_CONDITIONS
from serialrepro.families import get_family
from serialrepro.grid.kernels import check_dense_fits, check_schedule, resolve_backend
from serialrepro.grid.optimize import equal_complexity_shape  # noqa: F401 (its resolver)
from serialrepro.grid.priors import PRIORS
from serialrepro.grid.process import STEPS
from serialrepro.grid.space import parse_grid
from serialrepro.schedules import (  # noqa: F401 (MIN_STD_LEVEL: re-exported)
    MIN_STD_LEVEL,
    SCHEDULE_KINDS,
    Schedule,
    ScheduleContext,
    check_representable,
    needs_context,
)

#: bump when the meaning of a stored cell result changes (it is part of every cell key)
CELL_FORMAT = 1


class IntRange(StrictModel):
    """Integers from ``start`` to ``stop`` inclusive: every ``step``-th, or ``num`` values
    spaced linearly or logarithmically (rounded, duplicates dropped)."""

    start: int
    stop: int
    step: Annotated[int, Field(gt=0)] | None = None
    num: Annotated[int, Field(gt=0)] | None = None
    spacing: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if self.step is not None and self.num is not None:
            raise ValueError("give either 'step' or 'num', not both")
        if self.stop < self.start:
            raise ValueError(f"range {self.start}..{self.stop} is empty (stop < start)")
        if self.spacing == "log" and (self.num is None or self.start <= 0):
            raise ValueError("a log-spaced range needs 'num' and start > 0")
        if self.count() > MAX_RANGE_VALUES:
            raise ValueError(f"range {self.start}..{self.stop} gives {self.count()} values; "
                             f"the limit is {MAX_RANGE_VALUES}")
        return self

    def count(self) -> int:
        """How many values :meth:`values` gives at most (arithmetic, nothing built)."""
        if self.num is not None:
            return self.num
        return (self.stop - self.start) // (self.step or 1) + 1

    def values(self) -> list[int]:
        if self.num is None:
            return list(range(self.start, self.stop + 1, self.step or 1))
        if self.num == 1:
            return [self.start]
        vals = _spaced(float(self.start), float(self.stop), self.num, self.spacing)
        return list(dict.fromkeys(int(round(v)) for v in vals))


class FloatRange(StrictModel):
    """``num`` floats from ``start`` to ``stop`` inclusive, linear or log spacing."""

    start: float
    stop: float
    num: Annotated[int, Field(gt=0)]
    spacing: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if not (math.isfinite(self.start) and math.isfinite(self.stop)):
            raise ValueError(f"range {self.start}..{self.stop} must have finite ends")
        if self.spacing == "log" and (self.start <= 0 or self.stop <= 0):
            raise ValueError("a log-spaced range needs start > 0 and stop > 0")
        if self.num > MAX_RANGE_VALUES:
            raise ValueError(f"range num={self.num} is above the limit of {MAX_RANGE_VALUES}")
        return self

    def count(self) -> int:
        return self.num

    def values(self) -> list[float]:
        if self.num == 1:
            return [self.start]
        return _spaced(self.start, self.stop, self.num, self.spacing)


def _spaced(a: float, b: float, num: int, spacing: str) -> list[float]:
    if spacing == "log":
        return [math.exp(math.log(a) + (math.log(b) - math.log(a)) * i / (num - 1))
                for i in range(num)]
    return [a + (b - a) * i / (num - 1) for i in range(num)]


NonEmpty = Field(min_length=1)
FloatAxis = float | Annotated[list[float], NonEmpty] | FloatRange
IntAxis = int | Annotated[list[int], NonEmpty] | IntRange
StrAxis = str | Annotated[list[str], NonEmpty]

#: most cells one config may expand to (each is a separate simulation)
MAX_CELLS = 100_000
#: most values one range may give (before the product over axes)
MAX_RANGE_VALUES = 100_000
#: longest experiment name (it names the results folder)
MAX_NAME_LENGTH = 100


def _as_list(value: Any) -> list:
    if value is None:
        return [None]
    if isinstance(value, IntRange | FloatRange):
        return value.values()
    if isinstance(value, list):
        return value
    return [value]


def _axis_len(value: Any) -> int:
    """``len(_as_list(value))`` (at most, for int ranges) without building the list."""
    if isinstance(value, IntRange | FloatRange):
        return value.count()
    if isinstance(value, list):
        return len(value)
    return 1


def _each(value: Any, check) -> Any:
    for v in _as_list(value):
        check(v)
    return value


def _check_unique(value: Any, what: str, normalise=lambda v: v) -> None:
    """Refuse a list axis that gives the same value twice (it would run the same
    condition twice and make two rows the figures cannot tell apart)."""
    if not isinstance(value, list):
        return
    seen: dict[Any, Any] = {}
    for v in value:
        k = normalise(v)
        if k in seen:
            twice = short_repr(v) if v == seen[k] else f"{short_repr(seen[k])} and {short_repr(v)}"
            raise ValueError(f"{what} value {twice} is given twice; list each value once")
        seen[k] = v


def _check_noise(name: str) -> None:
    get_family(name)  # raises the standard unknown-name error


def _check_prior(spec: str) -> None:
    if spec.startswith("image:"):
        from serialrepro.loaders import load_image_prior

        load_image_prior(spec.removeprefix("image:"))  # readable, bounded, not all black
        return
    if spec not in PRIORS:
        raise unknown_name("prior", spec, [*PRIORS, "image:PATH"])


def _check_grid(spec: str) -> None:
    parse_grid(spec)


def _grid_label(spec: str) -> str:
    return parse_grid(spec).label


def _check_step(step: str) -> None:
    if step not in STEPS:
        raise unknown_name("step", step, STEPS)


class ScheduleSpec(StrictModel):
    """A schedule shape; ``start``, ``end`` and ``value`` may be lists or ranges, which
    expand into one schedule per combination."""

    kind: str
    start: FloatAxis | None = None
    end: FloatAxis | None = None
    value: FloatAxis | None = None
    #: rescale so that Σ σ_t² equals this (equal total noise; see schedules.py)
    total_variance: Annotated[float, Field(gt=0)] | None = None
    #: read the shape as per-axis displacement stds and map them to each family's level
    match_std: bool = False

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in SCHEDULE_KINDS:
            raise unknown_name("schedule kind", v, SCHEDULE_KINDS)
        return v

    @field_validator("start", "end", "value")
    @classmethod
    def _finite_unique(cls, v, info: ValidationInfo):
        for x in _as_list(v):
            if x is not None and not math.isfinite(x):
                raise ValueError(f"schedule {info.field_name} {x!r} is not a finite number")
        _check_unique(v, f"schedule {info.field_name}")
        return v

    @model_validator(mode="after")
    def _fields(self) -> ScheduleSpec:
        if self.kind == "constant":
            if self.value is None:
                raise ValueError("a constant schedule needs 'value'")
            if self.start is not None or self.end is not None:
                raise ValueError("a constant schedule takes 'value', not 'start'/'end'")
        else:
            if self.start is None or self.end is None:
                raise ValueError(f"a {self.kind} schedule needs 'start' and 'end'")
            if self.value is not None:
                raise ValueError(f"a {self.kind} schedule takes 'start'/'end', not 'value'")
        if needs_context(self.kind) and (self.total_variance is not None or self.match_std):
            raise ValueError(f"a {self.kind} schedule is solved for each family's own levels: "
                             "total_variance and match_std do not apply to it")
        return self

    def count(self) -> int:
        """How many schedules :meth:`expand` gives (arithmetic, nothing built)."""
        return _axis_len(self.start) * _axis_len(self.end) * _axis_len(self.value)

    def expand(self) -> list[Schedule]:
        return [
            Schedule(self.kind, s, e, v, self.total_variance, self.match_std)
            for s, e, v in itertools.product(
                _as_list(self.start), _as_list(self.end), _as_list(self.value))
        ]


ScheduleAxis = ScheduleSpec | Annotated[list[ScheduleSpec], NonEmpty]


def _check_T(t: int) -> None:
    if t < 1:
        raise ValueError(f"the number of steps T={t} must be ≥ 1")


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {short_repr(seed)} is out of range; seeds lie in 0..2^63 - 1")


#: the check each named axis applies to every one of its values
_AXIS_CHECKS = {"noise": _check_noise, "prior": _check_prior, "grid": _check_grid,
                "step": _check_step, "T": _check_T, "seed": _check_seed}
#: what makes two values of an axis the same condition (e.g. paper:0.04 and paper:0.040)
_AXIS_KEYS = {"grid": _grid_label}


class _Axes(StrictModel):
    """The axes a sweep block (and a quick override) can set."""

    prior: StrAxis | None = None
    noise: StrAxis | None = None
    step: StrAxis | None = None
    grid: StrAxis | None = None
    T: IntAxis | None = None
    schedule: ScheduleAxis | None = None
    seed: IntAxis | None = None

    @field_validator("noise", "prior", "grid", "step", "T", "seed")
    @classmethod
    def _values(cls, v, info: ValidationInfo):
        if v is None:  # unset (an explicit null): the default applies, or it is required
            return v
        name = info.field_name
        _each(v, _AXIS_CHECKS[name])
        _check_unique(v, name, _AXIS_KEYS.get(name, lambda x: x))
        return v

    @field_validator("schedule")
    @classmethod
    def _schedules(cls, v):
        if v is None:
            return v
        specs = _as_list(v)
        n = sum(spec.count() for spec in specs)
        if n > MAX_CELLS:
            raise ValueError(f"the schedules expand to {n} schedules; the limit is {MAX_CELLS}")
        seen: set[str] = set()
        for sched in (s for spec in specs for s in spec.expand()):
            if sched.label in seen:
                raise ValueError(f"schedule {sched.label} is given twice; list each once")
            seen.add(sched.label)
        return v


class Sweep(_Axes):
    """One block of conditions: the product of its axes (unset axes take defaults)."""

    #: the paper figure these conditions belong to (defaults to the experiment's)
    figure: str | None = None
    #: a short name for the block, used in figure legends and captions
    label: str | None = None

    @model_validator(mode="after")
    def _required(self) -> Sweep:
        if self.T is None:
            raise ValueError("a sweep needs 'T' (the number of steps)")
        if self.schedule is None:
            raise ValueError("a sweep needs 'schedule'")
        return self


class ExperimentReference(StrictModel):
    """Another experiment of the same run that this one is compared with: its rows
    (those matching every ``where`` column = value) go to the verdict and the figures."""

    experiment: str
    where: dict[str, str | int | float] | None = None
    #: how the figures and sentences name it (default: the experiment's name)
    label: str = ""


class ExperimentConfig(StrictModel):
    """A named experiment: metadata for the report plus its sweep blocks.

    What the report does with the rows is data too: ``plot`` picks the drawing
    (:data:`serialrepro.experiments.figures.PLOTS`), ``verdict`` the computed findings and
    the judgement on ``claim`` (:data:`serialrepro.experiments.verdicts.VERDICTS`; default:
    the plot's), ``reference`` what the rows are checked against (``golden``: the authors'
    table of docs/design.md §2; or another experiment of the run), ``kind`` how the cells
    are computed (:data:`serialrepro.experiments.kinds.KINDS`), and ``reproduce`` the
    position in ``serialrepro reproduce`` (unset: not part of it)."""

    name: Annotated[str, Field(max_length=MAX_NAME_LENGTH,
                               pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    title: str = ""
    figure: str = ""
    section: Literal["paper", "extension", "custom"] = "custom"
    description: str = ""
    #: what the paper claims about these conditions (shown in the figure caption)
    claim: str = ""
    #: how the cells are computed (a key of serialrepro.experiments.kinds.KINDS)
    kind: str = "grid-sweep"
    #: how the report draws the experiment (a key of serialrepro.experiments.figures.PLOTS)
    plot: str = "kl-vs-T"
    #: what the report concludes from the rows (a key of serialrepro.experiments.verdicts.
    #: VERDICTS; None: the plot's default verdict)
    verdict: str | None = None
    #: what the rows are checked against: the golden table or another experiment
    reference: Literal["golden"] | ExperimentReference | None = None
    #: position in ``serialrepro reproduce`` (None: not part of it)
    reproduce: Annotated[int, Field(ge=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    backend: Literal["auto", "dense", "fft"] = "auto"
    #: keep q_0..q_T and r_0..r_T of every cell (needed by process plots)
    keep_distributions: bool = False
    sweeps: Annotated[list[Sweep], NonEmpty]
    #: axes that replace every block's under ``--quick``
    quick: _Axes | None = None

    @model_validator(mode="after")
    def _registered(self) -> ExperimentConfig:
        from serialrepro.experiments.figures import PLOTS
        from serialrepro.experiments.kinds import KINDS
        from serialrepro.experiments.verdicts import VERDICTS

        if self.kind not in KINDS:
            raise unknown_name("experiment kind", self.kind, KINDS)
        if self.plot not in PLOTS:
            raise unknown_name("plot", self.plot, PLOTS)
        if PLOTS[self.plot].needs_distributions and not self.keep_distributions:
            raise ValueError(f"plot: {self.plot} draws the distributions; it needs "
                             "keep_distributions: true")
        verdict = self.verdict_name
        if verdict not in VERDICTS:
            raise unknown_name("verdict", verdict, VERDICTS)
        kind = VERDICTS[verdict]
        if self.plot not in kind.plots:
            raise ValueError(f"verdict {verdict} writes findings for plot "
                             f"{' or '.join(kind.plots)}, not plot {self.plot}")
        ref = "golden" if self.reference == "golden" else (
            "experiment" if self.reference is not None else None)
        if kind.reference is not None and ref != kind.reference:
            raise ValueError(f"verdict {verdict} needs reference: "
                             + ("golden" if kind.reference == "golden" else
                                "{experiment: NAME}"))
        if isinstance(self.reference, ExperimentReference) and (
                self.reference.experiment == self.name):
            raise ValueError(f"experiment {self.name} cannot be its own reference")
        return self

    @property
    def verdict_name(self) -> str:
        """``verdict``, or the plot's default verdict."""
        from serialrepro.experiments.verdicts import DEFAULT_VERDICT

        return self.verdict or DEFAULT_VERDICT.get(self.plot, "")


_DEFAULTS = {"prior": "swiss-roll", "noise": "gaussian", "step": "serial", "grid": "paper:0.04"}


@dataclass(frozen=True)
class Cell:
    """One condition, fully resolved: everything the computation depends on, plus the
    experiment's labels for it (which are not part of its key)."""

    prior: str
    grid: str
    noise: str
    step: str
    T: int
    sigmas: tuple[float, ...]
    seed: int
    backend: str
    schedule: str
    experiment: str = ""
    figure: str = ""
    label: str = ""
    keep: bool = False
    #: sha256 of an image prior's file, so an edited image is not served from the cache
    prior_digest: str = ""

    @property
    def description(self) -> str:
        """The cell as the progress bar names it."""
        return f"{self.experiment}: {self.noise}, {self.step}, T={self.T}, {self.grid}"

    def compute_spec(self) -> dict:
        """The fields the result depends on (the key is a hash of these)."""
        spec = {
            "format": CELL_FORMAT, "prior": self.prior, "grid": self.grid, "noise": self.noise,
            "step": self.step, "T": self.T, "sigmas": [float(s) for s in self.sigmas],
            "seed": self.seed, "backend": self.backend,
        }
        if self.prior_digest:
            spec["prior_sha256"] = self.prior_digest
        return spec

    @property
    def key(self) -> str:
        """A stable hash of the resolved computation (floats written with repr, which
        round-trips exactly), so the same condition has the same key in every run."""
        text = json.dumps(self.compute_spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _prior_digest(prior: str) -> str:
    if not prior.startswith("image:"):
        return ""
    return hashlib.sha256(Path(prior.removeprefix("image:")).read_bytes()).hexdigest()


def _effective_axes(sweep: Sweep, quick: _Axes | None) -> dict:
    axes = {k: getattr(sweep, k) for k in _Axes.model_fields}
    if quick is not None:
        for k in _Axes.model_fields:
            if getattr(quick, k) is not None:
                axes[k] = getattr(quick, k)
    for k, v in _DEFAULTS.items():
        if axes[k] is None:
            axes[k] = v
    return axes


def _max_T(value: Any) -> int:
    if isinstance(value, IntRange):
        return max(value.start, value.stop)
    return max(_as_list(value))


def cell_bytes(space, T: int, backend: str) -> int:
    """Peak memory of one cell (integer arithmetic, nothing built): the simulation keeps
    q_0..q_T and r_0..r_T (``2 (T + 1) M`` float64 values, docs/design.md §2) and the
    schedule's levels, plus its kernel: a dense M×M matrix with its per-axis offset tables
    (``(D + 3) M²`` values, as :func:`~serialrepro.grid.kernels.check_dense_fits` counts)
    or, on the FFT path, a complex spectrum and its transform buffer (``4 M`` values)."""
    m = space.size
    kernel = (space.dims + 3) * m * m * 8 if backend == "dense" else 4 * m * 8
    return 2 * (T + 1) * m * 8 + kernel + 64 * T


def check_cost(config: ExperimentConfig, quick: bool = False) -> int:
    """Refuse, by arithmetic on the validated config alone, a sweep whose cells are too
    many (:data:`MAX_CELLS`) or whose largest cell, or whose expansion, would not fit in
    memory (:func:`serialrepro.budget.check_memory`). Returns the number of cells."""
    total = 0
    for i, sweep in enumerate(config.sweeps):
        axes = _effective_axes(sweep, config.quick if quick else None)
        n_sched = sum(spec.count() for spec in _as_list(axes["schedule"]))
        n_seed = _axis_len(axes["seed"]) if axes["seed"] is not None else 1
        n = (n_sched * n_seed * _axis_len(axes["T"]) * _axis_len(axes["prior"])
             * _axis_len(axes["grid"]) * _axis_len(axes["noise"]) * _axis_len(axes["step"]))
        total += n
        if total > MAX_CELLS:
            raise UserInputError(
                f"{config.name}: the sweeps expand to more than {MAX_CELLS} cells "
                f"(sweeps.{i} alone has {n}); give fewer axis values")
        T = _max_T(axes["T"])
        for grid in _as_list(axes["grid"]):
            try:
                space = parse_grid(grid)
                backend = resolve_backend(space, config.backend)
            except UserInputError as exc:
                raise UserInputError(f"{config.name}: sweeps.{i} ({grid}): {exc}") from None
            hint = "use a coarser grid (larger paper:H, smaller torus:N) or a smaller T"
            if backend == "dense" and space.supports_fft:
                hint = "use backend: fft (or auto) on this torus grid, " + hint
            check_memory(f"{config.name}: sweeps.{i} (grid {space.label}, M={space.size} "
                         f"points, T={T}, {backend} backend)", cell_bytes(space, T, backend),
                         hint)
        # the expanded cells hold their levels as Python floats (~32 bytes each)
        check_memory(f"{config.name}: sweeps.{i} ({n} cells, T up to {T})",
                     n * (32 * T + 2048), "give fewer axis values or a smaller T")
    return total


def expand(config: ExperimentConfig, quick: bool = False) -> list[Cell]:
    """Every cell of ``config`` in a fixed order (blocks in order; within a block the
    product prior × grid × noise × step × schedule × seed × T). The cost is checked by
    arithmetic first (:func:`check_cost`); then levels are resolved and checked against
    each family, so bad values fail before anything runs."""
    check_cost(config, quick)
    cells: list[Cell] = []
    digests: dict[str, str] = {}
    #: a row of the table (what the figures index by) → the block that first gave it
    rows: dict[tuple, int] = {}
    for i, sweep in enumerate(config.sweeps):
        axes = _effective_axes(sweep, config.quick if quick else None)
        schedules = [s for spec in _as_list(axes["schedule"]) for s in spec.expand()]
        seeds = _as_list(axes["seed"]) if axes["seed"] is not None else [config.seed]
        product = itertools.product(
            _as_list(axes["prior"]), _as_list(axes["grid"]), _as_list(axes["noise"]),
            _as_list(axes["step"]), schedules, seeds, _as_list(axes["T"]))
        for prior, grid, noise, step, sched, seed, T in product:
            try:
                space = parse_grid(grid)
                fam = get_family(noise)
                backend = resolve_backend(space, config.backend)
                if backend == "dense":
                    check_dense_fits(space)  # a grid too large for memory fails now
                # a shape that needs them (equal-complexity) is solved for this prior, grid
                # and family, once per condition (schedules.py caches it)
                context = ScheduleContext(prior=prior, grid=space.label, family=fam.name,
                                          backend=backend)
                levels = check_representable(
                    fam, check_schedule(fam, sched.levels(T, fam.name, context)))
            except UserInputError as exc:
                raise UserInputError(
                    f"{config.name}: sweeps.{i} ({noise}, {sched.label}, T={T}, {grid}): {exc}"
                ) from None
            figure, label = sweep.figure or config.figure, sweep.label or ""
            row = (figure, label, prior, space.label, fam.name, step, sched.label, seed, T)
            if row in rows:
                raise UserInputError(
                    f"{config.name}: sweeps.{rows[row]} and sweeps.{i} both give the condition "
                    f"({noise}, {step}, {sched.label}, T={T}, {grid}, seed {seed}) with the "
                    "same figure and label; give each condition once (or a distinct label)")
            rows[row] = i
            if prior not in digests:
                digests[prior] = _prior_digest(prior)
            cells.append(Cell(
                prior=prior, grid=space.label, noise=fam.name, step=step, T=int(T),
                sigmas=tuple(levels), seed=int(seed), backend=backend, schedule=sched.label,
                experiment=config.name, figure=figure, label=label,
                keep=config.keep_distributions, prior_digest=digests[prior]))
    if config.reference == "golden" and not any(is_golden_condition(c) for c in cells):
        conditions = ", ".join(f"{k} {v}" for k, v in GOLDEN_CONDITIONS.items())
        raise UserInputError(
            f"{config.name}: reference: golden, but no cell"
            + (" (with --quick)" if quick else "") + f" is at the golden conditions "
            f"({conditions}, T in {', '.join(map(str, FIG3_GOLDEN))}); run them or drop "
            "the reference")
    return cells


def is_golden_condition(cell: Cell) -> bool:
    """Whether ``cell`` is one of the conditions of the golden table (docs/design.md §2)."""
    want = GOLDEN_CONDITIONS
    return (cell.prior == want["prior"] and cell.grid == want["grid"]
            and cell.noise == want["noise"] and cell.step == want["step"]
            and cell.T in FIG3_GOLDEN
            and math.isclose(cell.sigmas[0], want["sigma_start"], rel_tol=0, abs_tol=1e-12)
            and math.isclose(cell.sigmas[-1], want["sigma_end"], rel_tol=0, abs_tol=1e-12))


# -- loading -------------------------------------------------------------------------

def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a config given as a mapping (e.g. from YAML)."""
    if not isinstance(data, dict):
        raise UserInputError(f"invalid config {source}: the top level must be a mapping of keys")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(configio.format_validation_error(exc, source, ExperimentConfig)
                             ) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML config file (``yaml.safe_load``: files are untrusted)."""
    return parse_config(read_yaml(path), str(path))


def load_configs(path: str | Path) -> list[ExperimentConfig]:
    """One experiment, or several under a top-level ``experiments:`` list (the format of
    ``config.resolved.yaml``, so a results folder's resolved config runs again as is)."""
    data = read_yaml(path)
    if isinstance(data, dict) and set(data) == {"experiments"}:
        items = data["experiments"]
        if not isinstance(items, list) or not items:
            raise UserInputError(f"invalid config {str(path)}: experiments: give a non-empty "
                                 "list of experiments")
        return [parse_config(item, f"{path} (experiments.{i})") for i, item in enumerate(items)]
    return [parse_config(data, str(path))]


def _schedule_dict(s: Schedule) -> dict:
    out: dict[str, Any] = {"kind": s.kind}
    if s.kind == "constant":
        out["value"] = s.value
    else:
        out["start"], out["end"] = s.start, s.end
    if s.total_variance is not None:
        out["total_variance"] = s.total_variance
    if s.match_std:
        out["match_std"] = True
    return out


def resolved_dict(config: ExperimentConfig, quick: bool = False) -> dict:
    """The config as it runs, itself a valid config: defaults filled in, the quick
    override applied, ranges expanded into lists (what ``config.resolved.yaml`` holds).
    Validating it again gives the same cells, with the same keys."""
    out = config.model_dump(mode="json", exclude={"quick", "sweeps"})
    out["verdict"] = config.verdict_name
    if isinstance(config.reference, ExperimentReference):
        out["reference"] = config.reference.model_dump(mode="json", exclude_none=True)
    sweeps = []
    for sweep in config.sweeps:
        axes = _effective_axes(sweep, config.quick if quick else None)
        block: dict[str, Any] = {"figure": sweep.figure or config.figure,
                                 "label": sweep.label or ""}
        for k in ("prior", "grid", "noise", "step"):
            block[k] = _as_list(axes[k])
        block["schedule"] = [_schedule_dict(s) for spec in _as_list(axes["schedule"])
                             for s in spec.expand()]
        block["seed"] = _as_list(axes["seed"]) if axes["seed"] is not None else [config.seed]
        block["T"] = _as_list(axes["T"])
        sweeps.append(block)
    out["sweeps"] = sweeps
    return out
