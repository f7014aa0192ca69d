"""Convergence diagnostics: the energy-distance U-statistic against a brute-force
reference, the Fisher–Lee correlation against its pairwise definition, verdicts on slow
and fast chains, and the coverage of the 95 % intervals (AR(1) slope, convergence
distance) on simulated chains with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from serialrepro.chains.ar1 import fit_ar1
from serialrepro.chains.convergence import (
    _weighted_fisher_lee,
    energy_curve,
    judge_convergence,
    seed_agreement,
    seed_groups,
    start_dependence,
)
from serialrepro.chains.coordinates import cluster_resample, percentile_interval


def _ar1_chains(c, n_it, lam, s, m0, v0, mu=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = np.empty((c, n_it + 1))
    x[:, 0] = rng.normal(m0, np.sqrt(v0), c)
    for n in range(n_it):  # the data-generating process, written out for the test
        x[:, n + 1] = mu + lam * (x[:, n] - mu) + rng.normal(0, s, c)
    return x


@pytest.mark.parametrize("block", [None, 7])
def test_energy_u_statistic_matches_a_brute_force_reference(block, monkeypatch):
    """Pairs within one cluster are left out of every term (also when the distance
    blocks are small)."""
    if block is not None:
        monkeypatch.setattr("serialrepro.chains.convergence.PAIR_BLOCK", block)
    rng = np.random.default_rng(1)
    c, n_it, late = 12, 4, 2
    emb = rng.normal(size=(c, n_it, 2))
    emb[3, 1] = np.nan  # a missing value
    cluster = np.repeat(np.arange(6), 2)  # two chains per cluster
    w, inv = cluster_resample(cluster, 0, 0)
    got = energy_curve(emb, inv, late, w)[0]

    def mean_dist(a, ca, b, cb):
        tot, n = 0.0, 0
        for p, gp in zip(a, ca, strict=True):
            for q, gq in zip(b, cb, strict=True):
                if gp != gq and not (np.isnan(p).any() or np.isnan(q).any()):
                    tot += np.linalg.norm(p - q)
                    n += 1
        return tot / n

    ref = emb[:, n_it - late:].reshape(-1, 2)
    ref_c = np.repeat(cluster, late)
    for i in range(n_it):
        want = (2 * mean_dist(emb[:, i], cluster, ref, ref_c)
                - mean_dist(emb[:, i], cluster, emb[:, i], cluster)
                - mean_dist(ref, ref_c, ref, ref_c))
        assert got[i] == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_fisher_lee_equals_its_pairwise_definition():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 2 * np.pi, 40)
    b = a + rng.normal(0, 0.8, 40)
    got = _weighted_fisher_lee(a, b, np.ones((1, 40)))[0]
    i, j = np.triu_indices(40, 1)
    sa, sb = np.sin(a[i] - a[j]), np.sin(b[i] - b[j])
    want = (sa * sb).sum() / np.sqrt((sa**2).sum() * (sb**2).sum())
    assert got == pytest.approx(want, rel=1e-10)
    assert _weighted_fisher_lee(a, a + 1.3, np.ones((1, 40)))[0] == pytest.approx(1.0)


def _verdict(x, seed=0, circular=False):
    unit = x[:, :, None]
    c = len(x)
    w, inv = cluster_resample(np.arange(c), 200, seed)
    dep = start_dependence(unit, np.arange(x.shape[1]), circular, w[:, inv])
    groups = seed_groups(unit[:, 0], circular)
    agree = seed_agreement(unit[:, -1], groups, 200, seed)
    return judge_convergence(dep, agree, c)


def test_slow_chains_are_not_converged_and_fast_ones_are():
    """λ = 0.97 over 15 iterations keeps most of the start; λ = 0.3 forgets it."""
    slow = _ar1_chains(300, 15, 0.97, 0.05, 0.0, 1.0, seed=3)
    v = _verdict(slow)
    assert v["converged"] is False
    assert v["start_dependence"]["lower"] > 0.3
    assert v["seed_agreement"]["p_value"] < 0.05
    fast = _ar1_chains(300, 15, 0.3, 0.5, 0.0, 1.0, seed=4)
    v = _verdict(fast)
    assert v["converged"] is True
    assert v["start_dependence"]["lower"] <= 0 <= v["start_dependence"]["upper"] or abs(
        v["start_dependence"]["correlation"]) < 0.1


def test_circular_slow_chains_are_not_converged():
    rng = np.random.default_rng(5)
    u = np.empty((300, 16))
    u[:, 0] = rng.uniform(-0.5, 0.5, 300)
    for n in range(15):  # a slow wrapped random walk: seeds are remembered
        u[:, n + 1] = np.mod(u[:, n] + rng.normal(0, 0.01, 300) + 0.5, 1) - 0.5
    assert _verdict(u, circular=True)["converged"] is False
    fast = np.mod(rng.uniform(-0.5, 0.5, (300, 16)) + 0.5, 1) - 0.5
    assert _verdict(fast, circular=True)["converged"] is True


def test_too_few_chains_cannot_be_judged():
    x = _ar1_chains(6, 5, 0.5, 0.5, 0.0, 1.0)
    assert _verdict(x)["converged"] is None


def _e_abs(d, v):
    """E|Z| for Z ~ N(d, v)."""
    t = np.sqrt(v)
    return t * np.sqrt(2 / np.pi) * np.exp(-d * d / (2 * v)) + d * (1 - 2 * norm.cdf(-d / t))


def test_intervals_cover_the_truth_at_their_nominal_rate():
    """200 replications of 40 Gaussian AR(1) chains × 6 iterations: the 95 % cluster
    bootstrap intervals of the slope and of the energy distance of iteration 1 to the
    last two iterations (closed form for Gaussian marginals) cover the truth in 90–99 %
    of replications (measured: 0.945 and 0.945)."""
    mu, lam, s, m0, v0 = 1.0, 0.6, 0.5, 3.0, 1.0
    c, n_it, late, n_boot, reps = 40, 6, 2, 200, 200
    its = np.arange(n_it + 1)
    m = mu + lam**its * (m0 - mu)
    v = lam ** (2 * its) * v0 + s * s * (1 - lam ** (2 * its)) / (1 - lam * lam)
    ks = range(n_it + 1 - late, n_it + 1)
    truth = (2 * np.mean([_e_abs(m[1] - m[k], v[1] + v[k]) for k in ks])
             - _e_abs(0.0, 2 * v[1])
             - np.mean([_e_abs(m[k] - m[q], v[k] + v[q]) for k in ks for q in ks]))
    hit_slope = hit_dist = 0
    for r in range(reps):
        x = _ar1_chains(c, n_it, lam, s, m0, v0, mu, seed=1000 + r)
        w, inv = cluster_resample(np.arange(c), n_boot, r)
        tw = w[:, inv][:, np.repeat(np.arange(c), n_it)]
        fit = fit_ar1(x[:, :-1].reshape(-1), x[:, 1:].reshape(-1), tw).set_index("quantity")
        hit_slope += fit.loc["slope", "lower"] <= lam <= fit.loc["slope", "upper"]
        e = energy_curve(x[:, :, None], inv, late, w)
        lo, hi = percentile_interval(e[1:, 1])
        hit_dist += lo <= truth <= hi
        assert lo <= e[0, 1] <= hi  # the interval contains its own estimate
    print(f"95 % interval coverage over {reps} replications: AR(1) slope "
          f"{hit_slope / reps:.3f}, energy distance {hit_dist / reps:.3f}")
    assert 0.90 <= hit_slope / reps <= 0.99
    assert 0.90 <= hit_dist / reps <= 0.99
