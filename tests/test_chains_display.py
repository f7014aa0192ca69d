"""Multi-item displays: matching items across iterations recovers the noise of shuffled
random walks, the scramble warning separates right from shuffled ids, display statistics
match a per-display reference, cover their truth, and see compacting displays."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import digamma

from serialrepro.chains.data import load_chains
from serialrepro.chains.display import (
    SCRAMBLE_RATIO,
    STAT_COLUMNS,
    compare_display_stats,
    display_stats,
    identity_scramble_check,
    match_items,
    mean_jump,
    table_display_stats,
    track_displays,
)
from serialrepro.errors import UserInputError


def _table(pos: np.ndarray, tmp_path, rng=None, name="d.parquet", **load):
    """[C, I, K, D] item positions -> a loaded table; ``rng`` shuffles the item ids of every
    display (response order instead of item identity)."""
    c, n_it, k, d = pos.shape
    item = np.broadcast_to(np.arange(k), (c, n_it, k))
    if rng is not None:
        item = np.argsort(rng.random((c, n_it, k)), axis=-1)
    cols = ["x", "y", "z"][:d]
    frame = pd.DataFrame({"chain": np.repeat(np.arange(c), n_it * k),
                          "iteration": np.tile(np.repeat(np.arange(n_it), k), c),
                          "item": item.ravel()})
    for a, col in enumerate(cols):
        frame[col] = pos[..., a].ravel()
    frame.to_parquet(tmp_path / name)
    return load_chains(tmp_path / name, cols, item_col="item", **load)


def _walks(rng, c, n_it, k, step, size=100.0, d=2):
    """Independent Gaussian random walks (per-axis step ``step``) from uniform starts."""
    start = size * rng.random((c, 1, k, d))
    steps = step * rng.standard_normal((c, n_it - 1, k, d))
    return start + np.concatenate([np.zeros((c, 1, k, d)), np.cumsum(steps, axis=1)], axis=1)


def _sigma_from_jumps(table) -> float:
    """Perception σ of a 'sample' agent with a flat prior: jumps are N(0, 2σ²) per axis."""
    x, xn, _ = table.transitions()
    return float(np.std(xn - x) / math.sqrt(2))


def test_matching_recovers_sigma_of_shuffled_displays(tmp_path):
    """15 dots per display, ids shuffled at every iteration (click order): taken at face
    value σ comes out many times too large; matched, it is recovered."""
    rng = np.random.default_rng(0)
    sigma = 1.0
    pos = _walks(rng, 40, 16, 15, sigma * math.sqrt(2))
    shuffled = _table(pos, tmp_path, rng)
    assert _sigma_from_jumps(shuffled) > 10 * sigma
    m = match_items(shuffled)
    assert m.table.report.chains == 40 * 15
    assert _sigma_from_jumps(m.table) == pytest.approx(sigma, rel=0.05)
    assert m.mean_jump_before > 10 * m.mean_jump_after
    assert m.mean_jump_after == pytest.approx(mean_jump(m.table))
    assert m.mean_jump_after == pytest.approx(mean_jump(_table(pos, tmp_path, name="t.parquet")),
                                              rel=0.02)
    ratio, warning = identity_scramble_check(shuffled)
    assert ratio > 10 and "item identities look scrambled" in warning
    assert "--match-items" in warning
    right_ratio, none = identity_scramble_check(_table(pos, tmp_path, name="r.parquet"))
    assert none is None and 1 <= right_ratio < 1.05
    again, after = identity_scramble_check(m.table)
    assert after is None and again == pytest.approx(1.0)


@pytest.mark.parametrize("step_over_nn", [0.25, 1.0, 3.0])
def test_scramble_threshold_separates_right_from_shuffled_ids(tmp_path, step_over_nn):
    """The simulation behind SCRAMBLE_RATIO: 15 items uniform in a square (mean
    nearest-neighbour distance ≈ 0.5·side/√15), random walks of growing step."""
    rng = np.random.default_rng(int(step_over_nn * 10))
    step = step_over_nn * 0.5 * 100.0 / math.sqrt(15)
    pos = _walks(rng, 20, 10, 15, step)
    right, _ = identity_scramble_check(_table(pos, tmp_path))
    shuffled, _ = identity_scramble_check(_table(pos, tmp_path, rng, "s.parquet"))
    assert 1 <= right < 1.3 < SCRAMBLE_RATIO < 3 < shuffled


def test_matching_on_the_circle_follows_items_across_the_wrap(tmp_path):
    """Hues (degrees, 0–359) of 6 items per display, some near 0/360, ids shuffled."""
    rng = np.random.default_rng(3)
    sigma = 2.0
    start = (np.arange(6) * 60.0 + 2.0)[None, None, :, None] + np.zeros((30, 1, 6, 1))
    steps = sigma * math.sqrt(2) * rng.standard_normal((30, 11, 6, 1))
    pos = np.mod(start + np.concatenate([np.zeros((30, 1, 6, 1)), np.cumsum(steps, 1)], 1),
                 360)
    t = _table(pos[..., :1], tmp_path, rng, circular=True, period=360.0)
    m = match_items(t)
    v = m.table.values()
    assert v.min() >= 0 and v.max() < 360
    x, xn, _ = m.table.transitions()
    jumps = np.mod(xn - x + 180, 360) - 180
    assert float(np.std(jumps) / math.sqrt(2)) == pytest.approx(sigma, rel=0.06)
    assert identity_scramble_check(t)[1] is not None


def test_displays_of_different_sizes_start_new_identities(tmp_path):
    frame = pd.DataFrame({
        "chain": ["a"] * 8, "iteration": [0, 0, 1, 1, 1, 2, 2, 2],
        "item": ["1", "2", "1", "2", "3", "1", "2", "3"],
        "x": [0.0, 10.0, 10.2, 0.1, 5.0, 0.2, 10.1, 5.1]})
    frame.to_csv(tmp_path / "u.csv", index=False)
    m = match_items(load_chains(tmp_path / "u.csv", ["x"], item_col="item"))
    f = m.table.frame.set_index(["iteration", "x"])["item"]
    assert [f[(1, 0.1)], f[(1, 10.2)], f[(1, 5.0)]] == ["1", "2", "3@1"]
    assert [f[(2, 0.2)], f[(2, 10.1)], f[(2, 5.1)]] == ["1", "2", "3@1"]
    assert m.mean_jump_after == pytest.approx(0.6 / 5)  # five matched steps
    with pytest.raises(UserInputError, match="needs an item column"):
        match_items(load_chains(tmp_path / "u.csv", ["x"], where="item == 1"))


def _reference(values, display, iteration, period=None):
    """Per-display loop: np.cov / slogdet and brute-force nearest neighbours."""
    rows = []
    for t in np.unique(iteration):
        disp, nn = [], []
        for g in np.unique(display[iteration == t]):
            v = values[display == g]
            if period is not None:
                ang = 2 * np.pi * v / period
                centre = np.arctan2(np.sin(ang).mean(0), np.cos(ang).mean(0)) * period / (
                    2 * np.pi)
                v = centre + np.mod(v - centre + period / 2, period) - period / 2
            if len(v) >= v.shape[1] + 1:
                disp.append(np.linalg.slogdet(np.atleast_2d(np.cov(v.T)))[1])
            if len(v) >= 2:
                diff = v[:, None] - v[None]
                if period is not None:
                    diff = np.mod(diff + period / 2, period) - period / 2
                dist = np.sqrt((diff**2).sum(-1)) + np.diag(np.full(len(v), np.inf))
                nn.append(dist.min(1).mean())
        rows.append((t, np.mean(disp), np.mean(nn)))
    return np.array(rows)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_display_stats_match_a_per_display_reference(dims):
    rng = np.random.default_rng(dims)
    sizes = rng.integers(1, 9, 60)  # 1-item displays have neither statistic
    display = np.repeat(np.arange(60), sizes)
    iteration = np.repeat(np.arange(60) % 4, sizes)
    values = rng.normal(0, 1 + iteration[:, None], (len(display), dims))
    got = display_stats(values, display, iteration, n_boot=0)
    assert list(got.columns) == list(STAT_COLUMNS)
    ref = _reference(values, display, iteration)
    assert np.allclose(got[["iteration", "dispersion", "nn_distance"]].to_numpy(), ref)
    assert got["dispersion_low"].isna().all()


def test_circular_display_stats_do_not_see_the_wrap():
    rng = np.random.default_rng(7)
    display = np.repeat(np.arange(40), 5)
    iteration = np.repeat(np.arange(40) % 2, 5)
    centre = rng.uniform(0, 360, 40)[display]
    hues = np.mod(centre + rng.normal(0, 10, len(display)), 360)[:, None]
    got = display_stats(hues, display, iteration, n_boot=0, period=360.0)
    assert np.allclose(got[["iteration", "dispersion", "nn_distance"]].to_numpy(),
                       _reference(hues, display, iteration, 360.0))
    moved = display_stats(np.mod(hues - centre[:, None] + 180, 360), display, iteration,
                          n_boot=0, period=360.0)  # every display away from the wrap
    assert np.allclose(got["dispersion"], moved["dispersion"])
    assert np.allclose(got["nn_distance"], moved["nn_distance"])
    assert got["dispersion"].to_numpy() == pytest.approx(_expected_logdet(5, 1, 100.0),
                                                         abs=0.45)


def _expected_logdet(n, dims, var):
    """E log det of the ddof=1 covariance of n iid N(0, var·I) points (Wishart)."""
    return dims * math.log(var) + sum(digamma((n - i) / 2) for i in range(1, dims + 1)) + (
        dims * math.log(2 / (n - 1)))


def test_dispersion_intervals_cover_the_truth_and_clusters_widen_them():
    """200 replications, 200 displays of 10 items in 2-D at one iteration. Displays come
    from 40 participants whose scale varies (log-normal): the cluster bootstrap covers
    E log det at its nominal rate; resampling displays as if independent does not."""
    rng = np.random.default_rng(11)
    n_rep, n_part, per, k = 200, 40, 5, 10
    truth = _expected_logdet(k, 2, 1.0)  # E over participants of 2 log s² is 0
    hit_c = hit_d = 0
    display = np.repeat(np.arange(n_part * per), k)
    cluster = display // per
    for r in range(n_rep):
        log_s = rng.normal(0, 0.35, n_part)
        values = rng.standard_normal((len(display), 2)) * np.exp(log_s[cluster])[:, None]
        it = np.zeros(len(display), dtype=int)
        c = display_stats(values, display, it, 200, r, cluster=cluster).iloc[0]
        d = display_stats(values, display, it, 200, r).iloc[0]
        hit_c += c["dispersion_low"] <= truth <= c["dispersion_high"]
        hit_d += d["dispersion_low"] <= truth <= d["dispersion_high"]
        assert c["dispersion_low"] <= c["dispersion"] <= c["dispersion_high"]
    assert 0.90 <= hit_c / n_rep <= 0.99
    assert hit_d / n_rep < 0.85


def _compacting(rng, c, n_it, k, lam, step):
    """Displays whose items are drawn towards the display's centre: x' = m + λ(x − m) + e."""
    pos = np.empty((c, n_it, k, 2))
    pos[:, 0] = 50 + 20 * rng.standard_normal((c, k, 2))
    for n in range(1, n_it):  # the data-generating process, written out for the test
        m = pos[:, n - 1].mean(1, keepdims=True)
        pos[:, n] = m + lam * (pos[:, n - 1] - m) + step * rng.standard_normal((c, k, 2))
    return pos


def _stats(pos, n_boot=200, seed=0):
    c, n_it, k, _ = pos.shape
    display = np.repeat(np.arange(c * n_it), k)
    iteration = np.tile(np.repeat(np.arange(n_it), k), c)
    return display_stats(pos.reshape(-1, 2), display, iteration, n_boot, seed,
                         cluster=np.repeat(np.arange(c), n_it * k))


def test_compacting_displays_are_seen_and_the_independent_model_is_flagged():
    rng = np.random.default_rng(5)
    data = _stats(_compacting(rng, 60, 11, 15, 0.85, 1.5))
    model = _stats(_walks(np.random.default_rng(6), 60, 11, 15, 1.5, size=0) + (
        50 + 20 * np.random.default_rng(7).standard_normal((60, 1, 15, 2))), seed=1)
    first, last = data.iloc[0], data.iloc[-1]
    assert last["dispersion_high"] < first["dispersion_low"]  # the displays compact
    assert last["nn_distance_high"] < first["nn_distance_low"]
    assert model.iloc[-1]["dispersion_low"] > model.iloc[0]["dispersion"] - 0.05  # no fall
    warnings = compare_display_stats(data, model)
    assert len(warnings) == 2
    assert warnings[0].startswith("the independent-item model cannot reproduce the data's "
                                  "within-display dispersion")
    assert "lies below the model's" in warnings[0] and "iteration(s) 8, 9, 10" in warnings[0]
    assert "nearest-neighbour" in warnings[1]
    twin = _stats(_walks(np.random.default_rng(8), 60, 11, 15, 1.5, size=0) + (
        50 + 20 * np.random.default_rng(9).standard_normal((60, 1, 15, 2))), seed=2)
    assert compare_display_stats(model, twin) == []
    assert compare_display_stats(data.assign(dispersion_low=np.nan), model)[0].endswith(
        "data and model not compared")


def test_display_stats_input_errors():
    v = np.zeros((4, 2))
    with pytest.raises(UserInputError, match="spans several iterations"):
        display_stats(v + np.arange(4)[:, None], [0, 0, 1, 1], [0, 1, 1, 1])
    with pytest.raises(UserInputError, match="spans several clusters"):
        display_stats(v, [0, 0, 1, 1], [0, 0, 1, 1], cluster=[0, 1, 1, 1])
    with pytest.raises(UserInputError, match="finite values"):
        display_stats(v * np.nan, [0, 0, 1, 1], [0, 0, 1, 1])


def test_table_displays_feed_display_stats(tmp_path):
    rng = np.random.default_rng(2)
    pos = _compacting(rng, 10, 4, 6, 0.8, 1.0)
    t = _table(pos, tmp_path)
    values, display, iteration, cluster = t.displays()
    got = display_stats(values, display, iteration, 50, 0, cluster)
    assert len(got) == 4 and (got["n_displays"] == 10).all()
    assert len(np.unique(cluster)) == 10
    assert table_display_stats(t, 50, 0).equals(got)
    ref = _stats(pos, 0)
    assert np.allclose(got["dispersion"], ref["dispersion"])


def test_tracks_to_displays_agree_with_the_table(tmp_path):
    """The route for model chains: tracks [C, I, D] + each track's chain give the same
    displays (and clusters) as the loaded table."""
    rng = np.random.default_rng(4)
    pos = _compacting(rng, 8, 5, 4, 0.8, 1.0)
    t = _table(pos, tmp_path)
    its, _, states = t.by_iteration()
    states[0, 2] = np.nan  # a missing response
    v, disp, it, track = track_displays(states, t.chain_index, its)
    assert len(v) == 8 * 5 * 4 - 1 and np.array_equal(t.chain_index[track] * 5 + it, disp)
    got = display_stats(v, disp, it, 100, 3, cluster=t.cluster_codes[track])
    v2, d2, i2, c2 = t.displays()
    full = display_stats(v2, d2, i2, 100, 3, cluster=c2)
    assert np.allclose(got["dispersion"].iloc[[0, 1, 3, 4]], full["dispersion"].iloc[[0, 1, 3, 4]])
    assert got["n_displays"].tolist() == [8] * 5
    with pytest.raises(UserInputError, match="chain_index has shape"):
        track_displays(states, t.chain_index[:3], its)
