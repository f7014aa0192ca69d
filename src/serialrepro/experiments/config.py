"""Experiments as data: a validated config that expands into cells (DESIGN §3).

A config names an experiment and lists one or more *sweep blocks*. Each block is the
Cartesian product of its axes — prior, grid, noise family, step, schedule, seed and
number of steps T — and every axis takes a single value or a list (numeric axes also a
range). The cells of all blocks, in order, are the experiment's conditions::

    name: fig3
    title: "Figure 3: graduality and complexity"
    sweeps:
      - noise: gaussian
        T: [2, 3, 6, 12, 24, 48, 100]
        schedule: {kind: linear, start: 0.01, end: 0.05}
        grid: paper:0.04

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
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from serialrepro.configio import read_yaml
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.experiments.schedules import SCHEDULE_KINDS, Schedule
from serialrepro.families import get_family
from serialrepro.grid.kernels import check_dense_fits, check_schedule, resolve_backend
from serialrepro.grid.priors import PRIORS
from serialrepro.grid.process import STEPS
from serialrepro.grid.space import parse_grid

#: bump when the meaning of a stored cell result changes (it is part of every cell key)
CELL_FORMAT = 1

PLOTS = ("process", "kl-vs-T", "families", "schedules")
SECTIONS = ("paper", "extension", "custom")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IntRange(_Strict):
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
        return self

    def values(self) -> list[int]:
        if self.num is None:
            return list(range(self.start, self.stop + 1, self.step or 1))
        if self.num == 1:
            return [self.start]
        vals = _spaced(float(self.start), float(self.stop), self.num, self.spacing)
        return list(dict.fromkeys(int(round(v)) for v in vals))


class FloatRange(_Strict):
    """``num`` floats from ``start`` to ``stop`` inclusive, linear or log spacing."""

    start: float
    stop: float
    num: Annotated[int, Field(gt=0)]
    spacing: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        if self.spacing == "log" and (self.start <= 0 or self.stop <= 0):
            raise ValueError("a log-spaced range needs start > 0 and stop > 0")
        return self

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


def _as_list(value: Any) -> list:
    if value is None:
        return [None]
    if isinstance(value, IntRange | FloatRange):
        return value.values()
    if isinstance(value, list):
        return value
    return [value]


def _each(value: Any, check) -> Any:
    for v in _as_list(value):
        check(v)
    return value


def _check_noise(name: str) -> None:
    get_family(name)  # raises the standard unknown-name error


def _check_prior(spec: str) -> None:
    if spec.startswith("image:"):
        path = Path(spec.removeprefix("image:"))
        if not path.is_file():
            raise ValueError(f"image file {str(path)!r} does not exist")
        return
    if spec not in PRIORS:
        raise unknown_name("prior", spec, [*PRIORS, "image:PATH"])


def _check_grid(spec: str) -> None:
    parse_grid(spec)


def _check_step(step: str) -> None:
    if step not in STEPS:
        raise unknown_name("step", step, STEPS)


class ScheduleSpec(_Strict):
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
        return self

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


#: the check each named axis applies to every one of its values
_AXIS_CHECKS = {"noise": _check_noise, "prior": _check_prior, "grid": _check_grid,
                "step": _check_step, "T": _check_T}


class _Axes(_Strict):
    """The axes a sweep block (and a quick override) can set."""

    prior: StrAxis | None = None
    noise: StrAxis | None = None
    step: StrAxis | None = None
    grid: StrAxis | None = None
    T: IntAxis | None = None
    schedule: ScheduleAxis | None = None
    seed: IntAxis | None = None

    @field_validator("noise", "prior", "grid", "step", "T")
    @classmethod
    def _values(cls, v, info: ValidationInfo):
        return _each(v, _AXIS_CHECKS[info.field_name])


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


class ExperimentConfig(_Strict):
    """A named experiment: metadata for the report plus its sweep blocks."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    title: str = ""
    figure: str = ""
    section: Literal["paper", "extension", "custom"] = "custom"
    description: str = ""
    #: what the paper claims about these conditions (shown in the figure caption)
    claim: str = ""
    #: how the report draws the experiment
    plot: Literal["process", "kl-vs-T", "families", "schedules"] = "kl-vs-T"
    seed: int = 0
    backend: Literal["auto", "dense", "fft"] = "auto"
    #: keep q_0..q_T and r_0..r_T of every cell (needed by process plots)
    keep_distributions: bool = False
    sweeps: Annotated[list[Sweep], NonEmpty]
    #: axes that replace every block's under ``--quick``
    quick: _Axes | None = None

    @model_validator(mode="after")
    def _process_needs_distributions(self) -> ExperimentConfig:
        if self.plot == "process" and not self.keep_distributions:
            raise ValueError("plot: process draws the distributions; it needs "
                             "keep_distributions: true")
        return self


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


def expand(config: ExperimentConfig, quick: bool = False) -> list[Cell]:
    """Every cell of ``config`` in a fixed order (blocks in order; within a block the
    product prior × grid × noise × step × schedule × seed × T). Levels are resolved and
    checked against each family here, so bad values fail before anything runs."""
    cells: list[Cell] = []
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
                levels = check_schedule(fam, sched.levels(T, fam.name))
                backend = resolve_backend(space, config.backend)
                if backend == "dense":
                    check_dense_fits(space)  # a grid too large for memory fails now
            except UserInputError as exc:
                raise UserInputError(
                    f"{config.name}: sweeps.{i} ({noise}, {sched.label}, T={T}, {grid}): {exc}"
                ) from None
            cells.append(Cell(
                prior=prior, grid=space.label, noise=fam.name, step=step, T=int(T),
                sigmas=tuple(levels), seed=int(seed), backend=backend, schedule=sched.label,
                experiment=config.name, figure=sweep.figure or config.figure,
                label=sweep.label or "", keep=config.keep_distributions,
                prior_digest=_prior_digest(prior)))
    return cells


# -- loading -------------------------------------------------------------------------

def _model_at(loc: Iterable) -> type[BaseModel] | None:
    """Best effort: the config model that owns the location ``loc`` (for 'valid keys')."""
    import typing

    model: type[BaseModel] | None = ExperimentConfig
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            # pydantic puts union member names (e.g. 'ScheduleSpec', 'list[...]') in loc
            continue
        found = None
        stack = [field.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                found = ann
                break
            stack.extend(typing.get_args(ann))
        model = found
    return model


def _all_keys() -> set[str]:
    keys: set[str] = set()
    for model in (ExperimentConfig, Sweep, _Axes, ScheduleSpec, IntRange, FloatRange):
        keys.update(model.model_fields)
    return keys


def _describe_type(msg: str) -> str:
    text = msg.removeprefix("Input should be ")
    m = re.match(r"a valid dictionary or instance of (\w+)", text)
    if m:
        return f"a mapping ({m.group(1)})"
    return text


def format_validation_error(exc: ValidationError, source: str) -> str:
    """All problems on one line, each with its key path.

    Pydantic reports every alternative of a union (``T: 10`` or ``T: [..]`` or a range);
    where one alternative got further (a deeper path, or a value check rather than a type
    check) only its message is kept; where all failed on type, they are merged into one
    "got X; expected A, B or C".
    """
    keys = _all_keys()
    items = []
    for err in exc.errors():
        raw = list(err["loc"])
        loc = [p for j, p in enumerate(raw) if isinstance(p, int) or p in keys
               or (err["type"] == "extra_forbidden" and j == len(raw) - 1)]
        items.append((tuple(loc), err))
    paths = [loc for loc, _ in items]
    groups: dict[tuple, list[dict]] = {}
    for loc, err in items:
        deeper = any(len(p) > len(loc) and p[:len(loc)] == loc for p in paths)
        if deeper and err["type"].endswith(("_type", "_parsing")):
            continue  # another union alternative went further: report that one
        groups.setdefault(loc, []).append(err)
    problems = []
    for loc, errs in groups.items():
        path = ".".join(str(p) for p in loc) or "(top level)"
        checks = [e for e in errs if not e["type"].endswith(("_type", "_parsing"))]
        if not checks:
            wanted = list(dict.fromkeys(_describe_type(e["msg"]) for e in errs))
            got = errs[0].get("input")
            expected = wanted[0] if len(wanted) == 1 else \
                ", ".join(wanted[:-1]) + " or " + wanted[-1]
            problems.append(f"{path}: got {got!r} ({type(got).__name__}); expected {expected}")
            continue
        for err in checks:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                owner = _model_at(loc[:-1])
                valid = ", ".join(owner.model_fields) if owner is not None else ""
                msg = f"unknown key {loc[-1]!r}" + (f"; valid keys here: {valid}" if valid else "")
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "too_short":
                msg = "is empty; give at least one value"
            problems.append(f"{path}: {msg}")
    problems = list(dict.fromkeys(problems))
    return f"invalid config {source}: " + "; ".join(problems)


def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a config given as a mapping (e.g. from YAML)."""
    if not isinstance(data, dict):
        raise UserInputError(f"invalid config {source}: the top level must be a mapping of keys")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(format_validation_error(exc, source)) from None


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
