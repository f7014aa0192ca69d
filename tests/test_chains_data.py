"""Loading chain tables: every malformed-data case, on small files made here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serialrepro.chains.data import MAX_LISTED, load_chains
from serialrepro.errors import UserInputError


def _csv(tmp_path, text: str, name: str = "chains.csv"):
    path = tmp_path / name
    path.write_text(text.strip() + "\n")
    return path


GOOD = """
chain,iteration,x
a,0,0.1
a,1,0.2
a,2,0.3
b,0,-0.1
b,1,-0.2
"""


def test_a_clean_table_loads_without_warnings(tmp_path):
    t = load_chains(_csv(tmp_path, GOOD), ["x"])
    assert t.report.warnings == []
    assert (t.report.rows_read, t.report.rows_kept, t.report.chains) == (5, 5, 2)
    x, xn, chain = t.transitions()
    assert np.allclose(x[:, 0], [0.1, 0.2, -0.1]) and np.allclose(xn[:, 0], [0.2, 0.3, -0.2])
    assert list(t.chain_keys[chain]) == ["a", "a", "b"]
    its, keys, vals = t.by_iteration()
    assert list(its) == [0, 1, 2] and np.isnan(vals[1, 2, 0])


def test_non_numeric_and_missing_values_skip_the_row(tmp_path):
    t = load_chains(_csv(tmp_path, """
chain,iteration,x,y
a,0,0.1,0.2
a,1,abc,0.3
a,2,0.3,
a,3,0.4,inf
a,4,0.5,0.5
"""), ["x", "y"])
    w = t.report.warnings
    assert any("data row 2 (chain 'a')" in m and "'abc'" in m and "row skipped" in m for m in w)
    assert any("data row 3 (chain 'a')" in m and "missing" in m and "row skipped" in m
               for m in w)
    assert any("data row 4" in m and "'inf'" in m for m in w)
    assert list(t.frame["iteration"]) == [0, 4]
    # the skipped rows leave a gap, reported, and no transition crosses it
    assert any("missing iteration(s) 1, 2, 3" in m and "rows kept" in m for m in w)
    assert len(t.transitions()[0]) == 0


def test_missing_iterations_are_kept_but_never_bridged(tmp_path):
    t = load_chains(_csv(tmp_path, """
chain,iteration,x
a,0,1
a,1,2
a,3,4
a,4,5
"""), ["x"])
    assert t.report.warnings == [
        "chain 'a' is missing iteration(s) 2 (it has 0–4); rows kept, transitions across the "
        "gap are not used"]
    x, xn, _ = t.transitions()
    assert np.allclose(np.c_[x, xn], [[1, 2], [4, 5]])


def test_duplicates_default_drops_exact_repeats_and_stops_on_conflicts(tmp_path):
    same = load_chains(_csv(tmp_path, GOOD + "a,1,0.2\n"), ["x"])
    assert same.report.rows_kept == 5
    assert any("data row 6 (chain 'a'): duplicates data row 2" in m and "row skipped" in m
               for m in same.report.warnings)
    with pytest.raises(UserInputError, match=r"^1 \(chain, item, iteration\) group\(s\) repeat "
                                             r"with different values \(data rows 2, 6 give "
                                             r"chain 'a' iteration 1\); the load stopped "
                                             r"\(duplicates=error; choices: error, first, last, "
                                             r"mean\)$"):
        load_chains(_csv(tmp_path, GOOD + "a,1,0.25\n", "b.csv"), ["x"])


def test_a_chain_of_length_one_is_skipped(tmp_path):
    t = load_chains(_csv(tmp_path, GOOD + "c,0,0.5\n"), ["x"])
    assert t.report.chains == 2
    assert any("data row 6 (chain 'c'): the chain has a single row" in m and "row skipped" in m
               for m in t.report.warnings)


def test_missing_chain_ids_skip_the_row(tmp_path):
    t = load_chains(_csv(tmp_path, GOOD + ",3,0.1\n"), ["x"])
    assert any("data row 6" in m and "no chain id" in m for m in t.report.warnings)
    assert t.report.rows_kept == 5


@pytest.mark.parametrize("bad", ["2.5", "1e300", "", "nan", "x", "-1"])
def test_a_non_integer_iteration_stops_the_load_naming_the_row(tmp_path, bad):
    with pytest.raises(UserInputError, match=r"^data row 6: iteration .* in column 'iteration' "
                                             r"is not an integer in 0\.\.\d+; the load "
                                             r"stopped$"):
        load_chains(_csv(tmp_path, GOOD + f"a,{bad},0.1\n"), ["x"])


def test_strict_stops_at_the_first_problem(tmp_path):
    with pytest.raises(UserInputError, match=r"data row 6 .*the load stopped \(strict\)"):
        load_chains(_csv(tmp_path, GOOD + "a,3,nope\n"), ["x"], strict=True)
    with pytest.raises(UserInputError, match="missing iteration.*stopped"):
        load_chains(_csv(tmp_path, GOOD + "a,5,0.1\n", "g.csv"), ["x"], strict=True)


def test_load_stops_on_structural_problems(tmp_path):
    with pytest.raises(UserInputError, match=r"no column\(s\) \['y'\].*it has \['chain', "
                                             r"'iteration', 'x'\].*stopped"):
        load_chains(_csv(tmp_path, GOOD), ["x", "y"])
    with pytest.raises(UserInputError, match="no data rows"):
        load_chains(_csv(tmp_path, "chain,iteration,x", "e.csv"), ["x"])
    with pytest.raises(UserInputError, match="no usable rows left.*first: data row 1"):
        load_chains(_csv(tmp_path, "chain,iteration,x\na,0,q\na,1,r", "q.csv"), ["x"])
    with pytest.raises(UserInputError, match="does not exist"):
        load_chains(tmp_path / "nope.csv", ["x"])
    with pytest.raises(UserInputError, match=r"must be \.csv"):
        load_chains(_csv(tmp_path, GOOD, "c.xlsx"), ["x"])
    with pytest.raises(UserInputError, match="at least one value column"):
        load_chains(_csv(tmp_path, GOOD), [])


def test_psynet_style_export_with_mapping_json_values_items_and_parquet(tmp_path):
    """A PsyNet-like node table: network_id/degree columns, values as a JSON list in
    'definition', several items (starting stimuli) per network id."""
    rows = []
    for net in (1, 2):
        for item in ("red", "blue"):
            for deg in range(3):
                rows.append({"network_id": net, "degree": deg, "stimulus": item,
                             "definition": json.dumps([net + deg / 10, -deg / 10]),
                             "participant_id": 7})
    rows.append({"network_id": 2, "degree": 3, "stimulus": "blue",
                 "definition": "[0.1]", "participant_id": 8})
    path = tmp_path / "psynet.parquet"
    pd.DataFrame(rows).to_parquet(path)
    t = load_chains(path, ["x", "y"], item_col="stimulus", json_col="definition",
                    rename={"network_id": "chain", "degree": "iteration"})
    assert t.report.chains == 4 and t.has_item
    assert sorted(t.chain_keys) == ["1/blue", "1/red", "2/blue", "2/red"]
    assert any("data row 13 (chain '2' (item 'blue'))" in m and "JSON list" in m
               for m in t.report.warnings)
    assert len(t.transitions()[0]) == 8
    with pytest.raises(UserInputError, match=r"column mapping names \['net'\]"):
        load_chains(path, ["x"], rename={"net": "chain"})


# -- the designs people run --------------------------------------------------------------


def _nested(tmp_path, n_seed=10, n_chain=10, n_it=4, name="nested.csv", **extra):
    """Chain 1–10 inside seed 1–10: (Seed, Chain) is the id; values code the pair."""
    s, c, i = np.meshgrid(np.arange(1, n_seed + 1), np.arange(1, n_chain + 1),
                          np.arange(n_it), indexing="ij")
    frame = pd.DataFrame({"Seed": s.ravel(), "Chain": c.ravel(), "iteration": i.ravel(),
                          "x": (100 * s + c + i / 10).ravel(), **extra})
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name, frame


def test_nested_ids_form_one_composite_chain_id(tmp_path):
    path, _ = _nested(tmp_path)
    t = load_chains(path, ["x"], ["Seed", "Chain"])
    assert t.report.chains == 100 and t.report.warnings == []
    assert "Seed=3|Chain=7" in set(t.chain_keys)
    x, xn, chain = t.transitions()
    assert len(x) == 100 * 3
    # every transition stays within its (seed, chain): x codes the pair
    assert np.all(np.floor(x[:, 0]) == np.floor(xn[:, 0]))
    assert (t.n_iterations, t.report.iterations) == (3, 3)
    same = load_chains(path, ["x"], "Seed,Chain")  # the CLI's comma form
    assert list(same.chain_keys) == list(t.chain_keys)


def test_one_id_column_of_a_nested_design_is_a_short_error(tmp_path):
    path, _ = _nested(tmp_path)
    with pytest.raises(UserInputError) as err:
        load_chains(path, ["x"], "Chain")
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400 and "keep one of them" not in msg
    assert msg.startswith("40 (chain, item, iteration) group(s) repeat with different values")


def test_composite_item_ids_and_the_cluster_defaults_to_the_chain(tmp_path):
    rows = [{"chain": c, "shape": sh, "colour": co, "iteration": i, "x": c + i / 10}
            for c in range(3) for sh in ("sq", "ci") for co in ("r", "g") for i in range(3)]
    path = tmp_path / "items.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    t = load_chains(path, ["x"], item_col=["shape", "colour"])
    assert t.report.chains == 12 and "0/shape=sq|colour=r" in set(t.chain_keys)
    # items of a chain are one unit of the bootstrap unless a cluster is given
    assert list(t.cluster_codes) == list(np.repeat([0, 1, 2], 4))
    assert t.cluster_labels == ["0", "1", "2"] and t.group_codes is None
    assert list(t.chain_index) == list(np.repeat([0, 1, 2], 4))


def test_groups_and_clusters_are_per_chain_codes(tmp_path):
    path, _ = _nested(tmp_path, 4, 3, 3, participant=0)
    frame = pd.read_csv(path)
    frame["participant"] = "p" + (frame["Seed"] % 2).astype(str)
    frame["condition"] = np.where(frame["Chain"] == 1, "fast", "slow")
    frame.to_csv(path, index=False)
    t = load_chains(path, ["x"], ["Seed", "Chain"], group_cols="condition",
                    cluster_cols=["participant"])
    keys = list(t.chain_keys)
    assert t.group_labels == ["fast", "slow"] and t.cluster_labels == ["p0", "p1"]
    assert t.group_name == "condition" and t.cluster_name == "participant"
    k = keys.index("Seed=3|Chain=1")
    assert t.group_codes[k] == 0 and t.cluster_codes[k] == 1
    assert len(t.group_codes) == len(keys) == len(t.cluster_codes)
    frame.loc[5, "participant"] = "p9"  # changes inside one chain
    frame.to_csv(path, index=False)
    with pytest.raises(UserInputError, match=r"^the cluster \(column\(s\) \['participant'\]\) "
                                             r"changes within 1 chain\(s\) .*constant"):
        load_chains(path, ["x"], ["Seed", "Chain"], cluster_cols="participant")


def test_stimulus_column_makes_the_seed_iteration_zero_and_counts_mismatches(tmp_path):
    rng = np.random.default_rng(0)
    n_chain, n_it = 40, 6
    seed = rng.uniform(-1, 1, n_chain)
    resp = seed[:, None] + np.cumsum(rng.normal(0, 0.1, (n_chain, n_it)), axis=1)
    stim = np.c_[seed, resp[:, :-1]]  # shown at iteration n: the response of n − 1
    bad = [(3, 2), (7, 4), (11, 5)]  # three stimuli that are not the previous response
    for c, n in bad:
        stim[c, n] += 0.5
    frame = pd.DataFrame({"chain": np.repeat(np.arange(n_chain), n_it),
                          "trial": np.tile(np.arange(1, n_it + 1), n_chain),
                          "response": resp.ravel(), "shown": stim.ravel()})
    frame.to_csv(tmp_path / "s.csv", index=False)
    t = load_chains(tmp_path / "s.csv", ["response"], iteration_col="trial",
                    stimulus_cols=["shown"])
    its, keys, vals = t.by_iteration()
    order = keys.astype(int)  # keys are text, sorted as text
    assert list(its) == list(range(n_it + 1)) and t.n_iterations == n_it
    assert np.allclose(vals[:, 0, 0], seed[order]) and np.allclose(vals[:, 1:, 0], resp[order])
    r = t.report
    assert (r.seeds_added, r.stimulus_checked, r.stimulus_mismatches) == (
        n_chain, n_chain * (n_it - 1), 3)
    assert r.stimulus_mismatch_rate == pytest.approx(3 / 200)
    assert any(m.startswith("3 of 200 stimuli (1.5%) differ from the previous response")
               for m in r.warnings)
    assert r.as_dict()["stimulus_mismatch_rate"] == pytest.approx(0.015)
    # responses numbered from 0: everything moves up one so the seeds are iteration 0
    frame["trial"] -= 1
    frame.to_csv(tmp_path / "s0.csv", index=False)
    t0 = load_chains(tmp_path / "s0.csv", ["response"], iteration_col="trial",
                     stimulus_cols="shown")
    assert np.array_equal(t0.by_iteration()[2], vals)
    assert any("renumbered +1" in m for m in t0.report.warnings)
    # a table that already holds the seeds (iteration 0 shows its own value) gains none
    seeded = pd.DataFrame({"chain": [0, 0, 0, 1, 1], "iteration": [0, 1, 2, 0, 1],
                           "x": [1.0, 2.0, 3.0, 5.0, 6.0], "shown": [1.0, 1.0, 2.0, 5.0, 5.0]})
    seeded.to_csv(tmp_path / "seeded.csv", index=False)
    ts = load_chains(tmp_path / "seeded.csv", ["x"], stimulus_cols=["shown"])
    assert ts.report.seeds_added == 0 and ts.report.rows_kept == 5
    assert (ts.report.stimulus_checked, ts.report.stimulus_mismatches) == (3, 0)


def test_circular_stimulus_check_wraps_and_hues_stay_in_0_360(tmp_path):
    seeds = np.array([359.0, 2.0, 180.0])
    resp = np.array([[1.0, 358.0], [357.0, 5.0], [181.0, 179.0]])
    stim = np.c_[seeds, resp[:, 0]]
    stim[0, 1] = 361.0  # = 1° on the wheel: the same as the response, after wrapping
    frame = pd.DataFrame({"chain": np.repeat([0, 1, 2], 2), "iteration": np.tile([1, 2], 3),
                          "hue": resp.ravel(), "stim": stim.ravel()})
    frame.to_csv(tmp_path / "h.csv", index=False)
    t = load_chains(tmp_path / "h.csv", ["hue"], stimulus_cols=["stim"], circular=True,
                    period=360.0)
    assert t.circular and t.period == 360.0 and t.origin == 0.0
    assert t.report.stimulus_mismatches == 0
    v = t.values()[:, 0]
    assert v.min() >= 0 and v.max() < 360 and 359.0 in v
    neg = pd.DataFrame({"chain": [0, 0, 1, 1], "iteration": [0, 1, 0, 1],
                        "a": [-170.0, 190.0, 10.0, 20.0]})
    neg.to_csv(tmp_path / "n.csv", index=False)
    tn = load_chains(tmp_path / "n.csv", ["a"], circular=True, period=360.0)
    assert tn.origin == -180.0 and np.allclose(tn.values()[:, 0], [-170, -170, 10, 20])
    with pytest.raises(UserInputError, match="period > 0"):
        load_chains(tmp_path / "n.csv", ["a"], circular=True, period=0.0)


def test_where_filters_rows_with_numbers_compared_as_numbers(tmp_path):
    path, _ = _nested(tmp_path, 3, 2, 3)
    t = load_chains(path, ["x"], ["Seed", "Chain"], where="Seed >= 2 and Chain != 1")
    assert sorted(t.chain_keys) == ["Seed=2|Chain=2", "Seed=3|Chain=2"]
    assert t.report.rows_filtered == 18 - 6
    t2 = load_chains(path, ["x"], ["Seed", "Chain"], where="Seed in [1, 3] & ~(iteration > 1)")
    assert t2.report.rows_kept == 8


@pytest.mark.parametrize("expr, why", [
    ("Seed > ", "not a valid expression"),
    ("Sede == 1", "there is no column 'Sede'"),
    ("Seed == @x", "'@'"),
    ("Seed.__class__ == 1", "attribute is not allowed"),
    ("__import__('os')", "call is not allowed"),
    ("x[0] > 1", "subscript is not allowed"),
    ("Seed + 1", "does not give true or false"),
])
def test_bad_where_expressions_are_one_line_errors_naming_the_columns(tmp_path, expr, why):
    path, _ = _nested(tmp_path, 2, 2, 2)
    with pytest.raises(UserInputError) as err:
        load_chains(path, ["x"], ["Seed", "Chain"], where=expr)
    msg = str(err.value)
    assert "\n" not in msg and why in msg and repr(expr) in msg
    assert "columns: ['Seed', 'Chain', 'iteration', 'x']" in msg


def test_where_that_keeps_nothing_stops(tmp_path):
    path, _ = _nested(tmp_path, 2, 2, 2)
    with pytest.raises(UserInputError, match="keeps none of the 8 rows"):
        load_chains(path, ["x"], ["Seed", "Chain"], where="Seed > 5")


DUP = GOOD + "a,1,0.4\nb,1,-0.4\nb,1,-0.6\n"


@pytest.mark.parametrize("policy, a1, b1", [
    ("first", 0.2, -0.2), ("last", 0.4, -0.6), ("mean", 0.3, -0.4)])
def test_duplicate_policies(tmp_path, policy, a1, b1):
    t = load_chains(_csv(tmp_path, DUP), ["x"], duplicates=policy)
    f = t.frame.set_index(["chain", "iteration"])["x"]
    assert f[("a", 1)] == pytest.approx(a1) and f[("b", 1)] == pytest.approx(b1)
    assert t.report.rows_kept == 5
    assert any("2 (chain, item, iteration) group(s) repeat (2 with different values" in m
               and f"duplicates={policy}" in m for m in t.report.warnings)
    with pytest.raises(UserInputError, match="unknown duplicates policy 'median'; valid "
                                             "choices: error, first, last, mean"):
        load_chains(_csv(tmp_path, DUP), ["x"], duplicates="median")


def test_duplicates_mean_is_the_circular_mean_on_the_circle(tmp_path):
    t = load_chains(_csv(tmp_path, "chain,iteration,h\na,0,350\na,0,20\na,1,10\n"), ["h"],
                    duplicates="mean", circular=True, period=360.0)
    assert t.values()[0, 0] == pytest.approx(5.0)


def test_many_duplicates_and_gaps_load_quickly(tmp_path):
    """200k duplicated (chain, iteration) groups and 50k chains with gaps: vectorised
    checks (the per-group loops took minutes); errors and warnings stay short."""
    n = 50_000
    chain = np.repeat(np.arange(n), 4)
    it = np.tile([0, 1, 3, 4], n)  # a gap at iteration 2 in every chain
    frame = pd.DataFrame({"chain": np.r_[chain, chain], "iteration": np.r_[it, it],
                          "x": np.r_[np.zeros(4 * n), np.ones(4 * n)]})
    path = tmp_path / "big.parquet"
    frame.to_parquet(path)
    halves = tmp_path / "halves.parquet"  # its stored index repeats every label
    pd.concat([frame.iloc[: 4 * n], frame.iloc[: 4 * n]]).to_parquet(halves)
    assert load_chains(halves, ["x"]).report.rows_kept == 4 * n
    t = load_chains(path, ["x"], duplicates="mean")
    assert t.report.chains == n and np.allclose(t.values(), 0.5)
    assert len(t.report.warnings) <= MAX_LISTED + 2
    assert t.report.warnings[-1].startswith(f"… {n - MAX_LISTED} more chains have missing")
    assert len(t.transitions()[0]) == 2 * n
    with pytest.raises(UserInputError) as err:
        load_chains(path, ["x"])
    assert str(err.value).startswith("200000 (chain, item, iteration) group(s) repeat with "
                                     "different values") and len(str(err.value)) < 400


def test_json_stimulus_column_and_capped_warnings(tmp_path):
    """PsyNet-like: 'definition' (shown) and 'answer' (response) are JSON lists; many bad
    rows give MAX_LISTED warnings and one count."""
    rows = []
    for net in range(3):
        prev = [float(net), 0.0]
        for deg in range(1, 4):
            ans = [prev[0] + 0.1, prev[1] - 0.1]
            rows.append({"network_id": net, "degree": deg, "definition": json.dumps(prev),
                         "answer": json.dumps(ans)})
            prev = ans
    rows += [{"network_id": 9, "degree": d, "definition": "[0, 0]", "answer": "oops"}
             for d in range(30)]
    path = tmp_path / "p.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    t = load_chains(path, ["x", "y"], "network_id", "degree", json_col="answer",
                    stimulus_cols=["definition"])
    assert t.report.seeds_added == 3 and t.report.stimulus_mismatches == 0
    assert t.report.stimulus_checked == 6
    assert np.allclose(t.by_iteration()[2][:, 0], [[0, 0], [1, 0], [2, 0]])
    w = t.report.warnings
    assert len(w) == MAX_LISTED + 1 and w[-1] == "… 10 more rows skipped for the same reason"


def test_where_quotes_column_names_with_spaces_and_compares_text(tmp_path):
    path = _csv(tmp_path, """
chain,iteration,x,reaction time,cond
a,0,1,0.5,easy
a,1,2,0.7,easy
b,0,3,0.4,hard
b,1,4,0.9,hard
""")
    t = load_chains(path, ["x"], where="`reaction time` > 0.3 and cond == 'hard'")
    assert list(t.chain_keys) == ["b"] and t.report.rows_filtered == 2
