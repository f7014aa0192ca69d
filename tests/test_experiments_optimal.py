"""The optimal-schedule experiment: verdicts from known numbers, a small resumed run."""

from __future__ import annotations

import pytest

from serialrepro.experiments import optimal


def _rows(kl_opt, kl_eqc, levels=None):
    """Synthetic rows: one prior/family, ends constraint, optimal kl per T given."""
    rows = []
    for T, ko, ke in zip((3, 6, 12), kl_opt, kl_eqc, strict=True):
        lv = levels or [0.01] + [0.05] * (T - 1)
        lv = lv[:T] + [lv[-1]] * (T - len(lv))
        for name, kl, sig in (("optimal", ko, lv), ("equal-complexity", ke,
                                                    [0.01 + 0.04 * i / (T - 1) for i in range(T)])):
            rows.append({"prior": "p", "noise": "gaussian", "constraint": "ends", "T": T,
                         "schedule": name, "kl_bits": kl, "jsd_bits": 0.0,
                         "complexity_bits": 0.0, "stationarity": 0.0, "sigmas": sig})
    return rows


def test_verdicts_read_the_numbers():
    v = optimal.verdicts(_rows([0.3, 0.2, 0.1], [0.31, 0.21, 0.105]))
    e = v["equal_complexity"]["ends"]
    assert e["close"] and e["share_close"] == 1.0
    assert e["median_kl_excess"] == pytest.approx(0.05)
    m = v["more_steps"]["ends"]
    assert m["helps"] and m["by_condition"]["p/gaussian"]["relative_drop"] == pytest.approx(2 / 3)
    s = v["shape"]["ends"]
    assert s["median_largest_jump"] == pytest.approx(1.0)  # one jump does all the work
    assert "close to" in v["summary"][0] and "help" in v["summary"][0]


def test_verdicts_say_no_when_the_numbers_say_no():
    v = optimal.verdicts(_rows([0.1, 0.12, 0.15], [0.2, 0.3, 0.4]))
    assert not v["equal_complexity"]["ends"]["close"]
    assert not v["more_steps"]["ends"]["helps"]
    assert "far from" in v["summary"][0] and "do not help" in v["summary"][0]


def test_verdicts_flag_a_search_that_lost_to_a_shorter_schedule():
    rows = _rows([0.1, 0.12, 0.15], [0.2, 0.3, 0.4])
    for r in rows:
        r["constraint"] = "total-variance"
    v = optimal.verdicts(rows)
    assert v["more_steps"]["total-variance"]["search_gaps"] == ["p/gaussian"]
    assert "missed the global optimum" in v["summary"][0]
    ok = optimal.verdicts(_rows([0.3, 0.2, 0.1], [0.31, 0.21, 0.105]))
    assert ok["more_steps"]["ends"]["search_gaps"] == []


def test_small_run_resumes_and_writes_results(tmp_path):
    sel = dict(priors=("swiss-roll",), families=("gaussian",), T_values=(2, 3),
               constraints=("ends", "total-variance"), grid="torus:8")
    rows = optimal.run(tmp_path, "quick", **sel)
    assert {r["schedule"] for r in rows} >= {"optimal", "linear", "equal-complexity"}
    for (con, T), group in optimal._by(rows, "constraint", "T").items():
        best = next(r for r in group if r["schedule"] == "optimal")
        assert all(best["kl_bits"] <= r["kl_bits"] + 1e-12 for r in group), (con, T)
    seen = []
    again = optimal.run(tmp_path, "quick", progress=seen.append, **sel)
    assert again == rows and all("cached" in s for s in seen)
    v = optimal.write_results(rows, tmp_path)
    assert (tmp_path / "rows.csv").is_file() and (tmp_path / "verdicts.json").is_file()
    assert (tmp_path / "optimal-schedules-swiss-roll.png").stat().st_size > 1000
    assert set(v["more_steps"]) == {"ends", "total-variance"}


def test_the_summary_reads_as_sentences_with_absolute_excess(tmp_path):
    """Each constraint is its own sentence; a near-zero optimum's relative excess is not
    printed as an absurd factor, and the absolute excess in bits is given."""
    from serialrepro.experiments.optimal import _excess

    assert _excess(8.8e11, 0.01) == "over 1000x the optimum's kl, +0.01 bits"
    assert _excess(0.25, 0.1) == "25.0%, +0.1 bits"
    assert _excess(None) == "n/a"
