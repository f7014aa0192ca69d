"""Sample-based metrics: distances between point clouds, FID/KID with a local feature net."""

from serialrepro.metrics.sample import (
    distance_scores,
    energy_distance,
    grid_kl_bits,
    mmd,
    sliced_wasserstein,
)

__all__ = ["distance_scores", "energy_distance", "grid_kl_bits", "mmd", "sliced_wasserstein"]
