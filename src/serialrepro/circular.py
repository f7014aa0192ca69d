"""Circular coordinates: values on a circle of period P, wrapped onto [−P/2, P/2).

Circular chain data (angles, hues) and torus grids use one turn = 1, the unit circle
[−½, ½); an offset between two circular values is their minimum image (docs/design.md §2).
One helper for numpy arrays and one for torch tensors, so every layer wraps the same way.
"""

from __future__ import annotations

import math

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


def circular_mean(u: np.ndarray) -> float:
    """Circular mean of unit-circle values u (one turn = 1), in [−0.5, 0.5) (numpy)."""
    ang = 2 * np.pi * np.asarray(u)
    return float(np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * np.pi))


def weighted_circular_mean(weights: Tensor, points: Tensor) -> Tensor:
    """Per-axis circular mean of unit-circle ``points`` [P, D] under each row of ``weights``
    [N, P], in [−0.5, 0.5) (torch): atan2(Σ w sin 2πx, Σ w cos 2πx) / 2π."""
    ang = 2 * math.pi * points
    return torch.atan2(weights @ torch.sin(ang), weights @ torch.cos(ang)) / (2 * math.pi)
