"""Priors (data distributions) on grids.

The paper's two priors follow the authors' code exactly (docs/design.md §2); the rest extend
them: Gaussian mixtures in any grid dimension, a histogram of samples, a greyscale
image. Every function returns a float64 tensor of shape ``space.shape`` that is
non-negative and sums to 1. ``mix`` blends in the uniform distribution,
``(1 − mix)·p + mix/M``, as the paper does with mix = 0.1 for data.

Axis convention for 2-D grids: axis 0 is the horizontal coordinate x, axis 1 the
vertical coordinate y (``indexing='ij'``); plot a density ``p`` with
``imshow(p.T, origin='lower')``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from serialrepro.densities import three_mode_components
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import NoiseFamily, get_family
from serialrepro.grid.space import GridSpace

#: The paper's data mix: 0.9·prior + 0.1·uniform.
DATA_MIX = 0.1


def normalise(p: Tensor) -> Tensor:
    """p / Σp, refusing distributions with no mass."""
    total = p.sum()
    if not torch.isfinite(total) or total <= 0:
        raise UserInputError("the distribution has no mass (it sums to zero or is not finite)")
    return p / total


def mix_uniform(p: Tensor, mix: float) -> Tensor:
    """(1 − mix)·p + mix·uniform, for a normalised p."""
    if not 0.0 <= mix <= 1.0:
        raise UserInputError(f"uniform mix {mix!r} must lie in [0, 1]")
    return (1.0 - mix) * p + mix / p.numel()


def swiss_roll(space: GridSpace, mix: float = DATA_MIX, width: float = 0.04) -> Tensor:
    """The paper's Swiss roll: mass 1 within ``width`` of the curve, then mixed.

    Curve: s = 0, 0.01, …, 1; t = (3π/2)(1 + 2s); points (t sin t, −t cos t), each
    coordinate min–max rescaled to [−0.4, 0.4]; plain Euclidean distance (docs/design.md §2).
    """
    if space.dims != 2:
        raise UserInputError(f"the swiss-roll prior is 2-D; the grid has {space.dims} dimension(s)")
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    t = 1.5 * math.pi * (1 + 2 * s)
    curve = torch.stack([t * torch.sin(t), -t * torch.cos(t)], dim=-1)
    lo, hi = curve.min(0).values, curve.max(0).values
    curve = (curve - lo) / (hi - lo) * 0.8 - 0.4
    dist = torch.cdist(space.points(), curve).min(dim=1).values
    p = (dist < width).to(torch.float64).reshape(space.shape)
    return mix_uniform(normalise(p), mix)


def gaussian_mixture(
    space: GridSpace,
    means: Sequence[Sequence[float]] | Tensor,
    covs: Sequence | Tensor,
    weights: Sequence[float] | Tensor | None = None,
    mix: float = 0.0,
) -> Tensor:
    """A mixture of (non-periodic) Gaussian pdfs evaluated at the grid points, normalised.

    ``covs`` may be a list of D×D matrices or of scalars (isotropic variances).
    """
    means = torch.as_tensor(means, dtype=torch.float64)
    if means.ndim == 1:
        means = means.unsqueeze(-1) if space.dims == 1 else means.unsqueeze(0)
    k, dims = means.shape
    if dims != space.dims:
        raise UserInputError(
            f"mixture means have dimension {dims} but the grid has {space.dims} dimension(s)"
        )
    covs = torch.as_tensor(covs, dtype=torch.float64)
    if covs.ndim <= 1:
        covs = covs.reshape(-1, 1, 1) * torch.eye(dims, dtype=torch.float64)
        if covs.shape[0] == 1 and k > 1:
            covs = covs.expand(k, dims, dims)
    if covs.shape != (k, dims, dims):
        raise UserInputError(f"mixture covariances have shape {tuple(covs.shape)}; "
                             f"expected {(k, dims, dims)} or {k} scalars")
    if weights is None:
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
        raise UserInputError(f"mixture weights must be {k} non-negative numbers, not all zero")
    try:
        mvn = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    except ValueError:
        raise UserInputError("mixture covariances must be symmetric positive definite") from None
    logp = mvn.log_prob(space.points().unsqueeze(1)) + torch.log(weights / weights.sum())
    p = torch.exp(torch.logsumexp(logp, dim=1)).reshape(space.shape)
    return mix_uniform(normalise(p), mix)


def three_modes(space: GridSpace, mix: float = DATA_MIX) -> Tensor:
    """The paper's three-mode density (docs/design.md §2), mixed with uniform by ``mix``."""
    weights, means, covs = three_mode_components(space.dims)
    return gaussian_mixture(space, means, covs, weights, mix=mix)


def from_samples(
    space: GridSpace, samples: Tensor | np.ndarray, weights: Tensor | np.ndarray | None = None,
    mix: float = 0.0,
) -> Tensor:
    """Histogram of samples on the grid: each sample counts at its nearest grid point
    (coordinates wrapped onto the torus [−0.5, 0.5))."""
    x = torch.as_tensor(samples, dtype=torch.float64)
    if x.ndim == 1 and space.dims == 1:
        x = x.unsqueeze(-1)
    if x.ndim != 2 or x.shape[1] != space.dims or x.shape[0] == 0:
        raise UserInputError(
            f"samples must have shape [N, {space.dims}] with N ≥ 1; got {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise UserInputError("samples contain NaN or infinite values")
    w = torch.ones(x.shape[0], dtype=torch.float64) if weights is None else torch.as_tensor(
        weights, dtype=torch.float64)
    flat = torch.zeros(space.size, dtype=torch.float64)
    flat.index_add_(0, space.nearest_index(x), w)
    return mix_uniform(normalise(flat.reshape(space.shape)), mix)


def from_image(
    space: GridSpace, path: str | Path, invert: bool = False, mix: float = 0.0
) -> Tensor:
    """A density from a greyscale image: brightness is mass (``invert`` for dark = mass).

    The image is converted to greyscale and resampled to the grid with area averaging;
    its top row becomes the top (largest y) of the grid.
    """
    from PIL import Image, UnidentifiedImageError

    if space.dims != 2:
        raise UserInputError(f"an image prior needs a 2-D grid; the grid has {space.dims}")
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            grey = img.convert("L").resize((space.n, space.n), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserInputError(
            f"{str(path)!r} is not a readable image (PNG, JPEG, …): {exc.__class__.__name__}"
        ) from None
    a = torch.from_numpy(np.asarray(grey, dtype=np.float64) / 255.0)
    if invert:
        a = 1.0 - a
    p = torch.flip(a, dims=[0]).T.contiguous()  # rows top→bottom become y high→low
    if p.sum() <= 0:
        raise UserInputError(f"image {str(path)!r} has no mass (all black; try invert)")
    return mix_uniform(normalise(p), mix)


PriorFactory = Callable[[GridSpace], Tensor]
PRIORS: dict[str, PriorFactory] = {
    "swiss-roll": swiss_roll,
    "three-modes": three_modes,
}


def make_prior(spec: str, space: GridSpace, mix: float | None = None) -> Tensor:
    """A named prior (``swiss-roll``, ``three-modes``) or ``image:PATH``.

    Every prior used as data defaults to the paper's 0.1 uniform mix, images included:
    a density with exact zeros makes K q vanish where the sampler can still put mass,
    and the Bayes reconstruction then has nothing to map that mass to.
    """
    spec = str(spec)
    mix = DATA_MIX if mix is None else mix
    if spec.startswith("image:"):
        return from_image(space, spec.removeprefix("image:"), mix=mix)
    if spec not in PRIORS:
        raise unknown_name("prior", spec, [*PRIORS, "image:PATH"])
    return PRIORS[spec](space, mix=mix)


def limit_distribution(family: str | NoiseFamily, space: GridSpace) -> Tensor:
    """p_F of ``family`` on a grid (:meth:`~serialrepro.families.NoiseFamily.limit_density`)."""
    return get_family(family).limit_density(space)
