"""Experiments are data: what the report does with an experiment comes from its YAML file
(``plot``, ``verdict``, ``reference``, ``reproduce``), never from its name."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from serialrepro.errors import UserInputError
from serialrepro.experiments.catalog import (
    config_dir,
    reproduce_configs,
    reproduce_names,
    shipped_names,
)
from serialrepro.experiments.config import expand, load_config, parse_config
from serialrepro.experiments.pipeline import run_experiments

SRC = Path(__file__).resolve().parents[1] / "src" / "serialrepro"


def test_no_code_tests_an_experiment_name():
    """No source file spells a shipped experiment's name as a string (the way a branch on
    ``config.name`` would), nor compares ``config.name`` with anything."""
    names = shipped_names()
    quoted = re.compile("|".join(rf"""["']{re.escape(n)}["']""" for n in names))
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not quoted.search(text), (path, quoted.search(text).group())
        assert not re.search(r"config\.name\s*(==|!=|in\b)", text), path


def _copy_configs(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    shutil.copytree(config_dir(), d)
    return d


def test_a_renamed_figure3_is_still_checked_against_the_golden_table(tmp_path):
    data = yaml.safe_load((config_dir() / "fig3.yaml").read_text(encoding="utf-8"))
    data["name"] = "graduality"
    path = tmp_path / "graduality.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    cfg = load_config(path)
    out = run_experiments([cfg], tmp_path / "run", progress=False, announce=False)
    headline = out.headlines["graduality"]
    assert "golden values reproduced" in headline, headline
    html_text = out.report_path.read_text(encoding="utf-8")
    assert "the golden values are reproduced to 1e-05" in html_text
    assert "Golden check" in html_text and "graduality" in html_text


def test_the_reproduce_suite_cannot_lose_its_golden_check(tmp_path):
    d = _copy_configs(tmp_path)
    assert "fig3" in reproduce_names(d)
    text = (d / "fig3.yaml").read_text(encoding="utf-8")
    assert "reference: golden\n" in text
    (d / "fig3.yaml").write_text(text.replace("reference: golden\n", ""), encoding="utf-8")
    with pytest.raises(UserInputError, match="reference: golden"):
        reproduce_configs(d)


def test_a_suite_reference_must_be_part_of_the_suite(tmp_path):
    d = _copy_configs(tmp_path)
    (d / "fig2.yaml").unlink()
    with pytest.raises(UserInputError, match="reference experiment 'fig2'"):
        reproduce_configs(d)


def test_a_golden_reference_without_golden_conditions_is_refused():
    cfg = parse_config({"name": "g", "reference": "golden", "sweeps": [{
        "T": [2, 3], "schedule": {"kind": "linear", "start": 0.01, "end": 0.05},
        "grid": "torus:26"}]})
    with pytest.raises(UserInputError, match="no cell is at the golden conditions"):
        expand(cfg)


@pytest.mark.parametrize("bad,match", [
    ({"plot": "nope"}, "unknown plot 'nope'"),
    ({"verdict": "nope"}, "unknown verdict 'nope'"),
    ({"verdict": "recovery"}, "writes findings for plot process"),
    ({"verdict": "worse-than-reference", "plot": "process", "keep_distributions": True},
     "needs reference"),
    ({"kind": "nope"}, "unknown experiment kind 'nope'"),
    ({"reference": {"experiment": "x"}, "name": "x"}, "its own reference"),
])
def test_report_fields_are_validated(bad, match):
    data = {"name": "t", "sweeps": [{"T": 2, "schedule": {
        "kind": "linear", "start": 0.01, "end": 0.05}}], **bad}
    with pytest.raises(UserInputError, match=match):
        parse_config(data)


NEW_EXPERIMENT = """
name: tiny-new
title: "A new experiment, added as one file"
section: extension
plot: kl-vs-T
reference: {experiment: fig3, label: Figure 3}
reproduce: 99
claim: kl falls with T on a coarse torus too.
sweeps:
  - noise: laplace
    T: [2, 4]
    schedule: {kind: linear, start: 0.02, end: 0.05}
    grid: torus:8
"""


def test_adding_an_experiment_is_one_yaml_file(tmp_path):
    d = _copy_configs(tmp_path)
    (d / "tiny-new.yaml").write_text(NEW_EXPERIMENT, encoding="utf-8")
    assert reproduce_names(d)[-1] == "tiny-new"  # it joins serialrepro reproduce, last
    from serialrepro.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(d / "tiny-new.yaml"), "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    html_text = (out / "report.html").read_text(encoding="utf-8")
    section = html_text.split('<section class="extension" id="tiny-new">', 1)[1]
    section = section.split("</section>", 1)[0]
    assert "data:image/png;base64," in section  # its figure
    assert "the paper's claim" in section  # its verdict tag
    assert "kl falls from" in section and "laplace" not in html_text.split("<h2>")[0]
    # its reference is not part of this run: the report says so instead of comparing
    assert "Reference Figure 3: experiment fig3 is not part of this run" in section
    assert (out / "figures" / "tiny-new-kl-vs-T.png").is_file()


# -- a kind of experiment that is not a grid sweep plugs in through the registries ---------

def _toy_compute(payload: dict, keep: bool = False, threads=None):
    """A stand-in 'optimiser' per condition: the best of a few candidate values."""
    best = min(payload["candidates"], key=lambda v: (v - payload["target"]) ** 2)
    return {"key": payload["key"], "best": best, "seconds": 0.001}, None


def test_a_new_experiment_kind_plugs_in_with_its_own_cells_figure_and_verdict(
        tmp_path, monkeypatch):
    from dataclasses import dataclass

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from serialrepro import atomic
    from serialrepro.experiments import figures, kinds, verdicts

    @dataclass(frozen=True)
    class ToyCell:
        key: str
        experiment: str
        T: int
        keep: bool = False

    def expand_toy(config, quick):
        return [ToyCell(f"toy-{config.name}-{T}", config.name, T)
                for sweep in config.sweeps for T in sweep.T]

    def check(record):
        return None if isinstance(record.get("best"), int) else "best is not an integer"

    monkeypatch.setitem(kinds.KINDS, "toy", kinds.ExperimentKind(
        "toy", expand=expand_toy,
        payload=lambda c: {"key": c.key, "target": c.T, "candidates": [1, 4, 9]},
        compute=_toy_compute, row=lambda c, r: {"experiment": c.experiment, "T": c.T,
                                               "best": r["best"], "cell": c.key,
                                               "seconds": r["seconds"]},
        check=check))

    def draw(inp):
        fig, ax = plt.subplots()
        ax.plot(inp.rows["T"], inp.rows["best"], "o-")
        path = atomic.save_figure(fig, inp.fig_dir / f"{inp.config.name}-toy.png", dpi=50)
        return [figures.FigureItem(path, "best candidate per T", id="toy")]

    def judge_toy(inp):
        ok = bool((inp.rows["best"] <= inp.rows["T"]).all())
        return verdicts.Verdict(f"the best candidate never exceeds T: {ok}", ok, "",
                                {"toy": f"best per T: {inp.rows['best'].tolist()}"})

    monkeypatch.setitem(figures.PLOTS, "toy-plot", figures.PlotKind(draw))
    monkeypatch.setitem(verdicts.VERDICTS, "toy-verdict",
                        verdicts.VerdictKind(judge_toy, ("toy-plot",)))
    cfg = parse_config({"name": "toy-exp", "kind": "toy", "plot": "toy-plot",
                        "verdict": "toy-verdict", "sweeps": [{"T": [2, 5, 10], "schedule": {
                            "kind": "linear", "start": 0.01, "end": 0.05}}]})
    out = run_experiments([cfg], tmp_path / "run", progress=False, announce=False)
    html_text = out.report_path.read_text(encoding="utf-8")
    section = html_text.split('id="toy-exp">', 1)[1].split("</section>", 1)[0]
    assert "best per T: [1, 4, 9]" in section and "data:image/png;base64," in section
    assert "the best candidate never exceeds T: True" in section
    assert out.stats.computed == 3
    again = run_experiments([cfg], tmp_path / "run", progress=False, announce=False)
    assert again.stats.cached == 3  # resumed through the kind's check
