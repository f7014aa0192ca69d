"""Scores of a simulation, in bits, exactly as the authors compute them (docs/design.md §2).

ε = 2.220446049250313e−16 (MATLAB's ``eps``) is added inside every log ratio:
KL(P‖Q) = Σ P log₂((P + ε)/(Q + ε)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 2.220446049250313e-16


def sum_grid(x: Tensor, ndim: int | None) -> Tensor:
    """Σ over the last ``ndim`` dims (the grid), all dims when None."""
    dims = tuple(range(-ndim, 0)) if ndim else tuple(range(x.ndim))
    return x.sum(dim=dims)


_sum_grid = sum_grid


def dot_grid(a: Tensor, b: Tensor) -> Tensor:
    """Σ a·b over one grid (no batch dimensions), without the product array."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


def kl_bits(p: Tensor, q: Tensor, ndim: int | None = None, eps: float = EPS) -> Tensor:
    """KL(p‖q) in bits with ε inside the log ratio; sums over the last ``ndim`` dims
    (all dims when None), so batches of distributions give a batch of scores."""
    return _sum_grid(p * torch.log2((p + eps) / (q + eps)), ndim)


def jsd_bits(p: Tensor, q: Tensor, ndim: int | None = None, eps: float = EPS) -> Tensor:
    """Jensen–Shannon divergence in bits: ½KL(p‖m) + ½KL(q‖m), m = (p + q)/2."""
    m = 0.5 * (p + q)
    return 0.5 * kl_bits(p, m, ndim, eps) + 0.5 * kl_bits(q, m, ndim, eps)


def entropy_bits(p: Tensor, ndim: int | None = None) -> Tensor:
    """Shannon entropy −Σ p log₂ p (0 log 0 = 0)."""
    logp = torch.log2(torch.where(p > 0, p, 1.0))
    return -_sum_grid(p * logp, ndim)


#: from this p up, p·log₂(1 + ε/p) equals ε/ln 2 to ε²/(2p ln 2) < 4e−21 per entry
_TINY = 1e-11


def entropy_from_log_bits(p: Tensor, log_p_eps: Tensor, ndim: int | None = None) -> Tensor:
    """−Σ p log₂ p from ``log_p_eps`` = log₂(p + ε), the log the KL scores compute anyway.

    −Σ p log₂ p = −Σ p log₂(p + ε) + Σ p log₂(1 + ε/p); the correction is ε/ln 2 per entry
    with p ≥ 10⁻¹¹ (to 4e−21) and is evaluated exactly on the few smaller ones, so no
    second logarithm over the grid is taken. Entries must be ≥ 0; one distribution at a
    time (no batch dimensions).
    """
    if p.device.type == "cpu" and not p.requires_grad and float(p.amin()) >= _TINY:
        # the common case (data mixed with uniform): one reduction instead of a selection
        return p.numel() * (EPS / math.log(2.0)) - dot_grid(p, log_p_eps)
    small = p[p < _TINY]
    exact = (torch.special.xlogy(small, small + EPS) - torch.special.xlogy(small, small))
    corr = (p.numel() - small.numel()) * (EPS / math.log(2.0)) + exact.sum() / math.log(2.0)
    return corr - dot_grid(p, log_p_eps)


def complexity_bits(marginals: Tensor, ndim: int) -> float | None:
    """max over t = 1..T−1 of KL(q_t‖q_{t+1}); ``marginals`` holds q_0..q_T. None if T < 2.

    Level pair by level pair: no [T−1, …] temporaries. (:func:`~serialrepro.grid.process.
    simulate` computes it during the forward pass, sharing log₂(q_t + ε) between
    consecutive pairs; the two agree to round-off, ~1e−15 bits.)"""
    T = marginals.shape[0] - 1
    if T < 2:
        return None
    return max(float(kl_bits(marginals[t], marginals[t + 1], ndim)) for t in range(1, T))


def stationarity_score(reverse: Tensor, pullback, T: int) -> float | None:
    """‖v − 1‖₂/√M where v = r_{T−1}/(r_{T−2} + ε) is pulled back by v ← S_tᵀ v for
    t = T−1, …, 1 (``pullback(v, t)`` applies S_tᵀ). ``reverse[t]`` is r_t. None if T < 2."""
    if T < 2:
        return None
    v = reverse[T - 1] / (reverse[T - 2] + EPS)
    for t in range(T - 1, 0, -1):
        v = pullback(v, t)
    return float(torch.linalg.vector_norm(v - 1.0) / math.sqrt(v.numel()))


def channel_information_bits(
    prior: Tensor, pushed: Tensor, column_entropy: Tensor, ndim: int
) -> tuple[float, float]:
    """(H(Y|X), I(X;Y)) in bits for the perception channel X ~ prior, Y ~ K(·|X).

    H(Y|X) = Σ_x prior(x) H(K(·|x)); I(X;Y) = H(Y) − H(Y|X) with Y's law ``pushed`` = K prior.
    """
    h_cond = float(_sum_grid(prior * column_entropy, ndim))
    return h_cond, float(entropy_bits(pushed, ndim)) - h_cond

