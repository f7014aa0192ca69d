"""Posteriors of a Bayesian agent in continuous space, and its response to them.

Two routes (docs/design.md §1, Post(x | y) ∝ K_σ(y | x) p(x)):

* **closed form** — where the prior is conjugate to the family, it says so itself
  (:meth:`~serialrepro.particles.priors.ParticlePrior.conjugate_posterior`: a
  Gaussian-mixture prior with gaussian noise on a non-circular space gives a mixture);
* **over the support** — any prior with a weighted support {(z_j, π_j)} and any
  family: log w_j = log π_j + log K_σ(y | z_j) − logsumexp(·), the self-normalised
  importance weights of the prior's support, kept in log space so that nothing
  underflows however peaked the likelihood is.

:class:`EmpiricalReconstructor` is this engine's
:class:`serialrepro.reconstruction.Reconstructor` (samples in, samples out).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from serialrepro.circular import weighted_circular_mean
from serialrepro.circular import wrap_tensor as wrap
from serialrepro.errors import UserInputError
from serialrepro.families import NoiseFamily, get_family
from serialrepro.particles.priors import GaussianMixturePrior, ParticlePrior, Support
from serialrepro.particles.rng import gumbel_argmax

#: fixed-point iterations of the mixture-mode search (the MAP rule)
MODE_ITERATIONS = 100
#: stop the mode search once no coordinate moves by more than this
MODE_TOLERANCE = 1e-12


def support_log_posterior(
    y: Tensor, support: Support, family: NoiseFamily, sigma: float, circular: bool = False
) -> Tensor:
    """Normalised log posterior weights [N, P] of the support points given y [N, D].

    On a circle the likelihood is taken at the nearest image of y to each point,
    K(z + wrap(y − z) | z), as the grid kernels use minimum-image offsets.
    """
    z = support.points.to(y)
    yy = y.unsqueeze(-2)
    if circular:
        yy = z + wrap(yy - z)
    loglik = family.log_prob(yy, z, sigma)
    logw = support.log_weights.to(y) + loglik
    norm = torch.logsumexp(logw, dim=-1, keepdim=True)
    if not torch.isfinite(norm).all():
        raise UserInputError(
            f"a perceived value has zero likelihood under every prior point ({family.name}, "
            f"σ={sigma:g}); use a wider level or a prior with broader support")
    return logw - norm


def gmm_posterior(y: Tensor, prior: GaussianMixturePrior, sigma: float):
    """Closed-form posterior of a Gaussian-mixture prior under gaussian noise N(x, σ²I):
    (log weights [N, K], means [N, K, D], Cholesky factors [K, D, D]), from
    :meth:`GaussianMixturePrior.conjugate_posterior`."""
    out = prior.conjugate_posterior(y, get_family("gaussian"), sigma)
    if out is None:
        raise UserInputError(f"prior {type(prior).__name__} has no closed-form posterior "
                             "under gaussian noise; use a Gaussian-mixture prior")
    return out


def _mixture_mode(logw: Tensor, means: Tensor, chol: Tensor) -> Tensor:
    """argmax of f(x) = log Σ_k w_k N(x; μ_k, P_k) for each row, started from every
    component mean; the start reaching the highest density wins.

    Each iteration takes a Newton step where the Hessian of f is negative definite and
    the step does not lower f, and otherwise the fixed-point (EM) step
    x ← (Σ r_k P_k⁻¹)⁻¹ Σ r_k P_k⁻¹ μ_k, r_k ∝ w_k N(x; μ_k, P_k), which never lowers f
    (Carreira-Perpiñán 2000). So f rises monotonically and converges quadratically near a
    mode instead of the fixed point's slow linear rate when components overlap.
    """
    if means.shape[-2] == 1:  # one Gaussian: its mode is its mean
        return means[:, 0]
    prec = torch.cholesky_inverse(chol)  # [K, D, D]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
    pm = (prec @ means.unsqueeze(-1)).squeeze(-1)  # [N, K, D]

    def terms(x):  # x [N, S, D] -> f [N, S], r [N, S, K], P_k⁻¹(μ_k − x) [N, S, K, D]
        diff = means.unsqueeze(1) - x.unsqueeze(2)
        pd = (prec @ diff.unsqueeze(-1)).squeeze(-1)
        lt = logw.unsqueeze(1) - 0.5 * (diff * pd).sum(-1) - 0.5 * logdet
        return torch.logsumexp(lt, -1), torch.softmax(lt, -1), pd

    x = means.clone()  # [N, S = K, D]
    f, r, pd = terms(x)
    for _ in range(MODE_ITERATIONS):
        g = (r.unsqueeze(-1) * pd).sum(-2)
        hess = (torch.einsum("nsk,nski,nskj->nsij", r, pd, pd)
                - torch.einsum("nsk,kij->nsij", r, prec) - g.unsqueeze(-1) * g.unsqueeze(-2))
        concave = torch.linalg.eigvalsh(hess).amax(-1) < 0
        safe = torch.where(concave.unsqueeze(-1).unsqueeze(-1), hess,
                           -torch.eye(hess.shape[-1], dtype=hess.dtype, device=hess.device))
        newton = x - torch.linalg.solve(safe, g.unsqueeze(-1)).squeeze(-1)
        a = torch.einsum("nsk,kij->nsij", r, prec)
        b = torch.einsum("nsk,nki->nsi", r, pm)
        fixed = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
        f_newton = terms(newton)[0]
        use = concave & (f_newton >= f)
        new = torch.where(use.unsqueeze(-1), newton, fixed)
        done = bool((new - x).abs().max() <= MODE_TOLERANCE)
        x = new
        f, r, pd = terms(x)
        if done:
            break
    best = torch.argmax(f, dim=-1)
    return x[torch.arange(x.shape[0]), best]


def respond(
    y: Tensor, prior: ParticlePrior, family: NoiseFamily, sigma: float, rule: str,
    generator: torch.Generator, circular: bool = False,
) -> Tensor:
    """The agent's reproduction x' [N, D] of perceived values y [N, D] under ``rule``:
    a draw from Post(· | y) (``sample``), its (circular) mean (``mean``) or its mode
    (``map``), in closed form where the prior is conjugate to the family."""
    closed = prior.conjugate_posterior(y, family, sigma, circular)
    if closed is not None:
        logw, means, chol = closed
        if rule == "sample":
            k = gumbel_argmax(logw, generator)
            z = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
            return means[torch.arange(y.shape[0]), k] + (chol[k] @ z.unsqueeze(-1)).squeeze(-1)
        if rule == "mean":
            return (torch.exp(logw).unsqueeze(-1) * means).sum(-2)
        return _mixture_mode(logw, means, chol)
    support = prior.support()
    logw = support_log_posterior(y, support, family, sigma, circular)
    pts = support.points.to(y)
    if rule == "sample":
        return pts[gumbel_argmax(logw, generator)]
    if rule == "mean":
        w = torch.exp(logw)
        return weighted_circular_mean(w, pts) if circular else w @ pts
    return pts[torch.argmax(logw, dim=-1)]


class EmpiricalReconstructor:
    """Monte-Carlo serial reproduction as a :class:`serialrepro.reconstruction.Reconstructor`:
    step t (1-based) perceives samples x [N, D] through the family at ``levels[t − 1]``
    (wrapped onto [−0.5, 0.5) on circles) and responds by ``rule`` from the posterior
    under ``prior`` (:func:`respond`). Draws come from the ``generator`` passed."""

    def __init__(self, prior: ParticlePrior, family: NoiseFamily, levels: Sequence[float],
                 rule: str = "sample", circular: bool = False):
        self.prior, self.family, self.levels = prior, family, list(levels)
        self.rule, self.circular = rule, circular

    def perceive(self, x: Tensor, t: int, generator: torch.Generator | None = None) -> Tensor:
        """y ~ K_{σ_t}(· | x)."""
        y = self.family.sample(x, self.levels[t - 1], generator)
        return wrap(y) if self.circular else y

    def reconstruct(self, y: Tensor, t: int, generator: torch.Generator | None = None) -> Tensor:
        """x' ~ Post(· | y) (or its mean or mode, by the rule)."""
        return respond(y, self.prior, self.family, self.levels[t - 1], self.rule, generator,
                       self.circular)
