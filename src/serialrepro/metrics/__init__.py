"""Sample-based metrics: distances between point clouds, FID/KID with a local feature net
(:mod:`~serialrepro.metrics.fid`) or the standard Inception-v3 features from a local
weights file (:mod:`~serialrepro.metrics.inception`)."""

from serialrepro.metrics.sample import (
    distance_scores,
    energy_distance,
    grid_kl_bits,
    mmd,
    sliced_wasserstein,
)

__all__ = ["distance_scores", "energy_distance", "grid_kl_bits", "mmd", "sliced_wasserstein"]
