"""The exact engine: optimal diffusion and serial reproduction on discretised spaces."""

from serialrepro.grid.kernels import (
    DenseKernel,
    FFTKernel,
    GridKernel,
    KernelSchedule,
    check_schedule,
    make_kernel,
)
from serialrepro.grid.priors import (
    from_image,
    from_samples,
    gaussian_mixture,
    limit_distribution,
    make_prior,
    swiss_roll,
    three_modes,
)
from serialrepro.grid.process import (
    SimulationResult,
    Trajectory,
    ancestral_sampler,
    forward_marginals,
    posterior,
    reproduce,
    reproduce_transpose,
    serial_reproduction_sampler,
    simulate,
)
from serialrepro.grid.scores import EPS, entropy_bits, jsd_bits, kl_bits
from serialrepro.grid.space import GridSpace, parse_grid

__all__ = [
    "EPS", "DenseKernel", "FFTKernel", "GridKernel", "GridSpace", "KernelSchedule",
    "SimulationResult", "Trajectory", "ancestral_sampler", "check_schedule", "entropy_bits",
    "forward_marginals", "from_image", "from_samples", "gaussian_mixture", "jsd_bits",
    "kl_bits", "limit_distribution", "make_kernel", "make_prior", "parse_grid", "posterior",
    "reproduce", "reproduce_transpose", "serial_reproduction_sampler", "simulate",
    "swiss_roll", "three_modes",
]
