"""Priors for Monte-Carlo chains in continuous space of any dimension.

Three representations, one interface (:class:`ParticlePrior`):

* :class:`GaussianMixturePrior` — weights, means, covariances. With gaussian noise the
  posterior is again a Gaussian mixture in closed form (:mod:`serialrepro.particles.posterior`).
* :class:`PointSetPrior` — a weighted set of points (e.g. samples, or a data set); the
  posterior is a distribution over the points, computed in log space.
* :class:`GridDensityPrior` — a density on a grid of the exact engine; its support is
  the grid points with their masses, so Monte-Carlo and grid-exact chains share a prior.

Each prior can :meth:`~ParticlePrior.sample` starting states, give the weighted
``support`` over which posteriors for general noise families are computed
(self-normalised importance weights), and put itself :meth:`~ParticlePrior.on_grid`
for the exact engine.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from serialrepro.budget import check_memory
from serialrepro.errors import UserInputError
from serialrepro.families import NoiseFamily
from serialrepro.grid.priors import from_samples, gaussian_mixture
from serialrepro.grid.space import GridSpace


@dataclass(frozen=True)
class Support:
    """Points z_j [P, D] with normalised log prior weights log π_j [P]."""

    points: Tensor
    log_weights: Tensor


class ParticlePrior(ABC):
    """A prior over R^D (or the unit torus, for circular chains)."""

    dims: int

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n independent draws, shape [n, D]."""

    @abstractmethod
    def support(self) -> Support:
        """The weighted points a posterior over the prior's support is computed on."""

    @abstractmethod
    def on_grid(self, space: GridSpace) -> Tensor:
        """The prior as a normalised density on ``space`` (for grid-exact chains)."""

    def conjugate_posterior(self, y: Tensor, family: NoiseFamily, sigma: float,
                            circular: bool = False) -> tuple[Tensor, Tensor, Tensor] | None:
        """The posterior given percepts y [N, D] in closed form, as a Gaussian mixture
        (log weights [N, K], means [N, K, D], Cholesky factors [K, D, D]), where this prior
        is conjugate to ``family`` at level ``sigma``; None otherwise, and then the
        posterior is taken over :meth:`support` (:mod:`serialrepro.particles.posterior`)."""
        return None

    def _check_space(self, space: GridSpace) -> None:
        if space.dims != self.dims:
            raise UserInputError(
                f"the prior has dimension {self.dims} but the grid has {space.dims}")


def _finite_tensor(value, what: str) -> Tensor:
    """``value`` as a float64 tensor, refusing ragged nesting, non-numbers and NaN/inf
    with one line naming ``what``."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise UserInputError(f"{what} must be a regular (non-ragged) array of numbers: "
                             f"{first}") from None
    if not bool(torch.isfinite(t).all()):
        raise UserInputError(f"{what} contain NaN or infinite values")
    return t


class PointSetPrior(ParticlePrior):
    """A weighted point set: p = Σ_j π_j δ(x − z_j)."""

    def __init__(self, points: Tensor, weights: Tensor | None = None):
        pts = _finite_tensor(points, "prior points")
        if pts.ndim == 1:
            pts = pts.unsqueeze(-1)
        if pts.ndim != 2 or pts.shape[0] == 0:
            raise UserInputError(f"prior points must have shape [P, D] with P ≥ 1; got "
                                 f"{tuple(pts.shape)}")
        if weights is None:
            logw = torch.full((pts.shape[0],), -math.log(pts.shape[0]), dtype=pts.dtype,
                              device=pts.device)
        else:
            w = _finite_tensor(weights, "prior weights").to(pts.device)
            if w.shape != (pts.shape[0],) or (w < 0).any() or not w.sum() > 0:
                raise UserInputError(
                    f"prior weights must be {pts.shape[0]} non-negative numbers, not all zero")
            logw = torch.log(w) - torch.log(w.sum())
        self.points = pts
        self.log_weights = logw
        self.dims = pts.shape[1]

    def sample(self, n, generator=None):
        idx = torch.multinomial(torch.exp(self.log_weights), n, replacement=True,
                                generator=generator)
        return self.points[idx]

    def support(self):
        return Support(self.points, self.log_weights)

    def on_grid(self, space):
        self._check_space(space)
        return from_samples(space, self.points.cpu(), torch.exp(self.log_weights).cpu()).to(
            self.points.device)


class GridDensityPrior(ParticlePrior):
    """A density p on the points of a grid; the support is the points with p > 0."""

    def __init__(self, space: GridSpace, density: Tensor):
        density = _finite_tensor(density, "prior density values")
        if tuple(density.shape) != space.shape:
            raise UserInputError(f"prior density shape {tuple(density.shape)} does not match "
                                 f"the grid {space.shape}")
        if (density < 0).any() or not density.sum() > 0:
            raise UserInputError("a prior density must be non-negative with positive mass")
        self.space = space
        self.density = density / density.sum()
        self.dims = space.dims
        flat = self.density.reshape(-1)
        keep = flat > 0
        pts = space.points(density.dtype, density.device)[keep]
        self._support = Support(pts, torch.log(flat[keep]))

    def sample(self, n, generator=None):
        s = self._support
        idx = torch.multinomial(torch.exp(s.log_weights), n, replacement=True,
                                generator=generator)
        return s.points[idx]

    def support(self):
        return self._support

    def on_grid(self, space):
        self._check_space(space)
        if space == self.space:
            return self.density
        return from_samples(space, self._support.points.cpu(),
                            torch.exp(self._support.log_weights).cpu()).to(self.density.device)


class GaussianMixturePrior(ParticlePrior):
    """p(x) = Σ_k π_k N(x; m_k, C_k). ``covs``: [K, D, D] matrices or K (or 1) variances.

    For noise families without a closed-form posterior, the support is ``n_support``
    draws from the mixture (seeded by ``support_seed``) with equal weights: the
    posterior is then the self-normalised importance-weighted empirical posterior.
    """

    def __init__(self, means, covs, weights=None, n_support: int = 4096,
                 support_seed: int = 0):
        m = _finite_tensor(means, "mixture means")
        if m.ndim == 1:
            m = m.unsqueeze(-1)
        if m.ndim != 2 or m.shape[0] == 0:
            raise UserInputError(f"mixture means must have shape [K, D]; got {tuple(m.shape)}")
        k, d = m.shape
        c = _finite_tensor(covs, "mixture covariances")
        if c.ndim <= 1:
            c = c.reshape(-1, 1, 1) * torch.eye(d, dtype=torch.float64)
            if c.shape[0] == 1:
                c = c.expand(k, d, d).clone()
        if c.shape != (k, d, d):
            raise UserInputError(f"mixture covariances have shape {tuple(c.shape)}; expected "
                                 f"{(k, d, d)} or {k} variances")
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = _finite_tensor(weights, "mixture weights")
            if w.shape != (k,) or (w < 0).any() or not w.sum() > 0:
                raise UserInputError(f"mixture weights must be {k} non-negative numbers, "
                                     "not all zero")
            w = w / w.sum()
        if not torch.allclose(c, c.transpose(-1, -2), rtol=1e-10, atol=1e-12):
            raise UserInputError("mixture covariances must be symmetric (C = Cᵀ)")
        try:
            self.chol = torch.linalg.cholesky(c)
        except RuntimeError:
            raise UserInputError("mixture covariances must be symmetric positive definite "
                                 "(one is singular or has a negative eigenvalue)") from None
        if int(n_support) < 1:
            raise UserInputError(f"n_support must be ≥ 1, got {n_support!r}")
        # the support and its posterior weights are [n_support, D] and [n_support, K]
        check_memory(f"n_support {int(n_support)}", 8 * int(n_support) * (d + k + 4),
                     "lower n_support")
        self.means, self.covs, self.weights = m, c, w
        self.dims = d
        self.n_support = int(n_support)
        self.support_seed = int(support_seed)
        self._support: Support | None = None

    def conjugate_posterior(self, y, family, sigma, circular=False):
        """Gaussian noise N(x, σ²I) on a non-circular space is conjugate to the mixture:
        the posterior is the mixture with weights ∝ π_k N(y; m_k, C_k + σ²I), means
        m_k + G_k (y − m_k), covariances C_k − G_k C_k, G_k = C_k (C_k + σ²I)⁻¹ (Bishop
        2006, eq. 2.116 for each component)."""
        if circular or family.gaussian_variance(sigma) is None:
            return None
        d = self.dims
        m = self.means.to(y)
        c = self.covs.to(y)
        s = c + sigma * sigma * torch.eye(d, dtype=y.dtype, device=y.device)
        gain = torch.linalg.solve(s, c).transpose(-1, -2)  # C S⁻¹ (S, C symmetric)
        post_cov = c - gain @ c
        post_cov = 0.5 * (post_cov + post_cov.transpose(-1, -2))
        mvn = torch.distributions.MultivariateNormal(m, covariance_matrix=s)
        logw = mvn.log_prob(y.unsqueeze(-2)) + torch.log(self.weights.to(y))
        logw = logw - torch.logsumexp(logw, dim=-1, keepdim=True)
        means = m + ((y.unsqueeze(-2) - m).unsqueeze(-2) @ gain.transpose(-1, -2)).squeeze(-2)
        return logw, means, torch.linalg.cholesky(post_cov)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) for x [..., D]."""
        mvn = torch.distributions.MultivariateNormal(self.means.to(x), scale_tril=self.chol.to(x))
        return torch.logsumexp(mvn.log_prob(x.unsqueeze(-2)) + torch.log(self.weights.to(x)), -1)

    def sample(self, n, generator=None):
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.dims), generator=generator, dtype=torch.float64)
        return self.means[idx] + (self.chol[idx] @ z.unsqueeze(-1)).squeeze(-1)

    def support(self):
        if self._support is None:
            gen = torch.Generator().manual_seed(self.support_seed)
            pts = self.sample(self.n_support, gen)
            self._support = Support(pts, torch.full((self.n_support,),
                                                    -math.log(self.n_support),
                                                    dtype=torch.float64))
        return self._support

    def on_grid(self, space):
        self._check_space(space)
        return gaussian_mixture(space, self.means, self.covs, self.weights)
