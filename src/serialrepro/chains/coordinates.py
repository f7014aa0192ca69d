"""Coordinates of chain data and the cluster bootstrap shared by every chain analysis.

* **unit coordinates** — the grid engine works on the unit torus. Linear data map
  affinely (one scale for every axis, so isotropic noise stays isotropic) into
  [−0.3, 0.3], leaving margins so the grid's wrap-around never matters; circular data
  (angles, hues with a period P) map to one turn, u = wrap(x / P) in [−½, ½). Going back,
  circular values land in the data's own range [origin, origin + P) (0–360 for hues
  recorded 0–359), so tables and figures speak the data's units.
* **embedding** — distances between values are Euclidean in data units; circular values
  are embedded on the circle of circumference P, (cos 2πu, sin 2πu)·P/2π, so distances are
  chords (a metric of negative type, as the energy distance needs; Székely & Rizzo 2013).
* **cluster bootstrap** — resampling is at the level of the independent unit (the chain by
  default; the participant or display with ``--cluster-col``): clusters are drawn with
  replacement (Davison & Hinkley 1997, §3.8) and each observation carries its cluster's
  multiplicity as a weight. Row 0 of every weight matrix is the estimate (all ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from serialrepro.circular import wrap
from serialrepro.errors import UserInputError

#: linear data fill [−HALF_SPAN, HALF_SPAN] of the unit torus
HALF_SPAN = 0.3


@dataclass(frozen=True)
class Coordinates:
    """The map between data units and the unit torus: u = (x − center)/scale (linear) or
    u = wrap(x/period) (circular; ``scale`` is the period, ``origin`` the start of the
    data's range)."""

    center: np.ndarray
    scale: float
    circular: bool
    origin: float = 0.0

    @classmethod
    def fit(cls, values: np.ndarray, circular: bool = False, period: float = 360.0,
            origin: float | None = None) -> Coordinates:
        d = values.shape[1]
        if circular:
            if d != 1:
                raise UserInputError(f"circular data must have one value column; got {d}")
            if not (math.isfinite(period) and period > 0):
                raise UserInputError(f"the circular period {period!r} must be positive")
            if origin is None:  # the loader's convention: [0, P) for non-negative data
                origin = 0.0 if (len(values) == 0 or np.nanmin(values) >= 0) else -period / 2
            return cls(np.zeros(1), float(period), True, float(origin))
        lo, hi = values.min(0), values.max(0)
        span = float((hi - lo).max())
        scale = span / (2 * HALF_SPAN) if span > 0 else 1.0
        return cls((lo + hi) / 2, scale, False)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        if self.circular:
            return wrap(np.asarray(x) / self.scale)
        return (np.asarray(x) - self.center) / self.scale

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Data units; circular values in [origin, origin + period)."""
        if self.circular:
            return np.mod(np.asarray(u) * self.scale - self.origin, self.scale) + self.origin
        return np.asarray(u) * self.scale + self.center

    def embed(self, u: np.ndarray) -> np.ndarray:
        """Unit coordinates [..., D] -> Euclidean points in data units [..., D'] (chords on
        the circle of circumference ``scale`` for circular data; NaN passes through)."""
        u = np.asarray(u, dtype=np.float64)
        if self.circular:
            r = self.scale / (2 * np.pi)
            ang = 2 * np.pi * u[..., 0]
            return np.stack([r * np.cos(ang), r * np.sin(ang)], -1)
        return u * self.scale

    @property
    def domain(self) -> tuple[float, float] | None:
        """One period [origin, origin + period) for circular data, else None (unbounded)."""
        return (self.origin, self.origin + self.scale) if self.circular else None

    def as_dict(self) -> dict:
        return {"center": self.center.tolist(), "scale": self.scale, "circular": self.circular,
                "origin": self.origin if self.circular else None}


def cluster_resample(cluster: np.ndarray, n_boot: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster bootstrap of C observations with cluster codes ``cluster`` [C]:
    (weights [1 + n_boot, G] of the G clusters — row 0 all ones, then the multiplicity of
    each cluster in a resample of G clusters with replacement — and the cluster index of
    each observation [C])."""
    codes, cl = np.unique(np.asarray(cluster), return_inverse=True)
    g = len(codes)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot).astype(np.float64)
    return np.vstack([np.ones((1, g)), w]), cl


def cluster_weights(cluster: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[1 + n_boot, C]: each observation's weight, its cluster's multiplicity in the
    resamples of :func:`cluster_resample` (the same seed gives the same resamples)."""
    w, cl = cluster_resample(cluster, n_boot, seed)
    return w[:, cl]


def percentile_interval(boots: np.ndarray, level: float = 0.95,
                        axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of replicates along ``axis`` (NaN where none is
    finite)."""
    a = (1 - level) / 2
    b = np.asarray(boots, dtype=np.float64)
    if b.shape[axis] == 0:
        shape = np.delete(np.array(b.shape), axis)
        return np.full(shape, np.nan), np.full(shape, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(b, [100 * a, 100 * (1 - a)], axis=axis)
    return lo, hi
