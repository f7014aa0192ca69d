"""Convergence of serial-reproduction chains: diagnostics that can say "not converged".

Three views, each with cluster-bootstrap intervals (:mod:`serialrepro.chains.coordinates`):

* **distance curve** (descriptive) — the energy distance (Székely & Rizzo 2013)
  E(n) = 2E|X_n − Y| − E|X_n − X_n'| − E|Y − Y'| between iteration n and the pooled late
  iterations Y, in data units (chords for circular data). Each expectation is a
  U-statistic over pairs of observations from *different* clusters, so it is unbiased for
  the population distance of independent clusters, and so is each resample of clusters
  (a resample's copies of one cluster are never paired with each other): the bootstrap
  distribution is centred on the estimate, which the percentile interval then contains.
  It can be negative when the distributions agree.
* **dependence on the start** — the correlation across chains of x_0 and x_n for every
  n: Pearson's r averaged over axes for linear data, the Fisher–Lee circular correlation
  ρ = 4(AB − CD)/√((n² − E² − F²)(n² − G² − H²)) for circular data (Fisher & Lee 1983;
  Fisher 1993, eq. 6.36). A chain that has forgotten its seed has ρ = 0.
* **agreement of chains from different seeds** — chains are grouped by their seed (the
  distinct seeds when several chains share one, else :data:`SEED_GROUPS` quantile groups
  of x_0, along the first principal axis for several dimensions); the energy k-sample
  statistic (DISCO between-sample dispersion, Rizzo & Székely 2010) of the last
  iteration's values across groups, with a permutation test of the group labels.

The verdict (:func:`judge_convergence`): *not converged* when the start-dependence
interval at the last iteration excludes 0 and |ρ| ≥ :data:`DEPENDENCE_SMALL`, or when the
seed groups still differ (p < :data:`ALPHA`); *converged* when neither says so and at
least one could be computed; *null* (cannot be judged) otherwise. Neither diagnostic
takes the data's own end as the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from serialrepro.chains.coordinates import percentile_interval

#: |correlation with the start| below this counts as forgotten even if the interval
#: excludes 0 (large data detect tiny dependence)
DEPENDENCE_SMALL = 0.1
#: level of the seed-agreement permutation test
ALPHA = 0.05
#: quantile groups of x_0 when no seed is shared by several chains
SEED_GROUPS = 4
#: fewest chains for a verdict
MIN_CHAINS = 10
#: numbers per block of pairwise distances in :func:`energy_curve` (bounds its memory)
PAIR_BLOCK = 1 << 23


def _cluster_sum(m: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """[C, C] chain-pair sums -> [G, G] cluster-pair sums with the diagonal (pairs within
    one cluster) set to 0."""
    s = onehot.T @ m @ onehot
    return s - torch.diag(torch.diagonal(s))


def _quad(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """w_b^T S w_b for every row b of w [B, G]."""
    return ((w @ s) * w).sum(1)


def energy_curve(emb: np.ndarray, cluster: np.ndarray, late: int,
                 weights: np.ndarray) -> np.ndarray:
    """U-statistic energy distance of every iteration to the pooled last ``late``
    iterations (module docstring): emb [C, I, D] Euclidean points (NaN = no value),
    ``cluster`` [C] cluster index 0..G−1, ``weights`` [B, G] cluster weights -> [B, I]."""
    c, n_it, d = emb.shape
    g = int(cluster.max()) + 1
    t = torch.from_numpy(np.nan_to_num(emb))
    ok = torch.from_numpy(~np.isnan(emb).any(-1)).to(t.dtype)  # [C, I]
    onehot = torch.zeros((c, g), dtype=t.dtype)
    onehot[torch.arange(c), torch.from_numpy(cluster)] = 1.0
    w = torch.from_numpy(weights)
    ref = t[:, n_it - late:].reshape(-1, d)
    ref_ok = ok[:, n_it - late:].reshape(-1)

    def pair(a, ma, la, b, mb, lb):  # chain-pair sums of distances and of pair counts
        # rows of chains in blocks, so no distance block exceeds PAIR_BLOCK numbers
        step = max(1, PAIR_BLOCK // max(1, la * len(b)))
        dist_sum = torch.empty((c, c), dtype=t.dtype)
        cnt_sum = torch.empty((c, c), dtype=t.dtype)
        mb_c = mb.reshape(c, lb).sum(1)
        for s0 in range(0, c, step):
            rows = slice(s0 * la, min(c, s0 + step) * la)
            n_r = min(c, s0 + step) - s0
            dist = torch.cdist(a[rows], b) * ma[rows, None] * mb[None]
            dist_sum[s0:s0 + n_r] = dist.reshape(n_r, la, c, lb).sum((1, 3))
            cnt_sum[s0:s0 + n_r] = ma[rows].reshape(n_r, la).sum(1)[:, None] * mb_c[None]
        return _cluster_sum(dist_sum, onehot), _cluster_sum(cnt_sum, onehot)

    s_yy, n_yy = pair(ref, ref_ok, late, ref, ref_ok, late)
    e_yy = _quad(w, s_yy) / _quad(w, n_yy)
    out = torch.empty((w.shape[0], n_it), dtype=t.dtype)
    for i in range(n_it):  # one [C, C·L] block per iteration keeps memory bounded
        x, mx = t[:, i], ok[:, i]
        s_xy, n_xy = pair(x, mx, 1, ref, ref_ok, late)
        s_xx, n_xx = pair(x, mx, 1, x, mx, 1)
        out[:, i] = (2 * _quad(w, s_xy) / _quad(w, n_xy) - _quad(w, s_xx) / _quad(w, n_xx)
                     - e_yy)
    return out.numpy()


def convergence_curve(emb: np.ndarray, iterations: np.ndarray, late: int,
                      cluster: np.ndarray, weights: np.ndarray) -> pd.DataFrame:
    """Energy distance to the late iterations per iteration with 95 % percentile
    cluster-bootstrap bounds: columns iteration, distance, lower, upper, metric, n."""
    dist = energy_curve(emb, cluster, late, weights)
    lo, hi = percentile_interval(dist[1:])
    return pd.DataFrame({"iteration": iterations, "distance": dist[0], "lower": lo,
                         "upper": hi, "metric": "energy_distance",
                         "n": (~np.isnan(emb).any(-1)).sum(0)})


# -- dependence on the start ---------------------------------------------------------------


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of x, y [N] under weights w [B, N] -> [B]."""
    sw = w.sum(1)
    mx, my = (w @ x) / sw, (w @ y) / sw
    sxy = (w @ (x * y)) / sw - mx * my
    sxx = (w @ (x * x)) / sw - mx * mx
    syy = (w @ (y * y)) / sw - my * my
    with np.errstate(all="ignore"):
        return sxy / np.sqrt(sxx * syy)


def _weighted_fisher_lee(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Fisher–Lee circular correlation of angles a, b [N] (radians) under weights [B, N]."""
    n = w.sum(1)
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    big_a, big_b = w @ (ca * cb), w @ (sa * sb)
    big_c, big_d = w @ (ca * sb), w @ (sa * cb)
    e, f = w @ np.cos(2 * a), w @ np.sin(2 * a)
    gg, h = w @ np.cos(2 * b), w @ np.sin(2 * b)
    with np.errstate(all="ignore"):
        return 4 * (big_a * big_b - big_c * big_d) / np.sqrt(
            (n * n - e * e - f * f) * (n * n - gg * gg - h * h))


def start_dependence(unit: np.ndarray, iterations: np.ndarray, circular: bool,
                     chain_weights: np.ndarray) -> pd.DataFrame:
    """Correlation of x_0 and x_n across chains for every iteration n (module docstring),
    with 95 % cluster-bootstrap bounds: unit [C, I, D] unit coordinates, chain_weights
    [B, C] -> columns iteration, correlation, lower, upper, statistic, n."""
    c, n_it, d = unit.shape
    est = np.full((chain_weights.shape[0], n_it), np.nan)
    x0 = unit[:, 0]
    for i in range(n_it):  # I ≤ a few dozen iterations
        ok = ~np.isnan(x0).any(-1) & ~np.isnan(unit[:, i]).any(-1)
        if ok.sum() < 3:
            continue
        w = chain_weights[:, ok]
        if circular:
            est[:, i] = _weighted_fisher_lee(2 * np.pi * x0[ok, 0], 2 * np.pi * unit[ok, i, 0],
                                             w)
        else:
            est[:, i] = np.mean([_weighted_pearson(x0[ok, k], unit[ok, i, k], w)
                                 for k in range(d)], axis=0)
    lo, hi = percentile_interval(est[1:])
    n = (~np.isnan(x0).any(-1)[:, None] & ~np.isnan(unit).any(-1)).sum(0)
    return pd.DataFrame({"iteration": iterations, "correlation": est[0], "lower": lo,
                         "upper": hi, "statistic": "fisher_lee" if circular else "pearson",
                         "n": n})


# -- agreement of chains started from different seeds --------------------------------------


def seed_groups(x0: np.ndarray, circular: bool) -> np.ndarray | None:
    """Group index of each chain by its seed x0 [C, D] (module docstring); None when the
    seeds do not vary."""
    c = len(x0)
    keys, inv, counts = np.unique(np.round(x0, 9), axis=0, return_inverse=True,
                                  return_counts=True)
    inv = inv.reshape(-1)
    if 2 <= len(keys) <= c // 2 and counts.min() >= 2:
        return inv
    if len(keys) < 2:
        return None
    if x0.shape[1] == 1:
        s = x0[:, 0]
    else:  # the first principal axis
        z = x0 - x0.mean(0)
        s = z @ np.linalg.svd(z, full_matrices=False)[2][0]
    ranks = np.argsort(np.argsort(s, kind="stable"), kind="stable")
    return (ranks * SEED_GROUPS // c).astype(np.int64)


def seed_agreement(emb_last: np.ndarray, groups: np.ndarray, n_perm: int = 300,
                   seed: int = 0) -> dict:
    """Permutation test that the chains' last values emb_last [C, D] (Euclidean, data
    units) have one distribution across seed groups [C]: the DISCO between-sample
    statistic Σ_{j<k} n_j n_k/(2N) (2M_jk − M_jj − M_kk), M the mean distances (pairs of
    distinct chains)."""
    dist = torch.cdist(torch.from_numpy(emb_last), torch.from_numpy(emb_last))
    k = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    labels = np.vstack([groups[None], np.array([rng.permutation(groups)
                                                for _ in range(n_perm)])])
    onehot = torch.zeros((len(labels), len(groups), k), dtype=dist.dtype)
    onehot.scatter_(2, torch.from_numpy(labels).unsqueeze(-1), 1.0)
    sums = onehot.transpose(1, 2) @ (dist @ onehot)  # [P, K, K]
    n = onehot.sum(1)  # [P, K]
    pairs = n[:, :, None] * n[:, None, :] - torch.diag_embed(n)
    m = sums / pairs.clamp(min=1)
    mjj = torch.diagonal(m, dim1=1, dim2=2)
    e = 2 * m - mjj[:, :, None] - mjj[:, None, :]
    stat = (n[:, :, None] * n[:, None, :] / (2 * len(groups)) * e).triu(1).sum((1, 2))
    obs = float(stat[0])
    p = float((1 + (stat[1:] >= obs - 1e-12).sum()) / (1 + n_perm))
    return {"statistic": obs, "p_value": p, "groups": k, "permutations": n_perm}


def judge_convergence(dependence: pd.DataFrame, agreement: dict | None,
                      n_chains: int) -> dict:
    """The verdict of the module docstring with the values behind it."""
    last = dependence.iloc[-1]
    r, lo, hi = (float(last[k]) for k in ("correlation", "lower", "upper"))
    dep_ok: bool | None
    if n_chains < MIN_CHAINS or not np.isfinite(r):
        dep_ok = None
    else:
        includes0 = np.isfinite(lo) and lo <= 0 <= hi
        dep_ok = bool(includes0 or abs(r) < DEPENDENCE_SMALL)
    agree_ok = None
    if agreement is not None and n_chains >= MIN_CHAINS:
        agree_ok = bool(agreement["p_value"] >= ALPHA)
    verdicts = [v for v in (dep_ok, agree_ok) if v is not None]
    converged = None if not verdicts else all(verdicts)
    reasons = []
    if dep_ok is False:
        name = {"pearson": "Pearson", "fisher_lee": "Fisher–Lee circular"}.get(
            str(last["statistic"]), str(last["statistic"]))
        ci = (f", 95 % CI {lo:.2f}–{hi:.2f}" if np.isfinite(lo) and np.isfinite(hi)
              else ", no interval")
        reasons.append(f"iteration {int(last['iteration'])} still depends on the start "
                       f"({name} correlation {r:.2f}{ci})")
    if agree_ok is False:
        reasons.append(f"chains from different seeds still differ at the last iteration "
                       f"(permutation p = {agreement['p_value']:.3g} over "
                       f"{agreement['groups']} seed groups)")
    if converged is None:
        reasons.append("too few chains or no variation in the seeds to judge convergence"
                       if n_chains < MIN_CHAINS or dep_ok is None and agreement is None
                       else "convergence cannot be judged")
    return {
        "converged": converged,
        "start_dependence": {"iteration": int(last["iteration"]),
                             "statistic": str(last["statistic"]),
                             "correlation": r, "lower": lo, "upper": hi,
                             "independent": dep_ok, "small": DEPENDENCE_SMALL},
        "seed_agreement": None if agreement is None else {**agreement, "agree": agree_ok,
                                                          "alpha": ALPHA},
        "reasons": reasons,
    }
