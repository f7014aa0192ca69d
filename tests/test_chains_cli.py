"""``serialrepro chains simulate`` and ``serialrepro chains analyze`` end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from serialrepro.chains.cli import register
from serialrepro.chains.simulate import load_config
from serialrepro.errors import UserInputError

runner = CliRunner()



@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    a.command("noop")(lambda: None)  # a second command keeps `chains` a sub-command
    register(a)
    return a


CONFIG = """
mode: grid
grid: 160
prior:
  kind: gaussian-mixture
  means: [[-0.15], [0.12]]
  covs: [0.002, 0.003]
agent: {family: gaussian, sigma: 0.05, rule: sample}
chains: {n_chains: 200, n_iterations: 10}
output: {value_cols: [position]}
seed: 3
"""


def _invoke(app, args):
    res = runner.invoke(app, [str(a) for a in args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res


def _no_urls(path):
    text = path.read_text()
    assert "http:" not in text and "https:" not in text and "<img" in text
    return text


def test_simulate_then_analyze_round_trip(app, tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(CONFIG)
    _invoke(app, ["chains", "simulate", cfg, "--out", tmp_path / "sim"])
    sim = tmp_path / "sim"
    for name in ("chains.csv", "exact_marginals.csv", "summary.json", "config.resolved.json",
                 "report.html", "trajectories.png"):
        assert (sim / name).is_file(), name
    table = pd.read_csv(sim / "chains.csv")
    assert list(table.columns) == ["chain", "iteration", "position"]
    assert len(table) == 200 * 11
    assert json.loads((sim / "summary.json").read_text())["exact_final_jsd_to_prior_bits"] < 0.01
    _no_urls(sim / "report.html")

    res = _invoke(app, ["chains", "analyze", sim / "chains.csv", "--value-cols", "position",
                        "--bootstrap", "20", "--out", tmp_path / "an"])
    assert "ML σ (gaussian, sample)" in res.output
    an = tmp_path / "an"
    for name in ("convergence.csv", "ar1.csv", "noise_profile.csv", "prior_kde.csv",
                 "model_convergence.csv", "summary.json", "load_report.json", "report.html",
                 "convergence.png", "prior.png", "trajectories.png", "ar1.png",
                 "noise_profile.png"):
        assert (an / name).is_file(), name
    summary = json.loads((an / "summary.json").read_text())
    # the simulated values are unit coordinates: σ comes back in the same units
    assert summary["noise_fit"]["sigma_data"] == pytest.approx(0.05, rel=0.15)
    text = _no_urls(an / "report.html")
    assert "noise level σ" in text and "AR(1) fit" in text


def test_simulation_is_deterministic_in_its_seed(app, tmp_path):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text(CONFIG.replace("n_chains: 200", "n_chains: 20"))
    for out, extra in (("a", []), ("b", []), ("c", ["--seed", "4"])):
        _invoke(app, ["chains", "simulate", cfg, "--out", tmp_path / out, *extra])
    a, b, c = ((tmp_path / o / "chains.csv").read_bytes() for o in "abc")
    assert a == b and a != c


def test_circular_particles_in_parquet(app, tmp_path):
    cfg = tmp_path / "hue.yaml"
    cfg.write_text("""
mode: particles
circular: true
prior: {kind: points, points: [[0.45], [-0.48], [0.49]], weights: [0.3, 0.3, 0.4]}
agent: {family: laplace, sigma: 0.05, production_sigma: 0.01}
chains: {n_chains: 100, n_iterations: 8, start: {kind: uniform, low: -0.5, high: 0.5}}
output: {value_cols: [hue], period: 360, format: parquet}
""")
    _invoke(app, ["chains", "simulate", cfg, "--out", tmp_path / "sim"])
    table = pd.read_parquet(tmp_path / "sim" / "chains.parquet")
    assert table["hue"].between(-180, 180).all()
    _invoke(app, ["chains", "analyze", tmp_path / "sim" / "chains.parquet", "--value-cols",
                  "hue", "--circular", "--period", "360", "--family", "laplace",
                  "--production-sigma", "3.6", "--bootstrap", "10", "--format", "parquet",
                  "--out", tmp_path / "an"])
    ar1 = pd.read_parquet(tmp_path / "an" / "ar1.parquet").set_index("quantity")
    # the prior's points sit at 162°, −173° and 176°: one attractor across the seam
    assert abs(ar1.loc["fixed_point", "estimate"]) > 165
    _no_urls(tmp_path / "an" / "report.html")


@pytest.mark.parametrize("patch,message", [
    ({"agent": {"sigmaa": 0.1}}, r"agent\.sigma: Field required.*agent\.sigmaa: unknown key"),
    ({"agent": {"sigma": -1}}, r"agent\.sigma: Input should be greater than 0"),
    ({"agent": {"sigma": 0.1, "rule": "median"}}, r"agent\.rule: unknown response rule"),
    ({"agent": {"sigma": 0.1, "family": "cauchy"}}, r"agent\.family: unknown noise family"),
    ({"mode": "exact"}, r"mode: Input should be 'grid' or 'particles'"),
    ({"chains": {"n_chains": 0}}, r"chains\.n_chains: Input should be greater than"),
    ({"prior": {"kind": "blob"}}, r"prior: Input tag 'blob' found"),
    ({"colour": 1}, r"colour: unknown key"),
])
def test_config_errors_name_the_key(patch, message):
    cfg = {"prior": {"kind": "gaussian-mixture", "means": [[0.0]], "covs": [0.01]},
           "agent": {"sigma": 0.1}}
    cfg.update(patch)
    with pytest.raises(UserInputError, match=message):
        load_config(cfg)


def test_cli_reports_bad_files(app, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent: [unclosed")
    res = runner.invoke(app, ["chains", "simulate", str(bad)])
    assert isinstance(res.exception, UserInputError) and "not valid YAML" in str(res.exception)
    (tmp_path / "d.csv").write_text("chain,iteration,x\na,0,1\na,1,2\n")
    res = runner.invoke(app, ["chains", "analyze", str(tmp_path / "d.csv"), "--value-cols", "y"])
    assert isinstance(res.exception, UserInputError) and "no column(s) ['y']" in str(
        res.exception)
    res = runner.invoke(app, ["chains", "analyze", str(tmp_path / "d.csv"), "--value-cols", "x",
                              "--map", "chain"])
    assert isinstance(res.exception, UserInputError) and "SOURCE=TARGET" in str(res.exception)


def test_the_main_cli_has_the_chains_commands():
    from serialrepro.cli import app as main_app

    res = runner.invoke(main_app, ["chains", "--help"])
    assert res.exit_code == 0 and "simulate" in res.output and "analyze" in res.output


def test_shipped_example_configs_validate():
    from importlib import resources

    folder = resources.files("serialrepro.chains") / "configs"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names == ["bimodal-1d.yaml", "gaussian-ar1.yaml", "hue-circular.yaml"]
    for name in names:
        cfg = load_config(str(folder / name))
        assert cfg.chains.n_chains > 0
