"""Circular coordinates: values on a circle of period P, wrapped onto [−P/2, P/2).

Circular chain data (angles, hues) and torus grids use one turn = 1, the unit circle
[−½, ½); an offset between two circular values is their minimum image (docs/design.md §2).
One helper for numpy arrays and one for torch tensors, so every layer wraps the same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def wrap(x: np.ndarray | float, period: float = 1.0) -> np.ndarray:
    """x wrapped onto [−period/2, period/2) (numpy)."""
    return np.mod(np.asarray(x) + period / 2, period) - period / 2


def wrap_tensor(x: Tensor, period: float = 1.0) -> Tensor:
    """x wrapped onto [−period/2, period/2) (torch; device and dtype follow ``x``)."""
    return torch.remainder(x + period / 2, period) - period / 2


def circular_difference(a: np.ndarray, b: np.ndarray, period: float | None) -> np.ndarray:
    """a − b in float64, its minimum image in [−period/2, period/2) when ``period`` is given."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return d if period is None else wrap(d, period)
