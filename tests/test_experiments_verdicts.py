"""Verdicts on small hand-made tables: each can come out True, False or not judged, and the
module that computes them imports no plotting library."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from golden_values import GOLDEN  # tests/ helper module
from serialrepro.experiments.config import ExperimentReference
from serialrepro.experiments.verdicts import (
    VERDICTS,
    VerdictInputs,
    golden_deviation,
    judge,
    resolve_reference,
)


def rows(kl, T=(2, 6, 24), **cols) -> pd.DataFrame:
    n = len(kl)
    base = {"experiment": "x", "figure": "", "prior": "swiss-roll", "noise": "gaussian",
            "step": "serial", "T": list(T)[:n], "sigma_start": 0.01, "sigma_end": 0.05,
            "grid": "paper:0.04", "kl_bits": kl, "jsd_bits": 0.0,
            "complexity_bits": [1.0 / (i + 1) for i in range(n)], "stationarity": 0.0,
            "seconds": 1.0, "label": "", "schedule": "linear", "sigma_sq_sum": 0.1, "seed": 0,
            "cell": [f"c{i}" for i in range(n)]}
    base.update(cols)
    return pd.DataFrame(base)


def golden_rows(shift: float = 0.0) -> pd.DataFrame:
    Ts = sorted(GOLDEN)
    df = rows([GOLDEN[T][0] for T in Ts], T=Ts)
    df["kl_bits"] = df["kl_bits"] + shift
    for j, col in enumerate(("jsd_bits", "complexity_bits", "stationarity"), start=1):
        df[col] = [GOLDEN[T][j] for T in Ts]
    return df


def test_kl_falls_is_true_for_a_falling_curve_and_false_for_a_rising_one():
    assert judge("kl-falls", VerdictInputs(rows([0.5, 0.2, 0.3]))).agrees is True
    v = judge("kl-falls", VerdictInputs(rows([0.1, 0.2, 0.4])))
    assert v.agrees is False and "kl rises from 0.1 at T=2 to 0.4 at T=24" in v.findings["kl-vs-T"]


def test_golden_reference_reproduced_and_not():
    ref = resolve_reference("golden", pd.DataFrame())
    ok = judge("kl-falls", VerdictInputs(golden_rows(), ref))
    assert ok.agrees is True and "golden values reproduced" in ok.headline
    off = judge("kl-falls", VerdictInputs(golden_rows(shift=3e-5), ref))
    assert off.agrees is False and "NOT within 1e-05 of the golden values" in off.findings[
        "kl-vs-T"]
    assert golden_deviation(golden_rows(shift=3e-5))["kl_bits"] == pytest.approx(3e-5)
    # rows on another grid are not the golden conditions: the check fails, it is not skipped
    elsewhere = golden_rows().assign(grid="torus:26")
    v = judge("kl-falls", VerdictInputs(elsewhere, ref))
    assert v.agrees is False and "NOT checked against the golden values" in v.findings["kl-vs-T"]


def process_inputs(kl, kl_start, reference=None, noise=None):
    n = len(kl)
    df = rows(kl, T=[10] * n, noise=noise or ["gaussian", "bimodal"][:n],
              figure=["2A-B", "2C"][:n], step="serial")
    extra = pd.DataFrame({"cell": df["cell"], "kl_start": kl_start, "qT_gap": 0.1})
    return VerdictInputs(df, reference, extra)


def test_recovery_needs_more_than_half_of_the_divergence_removed():
    good = judge("recovery", process_inputs([0.1, 0.2], [2.0, 2.0]))
    assert good.agrees is True and set(good.findings) == {"c0", "c1"}
    bad = judge("recovery", process_inputs([0.1, 1.5], [2.0, 2.0]))
    assert bad.agrees is False and "disagree with the claim for bimodal" in bad.headline


def test_worse_than_reference_judges_against_the_reference_rows_and_not_without_them():
    full = pd.concat([rows([0.05, 0.1], T=[10, 10], noise=["gaussian", "bimodal"],
                           experiment="good", cell=["g0", "g1"])])
    ref = resolve_reference(ExperimentReference(experiment="good", label="Good"), full)
    worse = judge("worse-than-reference", process_inputs([1.0, 0.5], [2.0, 2.0], ref))
    assert worse.agrees is True and "20× Good's 0.05" in worse.headline
    better = judge("worse-than-reference", process_inputs([0.01, 0.5], [2.0, 2.0], ref))
    assert better.agrees is False
    absent = resolve_reference(ExperimentReference(experiment="nowhere"), full)
    v = judge("worse-than-reference", process_inputs([1.0, 0.5], [2.0, 2.0], absent))
    assert v.agrees is None and "nowhere is not part of this run" in v.headline


def test_reference_where_filters_the_reference_rows():
    full = rows([0.5, 0.4, 0.3], experiment="ref", noise=["gaussian", "bimodal", "gaussian"])
    ref = resolve_reference(ExperimentReference(experiment="ref", where={"noise": "bimodal"}),
                            full)
    assert ref.rows["kl_bits"].tolist() == [0.4] and not ref.missing
    none = resolve_reference(ExperimentReference(experiment="ref", where={"noise": "x"}), full)
    assert none.missing and len(none.rows) == 0


def test_families_verdict_uses_the_family_registry_and_can_fail():
    fams = ["gaussian", "laplace", "bimodal"]
    df = pd.concat([rows([0.5, 0.3], T=[2, 12], noise=f, cell=[f"{f}0", f"{f}1"])
                    for f in fams], ignore_index=True)
    v = judge("families", VerdictInputs(df))
    assert v.agrees is True and "of the 2 std-parameterised families" in v.headline
    df.loc[(df["noise"] == "bimodal") & (df["T"] == 12), "kl_bits"] = 0.9
    v = judge("families", VerdictInputs(df))
    assert v.agrees is False and "for 2 of 3 family curves" in v.headline
    assert set(v.findings) == {"kl-vs-T", "spread"}


def test_schedules_verdict_false_when_more_steps_do_not_help():
    df = pd.concat([rows([0.1, 0.2], T=[2, 12], schedule=s, cell=[f"{s}0", f"{s}1"])
                    for s in ("linear", "cosine")], ignore_index=True)
    assert judge("schedules", VerdictInputs(df)).agrees is False
    df["kl_bits"] = [0.2, 0.1, 0.3, 0.1]
    assert judge("schedules", VerdictInputs(df)).agrees is True


def test_kl_falls_at_every_grid_fails_at_one_grid():
    df = pd.concat([rows([0.5, 0.3], T=[2, 12], grid="torus:32", cell=["a", "b"]),
                    rows([0.5, 0.6], T=[2, 12], grid="torus:64", cell=["c", "d"])],
                   ignore_index=True)
    v = judge("kl-falls-at-every-grid", VerdictInputs(df))
    assert v.agrees is False and "kl falls with T at 1 of 2 resolutions" in v.headline


def test_every_verdict_names_its_plots():
    from serialrepro.experiments.figures import PLOTS

    for name, kind in VERDICTS.items():
        assert kind.plots and set(kind.plots) <= set(PLOTS), name


def test_the_verdict_module_imports_no_plotting_library():
    code = ("import sys, serialrepro.experiments.verdicts as v; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
