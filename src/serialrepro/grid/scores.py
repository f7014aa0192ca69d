"""Scores of a simulation, in bits, exactly as the authors compute them (DESIGN §2).

ε = 2.220446049250313e−16 (MATLAB's ``eps``) is added inside every log ratio:
KL(P‖Q) = Σ P log₂((P + ε)/(Q + ε)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 2.220446049250313e-16


def _sum_grid(x: Tensor, ndim: int | None) -> Tensor:
    dims = tuple(range(-ndim, 0)) if ndim else tuple(range(x.ndim))
    return x.sum(dim=dims)


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


def complexity_bits(marginals: Tensor, ndim: int) -> float | None:
    """max over t = 1..T−1 of KL(q_t‖q_{t+1}); ``marginals`` holds q_0..q_T. None if T < 2."""
    T = marginals.shape[0] - 1
    if T < 2:
        return None
    kls = kl_bits(marginals[1:T], marginals[2:T + 1], ndim)
    return float(kls.max())


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

