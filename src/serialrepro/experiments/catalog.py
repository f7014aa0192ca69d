"""The named experiments shipped with the package (``experiments/configs/*.yaml``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from serialrepro.errors import unknown_name
from serialrepro.experiments.config import ExperimentConfig, load_config

#: what ``serialrepro reproduce`` runs, in report order: the paper, then the extensions
REPRODUCE_ORDER = (
    "fig2", "fig3", "figS2", "figS3-S4", "figS5",
    "ext-families", "ext-schedules", "ext-resolution",
)


def config_dir() -> Path:
    return Path(str(resources.files("serialrepro.experiments") / "configs"))


def shipped_names() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def shipped_config(name: str) -> ExperimentConfig:
    path = config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name("experiment", name, shipped_names())
    return load_config(path)


def reproduce_configs() -> list[ExperimentConfig]:
    return [shipped_config(n) for n in REPRODUCE_ORDER]
