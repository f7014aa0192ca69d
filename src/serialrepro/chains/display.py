"""Multi-item displays: the items of one chain at one iteration form a display.

In a multi-item task (positions of several dots per display, reproduced from memory) the
item index of a response is often the order in which the participant clicked, not which
stimulus item they meant. Following item k through the chain then follows nobody: the
jumps mix the reproduction noise with the distances between items.

* :func:`match_items` — within each chain, the items of iteration n + 1 are matched to
  those of iteration n by the assignment of minimum total distance (the linear sum
  assignment problem, Kuhn 1955; ``scipy.optimize.linear_sum_assignment``; circular
  distance on a circle or torus), and relabelled so an item is followed through the chain.
* :func:`identity_scramble_check` — the mean jump with the given ids over the mean jump
  after matching. Matching can only lower the total distance, so the ratio is ≥ 1; it
  stays near 1 when the ids are right and the noise is small against the spacing of the
  items, and is large when the ids are response order (see :data:`SCRAMBLE_RATIO`).
* :func:`display_stats` — per iteration, the mean over displays of the **dispersion**
  log det Σ̂_d (the within-display covariance, ddof = 1; log variance in 1-D; deviations
  from the display's circular mean, wrapped, on a circle) and of the mean
  **nearest-neighbour distance** within a display, with percentile bootstrap intervals
  over displays or over clusters (participants, chains).
* :func:`compare_display_stats` — where a model of independent items cannot reproduce the
  data's display statistics (the intervals of data and model part at the last iterations).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from serialrepro.chains.data import (
    CHAIN,
    ITEM,
    ITERATION,
    KEY,
    ChainTable,
    circular_difference,
)
from serialrepro.errors import UserInputError

#: ids look scrambled when the mean jump with them is this many times the matched one.
#: Chosen by simulation (tests/test_chains_display.py,
#: ``test_scramble_threshold_separates_right_from_shuffled_ids``): 15 items uniform in a
#: square, each a Gaussian random walk. With the true ids the ratio grows with the step but
#: levels off near 1.2 (1.01 at a per-axis step of a quarter of the mean nearest-neighbour
#: distance, 1.11 at one, 1.22 at three, 1.20 at five); with the ids shuffled at every
#: iteration it falls from 12 to 3.4 over the same range. 1.5 lies between, with margin.
SCRAMBLE_RATIO = 1.5
STAT_COLUMNS = ("iteration", "n_displays", "dispersion", "dispersion_low",
                "dispersion_high", "nn_distance", "nn_distance_low", "nn_distance_high")


class ItemMatch(NamedTuple):
    """The relabelled table and the mean jump (data units) before and after matching."""

    table: ChainTable
    mean_jump_before: float
    mean_jump_after: float


def _distance(a: np.ndarray, b: np.ndarray, period: float | None) -> np.ndarray:
    """Euclidean distance between the last axes of a and b (circular per axis)."""
    return np.sqrt((circular_difference(a, b, period) ** 2).sum(-1))


def mean_jump(table: ChainTable) -> float:
    """Mean distance between consecutive iterations of the same chain key (data units)."""
    x, xn, _ = table.transitions()
    return float(_distance(xn, x, table.period).mean()) if len(x) else math.nan


def match_items(table: ChainTable) -> ItemMatch:
    """Follow items through each chain by matching consecutive displays.

    Displays are compared in iteration order (across a missing iteration the last display
    seen is used). Item j of iteration n + 1 takes the identity of the item of iteration n
    it is assigned to (minimum total Euclidean distance); an item left unassigned because
    the later display has more items starts a new identity ``"<item>@<iteration>"``.
    """
    if not table.has_item:
        raise UserInputError("matching items needs an item column (--item-col) naming the "
                             "items of a display")
    before = mean_jump(table)
    f = table.frame.sort_values([CHAIN, ITERATION], kind="stable").reset_index(drop=True)
    v = f[table.value_cols].to_numpy(np.float64)
    items = f[ITEM].to_numpy(dtype=object)
    its = f[ITERATION].to_numpy()
    chain = f[CHAIN].to_numpy()
    new = items.copy()
    # displays are runs of equal (chain, iteration) in the sorted frame
    cut = np.flatnonzero((chain[1:] != chain[:-1]) | (its[1:] != its[:-1])) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(f)]
    for k in range(1, len(starts)):  # one assignment problem per pair of displays
        s, e = starts[k], ends[k]
        ps, pe = starts[k - 1], ends[k - 1]
        if chain[s] != chain[ps]:
            continue
        cost = _distance(v[ps:pe, None, :], v[None, s:e, :], table.period)
        rows, cols = linear_sum_assignment(cost)
        if len(cols) == e - s:
            label = np.empty(e - s, dtype=object)
        else:  # more items than before: the unassigned ones start new identities
            label = np.array([f"{it}@{its[s]}" for it in items[s:e]], dtype=object)
        label[cols] = new[ps:pe][rows]
        new[s:e] = label
    f[ITEM] = new
    f[KEY] = f[CHAIN] + "/" + f[ITEM]
    matched = table.with_frame(f)
    return ItemMatch(matched, before, mean_jump(matched))


def identity_scramble_check(table: ChainTable, threshold: float = SCRAMBLE_RATIO,
                            ) -> tuple[float, str | None]:
    """(mean jump with the given ids / mean jump after matching, a warning or None).

    The ratio is 1 for a table without items (nothing to scramble)."""
    if not table.has_item:
        return 1.0, None
    m = match_items(table)
    before, after = m.mean_jump_before, m.mean_jump_after
    if not (math.isfinite(before) and math.isfinite(after)):
        return math.nan, None
    ratio = before / after if after > 0 else (math.inf if before > 0 else 1.0)
    if ratio <= threshold:
        return ratio, None
    return ratio, (
        f"item identities look scrambled: the mean jump between consecutive iterations with "
        f"the given item ids ({before:.3g}) is {ratio:.2f}× the mean jump after matching the "
        f"items of consecutive displays ({after:.3g}); the item column may be response order "
        "rather than which item was meant (match items with --match-items)")


# -- display statistics --------------------------------------------------------------------


def track_displays(states: np.ndarray, chain_index: np.ndarray,
                   iterations: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tracks [C, I, D] (one per chain key, NaN where missing; e.g.
    :meth:`ChainTable.by_iteration` or a model's simulated chains) to display rows.

    ``chain_index`` [C] is each track's chain (:attr:`ChainTable.chain_index`, subset as the
    tracks are); tracks of one chain at one iteration form a display. Returns
    (values [N, D], display id [N], iteration [N], track index [N] into C), NaN rows left
    out; the inputs of :func:`display_stats` (clusters: ``table.cluster_codes[track]``)."""
    states = np.asarray(states, dtype=np.float64)
    if states.ndim == 2:
        states = states[..., None]
    c, n_it, _ = states.shape
    chain_index = np.asarray(chain_index, dtype=np.int64)
    if chain_index.shape != (c,):
        raise UserInputError(f"chain_index has shape {chain_index.shape}; expected ({c},) for "
                             f"{c} tracks")
    its = np.arange(n_it) if iterations is None else np.asarray(iterations)
    if its.shape != (n_it,):
        raise UserInputError(f"{len(its)} iterations for tracks of {n_it} iterations")
    track, step = np.divmod(np.arange(c * n_it), n_it)
    flat = states.reshape(c * n_it, -1)
    ok = np.isfinite(flat).all(axis=1)
    display = chain_index[track] * n_it + step
    return flat[ok], display[ok], its[step[ok]], track[ok]


def _per_display(values: np.ndarray, d: np.ndarray, n_disp: int, period: float | None,
                 chunk: int = 2_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items [B], log det of the covariance [B], mean nearest-neighbour distance [B]),
    NaN where a display has too few items (D + 1 for the covariance, 2 for neighbours)."""
    n, dims = values.shape
    count = np.bincount(d, minlength=n_disp).astype(np.float64)
    if period is None:
        centre = np.stack([np.bincount(d, values[:, a], n_disp) for a in range(dims)], 1)
        centre /= np.maximum(count, 1)[:, None]
    else:
        ang = 2 * np.pi * values / period
        s = np.stack([np.bincount(d, np.sin(ang[:, a]), n_disp) for a in range(dims)], 1)
        c = np.stack([np.bincount(d, np.cos(ang[:, a]), n_disp) for a in range(dims)], 1)
        centre = np.arctan2(s, c) * period / (2 * np.pi)
    dev = circular_difference(values, centre[d], period)
    cov = np.empty((n_disp, dims, dims))
    for a in range(dims):  # D² sums over all rows at once
        for b in range(a, dims):
            cov[:, a, b] = cov[:, b, a] = np.bincount(d, dev[:, a] * dev[:, b], n_disp)
    cov /= np.maximum(count - 1, 1)[:, None, None]
    sign, logdet = np.linalg.slogdet(cov)
    logdet = np.where((sign > 0) & (count >= dims + 1), logdet, np.nan)

    # nearest neighbours: displays padded to the largest, in chunks of about `chunk` pairs
    order = np.argsort(d, kind="stable")
    ds = d[order]
    first = np.searchsorted(ds, np.arange(n_disp))
    slot = np.arange(n) - first[ds]
    kmax = int(count.max())
    pad = np.full((n_disp, kmax, dims), np.nan)
    pad[ds, slot] = values[order]
    nn = np.full(n_disp, np.nan)
    step = max(1, chunk // max(kmax * kmax * dims, 1))
    for lo in range(0, n_disp, step):
        p = pad[lo:lo + step]
        dist = _distance(p[:, :, None, :], p[:, None, :, :], period)
        dist[:, np.arange(kmax), np.arange(kmax)] = np.inf
        dist = np.where(np.isnan(dist), np.inf, dist)
        near = dist.min(axis=2)
        valid = np.isfinite(near)
        with np.errstate(invalid="ignore"):
            nn[lo:lo + step] = np.where(valid, near, 0).sum(1) / valid.sum(1)
    nn[count < 2] = np.nan
    return count, logdet, nn


def display_stats(
    values: np.ndarray, display_id: np.ndarray, iteration: np.ndarray, n_boot: int = 200,
    seed: int = 0, cluster: np.ndarray | None = None, *, period: float | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Display statistics per iteration with percentile bootstrap intervals.

    ``values`` [N, D] are the items, ``display_id`` [N] names each row's display (any
    labels), ``iteration`` [N] its iteration (constant within a display), ``cluster`` [N]
    the independent unit (constant within a display; default: each display). Without
    clusters the displays of each iteration are resampled; with clusters, clusters are
    resampled once per replicate and every display of a drawn cluster counts (so a
    participant's displays move together across iterations). The statistic is a mean over
    displays, so its bootstrap distribution is centred on the estimate. ``period``: values
    on a circle (or torus) of that period.

    Returns the columns of :data:`STAT_COLUMNS`: dispersion = mean log det Σ̂_d (data
    units), nn_distance = mean nearest-neighbour distance (data units).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    n = len(values)
    display_id, iteration = np.asarray(display_id), np.asarray(iteration)
    if display_id.shape != (n,) or iteration.shape != (n,):
        raise UserInputError(f"display_stats needs one display id and iteration per row; got "
                             f"{display_id.shape}, {iteration.shape} for {n} rows")
    if n == 0 or not np.isfinite(values).all():
        raise UserInputError("display_stats needs finite values and at least one row")
    if int(n_boot) < 0 or not 0 < level < 1:
        raise UserInputError(f"n_boot {n_boot} must be ≥ 0 and level {level} in (0, 1)")
    d, _ = pd.factorize(display_id)
    n_disp = int(d.max()) + 1
    disp_it = np.empty(n_disp, dtype=iteration.dtype)
    disp_it[d] = iteration
    if np.any(disp_it[d] != iteration):
        raise UserInputError("a display spans several iterations: the display id must name "
                             "one chain at one iteration")
    if cluster is None:
        disp_cl = None
    else:
        cl, _ = pd.factorize(np.asarray(cluster))
        if cl.shape != (n,):
            raise UserInputError(f"cluster has shape {cl.shape}; expected ({n},)")
        disp_cl = np.empty(n_disp, dtype=np.int64)
        disp_cl[d] = cl
        if np.any(disp_cl[d] != cl):
            raise UserInputError("a display spans several clusters: the cluster must be "
                                 "constant within a display")
    count, disp, nn = _per_display(values, d, n_disp, period)

    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    cluster_w = None
    if disp_cl is not None and n_boot:
        k = int(disp_cl.max()) + 1
        cluster_w = rng.multinomial(k, np.full(k, 1 / k), size=n_boot).astype(np.float64)
    alpha = 100 * (1 - level) / 2
    out = []
    for t in np.unique(disp_it):  # a loop over iterations; displays are vectorised
        at = np.flatnonzero(disp_it == t)
        row = {"iteration": t, "n_displays": len(at)}
        if cluster_w is None and n_boot:
            w = rng.multinomial(len(at), np.full(len(at), 1 / len(at)), size=n_boot)
        elif n_boot:
            w = cluster_w[:, disp_cl[at]]
        for name, stat in (("dispersion", disp[at]), ("nn_distance", nn[at])):
            ok = np.isfinite(stat)
            row[name] = float(stat[ok].mean()) if ok.any() else math.nan
            lo = hi = math.nan
            if n_boot and ok.any():
                ww = w[:, ok].astype(np.float64)
                tot = ww.sum(1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    boot = (ww @ stat[ok]) / tot
                boot = boot[tot > 0]
                if len(boot):
                    lo, hi = np.percentile(boot, [alpha, 100 - alpha])
            row[f"{name}_low"], row[f"{name}_high"] = float(lo), float(hi)
        out.append(row)
    return pd.DataFrame(out, columns=list(STAT_COLUMNS))


def table_display_stats(table: ChainTable, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """:func:`display_stats` of a loaded table: its displays, its clusters (default the
    chain) and its period."""
    values, display, iteration, cluster = table.displays()
    return display_stats(values, display, iteration, n_boot, seed, cluster,
                         period=table.period)


def compare_display_stats(data: pd.DataFrame, model: pd.DataFrame,
                          late: int | None = None) -> list[str]:
    """Warnings where a model of independent items cannot reproduce the data's displays.

    For each statistic, over the last ``late`` common iterations (default: the last fifth,
    at least 1), the iterations where the 95 % intervals of data and model do not overlap;
    the warning gives both trends (first → last iteration) so a reader sees e.g. that the
    data's displays compact while the model's spread. Statistics without intervals are not
    judged (one warning says so)."""
    cols = ["iteration"] + [c for c in STAT_COLUMNS[2:]]
    missing = [c for c in cols if c not in data or c not in model]
    if missing:
        raise UserInputError(f"display statistics lack column(s) {missing}")
    m = data[cols].merge(model[cols], on="iteration", suffixes=("_data", "_model"))
    m = m.sort_values("iteration").reset_index(drop=True)
    if m.empty:
        return ["display statistics of data and model share no iteration: not compared"]
    late = max(1, math.ceil(len(m) / 5)) if late is None else max(1, min(int(late), len(m)))
    tail = m.iloc[len(m) - late:]
    warnings: list[str] = []
    names = {"dispersion": "within-display dispersion (log det of the covariance)",
             "nn_distance": "mean nearest-neighbour distance within displays"}
    for stat, label in names.items():
        ends = {}
        for src in ("data", "model"):
            ends[src] = (m[f"{stat}_{src}"].iloc[0], m[f"{stat}_{src}"].iloc[-1])
        bounds = tail[[f"{stat}_low_data", f"{stat}_high_data", f"{stat}_low_model",
                       f"{stat}_high_model"]].to_numpy()
        finite = np.isfinite(bounds).all(axis=1)
        if not finite.any():
            warnings.append(f"the {label} has no intervals at the last iterations: data and "
                            "model not compared")
            continue
        below = finite & (bounds[:, 1] < bounds[:, 2])
        above = finite & (bounds[:, 0] > bounds[:, 3])
        for mask, word in ((below, "below"), (above, "above")):
            if not mask.any():
                continue
            its = tail["iteration"].to_numpy()[mask]
            last = tail[mask].iloc[-1]
            shown = ", ".join(str(int(i)) for i in its)
            warnings.append(
                f"the independent-item model cannot reproduce the data's {label}: at "
                f"iteration(s) {shown} the data's 95 % interval lies {word} the model's "
                f"(iteration {int(last['iteration'])}: data [{last[f'{stat}_low_data']:.3g}, "
                f"{last[f'{stat}_high_data']:.3g}], model [{last[f'{stat}_low_model']:.3g}, "
                f"{last[f'{stat}_high_model']:.3g}]); from the first to the last iteration "
                f"the data go {ends['data'][0]:.3g} → {ends['data'][1]:.3g}, the model "
                f"{ends['model'][0]:.3g} → {ends['model'][1]:.3g}")
    return warnings
