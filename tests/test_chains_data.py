"""Loading chain tables: every malformed-data case, on small files made here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serialrepro.chains.data import load_chains
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
