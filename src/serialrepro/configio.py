"""Reading config files from users (untrusted): YAML through ``yaml.safe_load`` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serialrepro.errors import UserInputError


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning a missing file or bad YAML into a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"config file {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserInputError(f"config file {str(path)!r} is not valid YAML: {first}") from None
