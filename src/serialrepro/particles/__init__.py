"""Monte-Carlo serial reproduction in continuous space of any dimension.

* :mod:`.priors`     Gaussian mixtures, weighted point sets, grid densities
* :mod:`.posterior`  closed-form mixture posteriors and log-space posteriors over a support
* :mod:`.chains`     many seeded chains at once (:func:`particle_chains`)
* :mod:`.rng`        per-block random streams, so chain i does not depend on the batch size
"""

from serialrepro.particles.priors import (
    GaussianMixturePrior,
    GridDensityPrior,
    ParticlePrior,
    PointSetPrior,
    Support,
)

__all__ = ["GaussianMixturePrior", "GridDensityPrior", "ParticlePrior", "PointSetPrior",
           "Support"]
