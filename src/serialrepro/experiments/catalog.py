"""The named experiments shipped with the package (``experiments/configs/*.yaml``).

Which of them ``serialrepro reproduce`` runs, and in which order, is their ``reproduce:``
field; adding an experiment to the report is adding one YAML file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.experiments.config import ExperimentConfig, ExperimentReference, load_config


def config_dir() -> Path:
    return Path(str(resources.files("serialrepro.experiments") / "configs"))


def shipped_names(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or config_dir()).glob("*.yaml"))


def shipped_config(name: str, directory: Path | None = None) -> ExperimentConfig:
    path = (directory or config_dir()) / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("experiment", name, shipped_names(directory))
    return load_config(path)


def check_suite(configs: list[ExperimentConfig]) -> list[ExperimentConfig]:
    """Refuse a reproduction suite whose report would claim what it does not check: every
    ``reference: {experiment: ...}`` must be an experiment of the suite, and at least one
    experiment must declare ``reference: golden`` (the report states the golden check of
    docs/design.md §2)."""
    names = {c.name for c in configs}
    for c in configs:
        if isinstance(c.reference, ExperimentReference) and c.reference.experiment not in names:
            raise UserInputError(
                f"{c.name}: reference experiment {c.reference.experiment!r} is not part of "
                f"serialrepro reproduce; its experiments: {', '.join(sorted(names))}")
    if not any(c.reference == "golden" for c in configs):
        raise UserInputError(
            "no experiment of serialrepro reproduce declares reference: golden, so the "
            "report would not check the golden values of docs/design.md §2; restore it")
    return configs


def reproduce_configs(directory: Path | None = None) -> list[ExperimentConfig]:
    """The experiments with a ``reproduce:`` position, in that order (checked by
    :func:`check_suite`)."""
    configs = [shipped_config(n, directory) for n in shipped_names(directory)]
    suite = sorted((c for c in configs if c.reproduce is not None),
                   key=lambda c: (c.reproduce, c.name))
    return check_suite(suite)


def reproduce_names(directory: Path | None = None) -> list[str]:
    return [c.name for c in reproduce_configs(directory)]
