"""Turning a user's device name into a torch device, or a one-line error."""

from __future__ import annotations

import torch

from serialrepro.errors import UserInputError


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (None: :func:`default_device`); refuses names torch
    does not know and accelerators this machine does not have, before any work starts."""
    if name is None:
        return default_device()
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserInputError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"device {name!r} requested but CUDA is not available; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserInputError(f"device {name!r} does not exist: this machine has "
                                 f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise UserInputError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    return dev
