"""Experiment kinds: how a config's conditions become cells, results and table rows.

A config's ``kind`` (default ``grid-sweep``) names an :class:`ExperimentKind`; its
``plot`` names a drawing (:data:`serialrepro.experiments.figures.PLOTS`) and its
``verdict`` the plotting-free findings and judgement
(:data:`serialrepro.experiments.verdicts.VERDICTS`). The pipeline knows nothing else
about an experiment, so a new kind of experiment (one whose cells run an optimiser per
condition rather than one grid simulation, say) plugs in without touching it:

1. write a module with the kind's functions and call :func:`register_kind` at its top
   level (``expand(config, quick) -> cells``; each cell has ``key`` (a file-name-safe
   str, a hash of everything the result depends on), ``keep`` (bool: store arrays too)
   and ``experiment`` (the config's name), and may have ``description`` (how the progress
   bar names it; default: the key); ``payload(cell) -> dict``, a plain dict that
   travels to a worker; ``compute(payload, keep, threads) -> (record, arrays | None)``,
   a top-level (picklable) function whose record holds ``"key"`` and ``"seconds"``;
   ``row(cell, record) -> dict``, the table row, with ``experiment``, ``cell`` and
   ``seconds`` (the cell's computation time, from its record) columns;
   ``check(record) -> str | None``, why a stored record cannot be trusted);
2. add the module's name to :data:`KIND_MODULES` (as ``_COMMAND_MODULES`` lists CLI
   modules), so it is imported when a config is validated;
3. register its drawing with :func:`serialrepro.experiments.figures.register_plot` and its
   verdict with :func:`serialrepro.experiments.verdicts.register_verdict` (the verdict
   names the plot it writes findings for);
4. ship the experiment as one YAML file in ``experiments/configs`` with ``kind:``,
   ``plot:``, ``verdict:`` and, to be part of ``serialrepro reproduce``, ``reproduce: N``.

Cells are stored by :class:`~serialrepro.store.CellStore` (atomic,
checksummed, re-validated with the kind's ``check`` on every read), so every kind
resumes an interrupted run the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serialrepro.experiments.config import expand
from serialrepro.experiments.results import cell_row
from serialrepro.experiments.runner import _payload, compute_cell
from serialrepro.store import grid_record_problem

#: modules that register experiment kinds when imported (beside the built-in grid sweep)
KIND_MODULES: tuple[str, ...] = ("serialrepro.experiments.optimal_kind",)


@dataclass(frozen=True)
class ExperimentKind:
    name: str
    expand: Callable[[Any, bool], list]
    payload: Callable[[Any], dict]
    compute: Callable[..., tuple[dict, dict | None]]
    row: Callable[[Any, dict], dict]
    check: Callable[[dict], str | None]
    description: str = ""


KINDS: dict[str, ExperimentKind] = {}


def register_kind(kind: ExperimentKind) -> ExperimentKind:
    KINDS[kind.name] = kind
    return kind


register_kind(ExperimentKind(
    "grid-sweep", expand=expand, payload=_payload, compute=compute_cell, row=cell_row,
    check=grid_record_problem,
    description="one exact grid simulation per condition (serialrepro.grid.simulate)"))

for _module in KIND_MODULES:
    importlib.import_module(_module)


def get_kind(name: str) -> ExperimentKind:
    from serialrepro.errors import unknown_name

    if name not in KINDS:
        raise unknown_name("experiment kind", name, KINDS)
    return KINDS[name]
