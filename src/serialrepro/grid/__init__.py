"""The exact engine: optimal diffusion and serial reproduction on discretised spaces."""

# Loaded on first use (PEP 562), so that importing a submodule such as ``serialrepro.grid.cli``
# (the command line's --help) does not import torch.
_EXPORTS = {
    "DenseKernel": "kernels",
    "EPS": "scores",
    "FFTKernel": "kernels",
    "GridKernel": "kernels",
    "GridReconstructor": "process",
    "GridSpace": "space",
    "KernelSchedule": "kernels",
    "SimulationResult": "process",
    "GridTrajectory": "process",
    "ancestral_sampler": "process",
    "check_schedule": "kernels",
    "entropy_bits": "scores",
    "forward_marginals": "process",
    "from_image": "priors",
    "from_samples": "priors",
    "gaussian_mixture": "priors",
    "jsd_bits": "scores",
    "kl_bits": "scores",
    "limit_distribution": "priors",
    "make_kernel": "kernels",
    "make_prior": "priors",
    "parse_grid": "space",
    "posterior": "process",
    "reproduce": "process",
    "reproduce_transpose": "process",
    "serial_reproduction_sampler": "process",
    "simulate": "process",
    "swiss_roll": "priors",
    "three_modes": "priors",
}

__all__ = [
    "EPS", "DenseKernel", "FFTKernel", "GridKernel", "GridReconstructor", "GridSpace",
    "GridTrajectory", "KernelSchedule", "SimulationResult", "ancestral_sampler", "check_schedule",
    "entropy_bits",
    "forward_marginals", "from_image", "from_samples", "gaussian_mixture", "jsd_bits",
    "kl_bits", "limit_distribution", "make_kernel", "make_prior", "parse_grid", "posterior",
    "reproduce", "reproduce_transpose", "serial_reproduction_sampler", "simulate",
    "swiss_roll", "three_modes",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
