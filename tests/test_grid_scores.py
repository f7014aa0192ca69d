"""Scores in bits (docs/design.md §2): KL and JSD with ε inside the log ratio, entropy,
complexity, stationarity, channel information."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.grid import EPS, entropy_bits, jsd_bits, kl_bits
from serialrepro.grid.scores import (
    channel_information_bits,
    complexity_bits,
    stationarity_score,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_eps_is_matlab_eps() -> None:
    assert EPS == torch.finfo(torch.float64).eps


def test_kl_bits_closed_forms() -> None:
    p, u = t(1.0, 0.0), t(0.5, 0.5)
    assert kl_bits(p, u).item() == pytest.approx(1.0, abs=1e-14)  # one bit
    assert kl_bits(u, u).item() == 0.0
    a, b = t(0.2, 0.3, 0.5), t(0.4, 0.4, 0.2)
    want = sum(x * math.log2((x + EPS) / (y + EPS)) for x, y in zip(a.tolist(), b.tolist(),
                                                                   strict=True))
    assert kl_bits(a, b).item() == pytest.approx(want, rel=1e-14)
    # ε keeps KL finite where q = 0 (the authors' convention): log₂((p + ε)/ε)
    assert kl_bits(t(0.5, 0.5), t(1.0, 0.0)).item() == pytest.approx(
        0.5 * math.log2(0.5 / 1.0) + 0.5 * math.log2((0.5 + EPS) / EPS), rel=1e-12)


def test_jsd_bits_properties() -> None:
    a, b = t(0.2, 0.3, 0.5), t(0.4, 0.4, 0.2)
    assert jsd_bits(a, b).item() == pytest.approx(jsd_bits(b, a).item(), abs=1e-15)
    assert 0 < jsd_bits(a, b).item() < 1
    assert jsd_bits(t(1.0, 0.0), t(0.0, 1.0)).item() == pytest.approx(1.0, abs=1e-12)
    assert jsd_bits(a, a).item() == 0.0


def test_batched_scores_sum_over_the_grid_dims_only() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(3, 4, 5, generator=gen, dtype=torch.float64)
    p = p / p.sum(dim=(1, 2), keepdim=True)
    q = torch.full((4, 5), 1 / 20, dtype=torch.float64)
    batched = kl_bits(p, q, ndim=2)
    assert batched.shape == (3,)
    for i in range(3):
        assert batched[i].item() == pytest.approx(kl_bits(p[i], q).item(), rel=1e-14)
    h = entropy_bits(p, ndim=2)
    # KL to uniform = log₂ M − H
    assert torch.allclose(batched, math.log2(20) - h, atol=1e-12)


def test_entropy_bits() -> None:
    assert entropy_bits(torch.full((8, 8), 1 / 64, dtype=torch.float64)).item() == \
        pytest.approx(6.0, abs=1e-13)
    assert entropy_bits(t(1.0, 0.0, 0.0)).item() == 0.0  # 0 log 0 = 0


def test_complexity_is_the_largest_consecutive_kl() -> None:
    q = torch.stack([t(0.9, 0.1), t(0.7, 0.3), t(0.5, 0.5), t(0.45, 0.55)])
    want = max(kl_bits(q[1], q[2]).item(), kl_bits(q[2], q[3]).item())  # t = 1..T−1
    assert complexity_bits(q, 1) == pytest.approx(want, rel=1e-14)
    assert kl_bits(q[0], q[1]).item() > want  # q_0 → q_1 is excluded, as in docs/design.md §2
    assert complexity_bits(q[:2], 1) is None


def test_stationarity_score() -> None:
    r = torch.stack([t(0.5, 0.5), t(0.4, 0.6), t(0.2, 0.8), t(0.5, 0.5)])  # r_0..r_3
    T = 3
    v = r[T - 1] / (r[T - 2] + EPS)
    # with identity pull-backs the score is ‖v − 1‖₂/√M
    assert stationarity_score(r, lambda v, t: v, T) == pytest.approx(
        (torch.linalg.vector_norm(v - 1) / math.sqrt(2)).item(), rel=1e-14)
    # the pull-back runs for t = T−1, …, 1
    seen: list[int] = []
    stationarity_score(r, lambda v, t: (seen.append(t), v)[1], T)
    assert seen == [2, 1]
    assert stationarity_score(r[:2], lambda v, t: v, 1) is None


def test_channel_information_of_two_extreme_channels() -> None:
    prior = t(0.25, 0.75)
    # a noiseless channel: I(X;Y) = H(X), H(Y|X) = 0
    h, mi = channel_information_bits(prior, prior, torch.zeros(2, dtype=torch.float64), 1)
    assert h == 0.0 and mi == pytest.approx(entropy_bits(prior).item(), abs=1e-15)
    # a channel that forgets x (every column uniform): I = 0, H(Y|X) = 1 bit
    h, mi = channel_information_bits(prior, t(0.5, 0.5), torch.ones(2, dtype=torch.float64), 1)
    assert h == pytest.approx(1.0) and mi == pytest.approx(0.0, abs=1e-15)


def test_entropy_from_the_kl_log_equals_the_direct_entropy() -> None:
    """H from log₂(p + ε) plus its correction equals −Σ p log₂ p, also with zeros and
    entries far below ε (where the correction is evaluated exactly, not as ε/ln 2)."""
    from serialrepro.grid.scores import entropy_from_log_bits

    gen = torch.Generator().manual_seed(5)
    p = torch.rand(40, 40, generator=gen, dtype=torch.float64) ** 8
    p[:5] = 0.0
    p[5:8] = 1e-30
    p[8:10] = 3e-9
    p /= p.sum()
    got = entropy_from_log_bits(p, torch.log2(p + EPS), 2)
    assert got.item() == pytest.approx(entropy_bits(p, 2).item(), abs=1e-14)
    # without the correction the difference is ~ε/ln 2 per entry: the test would see it
    plain = -(p * torch.log2(p + EPS)).sum()
    assert abs(plain.item() - entropy_bits(p, 2).item()) > 1e-13
