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
    sim_text = _no_urls(sim / "report.html")
    # a bimodal prior: no median band through the gap; the JSD is a plot, its table folded
    assert "no quantile band: the prior has 2 modes" in sim_text
    assert "<details><summary>exact JSD" in sim_text

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
                  "hue", "--circular", "--period", "360", "--noise", "laplace",
                  "--production-sigma", "3.6", "--bootstrap", "10", "--format", "parquet",
                  "--out", tmp_path / "an"])
    ar1 = pd.read_parquet(tmp_path / "an" / "ar1.parquet").set_index("quantity")
    # the prior's points sit at 162°, −173° and 176°: one attractor across the seam
    assert abs(ar1.loc["fixed_point", "estimate"]) > 165
    _no_urls(tmp_path / "an" / "report.html")


@pytest.mark.parametrize("patch,message", [
    ({"agent": {"sigmaa": 0.1}},
     r"agent\.sigma: required key is missing.*agent\.sigmaa: unknown key"),
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


# -- chains analyze on the designs people run ---------------------------------------------


def _hue_participants(path, sigmas=(0.02, 0.04, 0.07), n_chains=40, n_it=12):
    """Participants × seeds (seed ids 1..n repeat across participants: nested ids) of a
    von Mises sampling agent whose prior has three categories on the colour wheel (one
    across the wrap), hues recorded as integer degrees 0–359."""
    import numpy as np
    import torch

    from serialrepro.chains.agents import Agent
    from serialrepro.chains.particle_chains import particle_chains
    from serialrepro.particles.priors import PointSetPrior

    g = (np.arange(2000) + 0.5) / 2000 - 0.5
    dens = sum(np.exp(8 * (np.cos(2 * np.pi * (g - m)) - 1)) for m in (-0.47, -0.12, 0.22))
    dens /= dens.sum()
    prior = PointSetPrior(torch.from_numpy(g[:, None]), torch.from_numpy(dens))
    rng = np.random.default_rng(0)
    frames = []
    for k, s in enumerate(sigmas):
        agent = Agent(prior, "von-mises", s, circular=True)
        start = torch.from_numpy(rng.choice(g, n_chains, p=dens)[:, None])
        st = particle_chains(agent, start, n_it, seed=k)[:, :, 0].numpy()  # [I + 1, C]
        hue = np.mod(np.round(np.mod(st * 360, 360)), 360).astype(int)
        frames.append(pd.DataFrame({
            "Participant": f"p{k + 1}", "Seed": np.tile(np.arange(1, n_chains + 1), n_it + 1),
            "Iteration": np.repeat(np.arange(n_it + 1), n_chains), "Hue": hue.reshape(-1)}))
    pd.concat(frames).to_csv(path, index=False)
    return [s * 360 for s in sigmas]


def test_hue_participants_end_to_end(app, tmp_path):
    """Several attractors on the circle with von Mises noise, nested ids, per-participant
    fits: outputs in 0–360, densities integrating to 1, each participant's σ recovered."""
    import numpy as np

    truth = _hue_participants(tmp_path / "hue.csv")
    out = tmp_path / "an"
    res = _invoke(app, ["chains", "analyze", tmp_path / "hue.csv", "--value-cols", "Hue",
                        "--chain-col", "Participant,Seed", "--iteration-col", "Iteration",
                        "--circular", "--family", "vonmises", "--group-col", "Participant",
                        "--cluster-col", "Participant", "--bootstrap", "40", "--out", out])
    assert "von-mises" in res.output
    s = json.loads((out / "summary.json").read_text())
    assert s["chains"] == 120 and s["iterations"] == 12 and s["circular"]
    assert s["coordinates"]["origin"] == 0.0
    assert s["late_density"]["modes"] == 3
    assert s["convergence"]["converged"] is False  # chains stay in their category
    assert s["late_density"]["name"] == "late distribution"
    kde = pd.read_csv(out / "prior_kde.csv")
    assert kde["Hue"].min() == 0 and kde["Hue"].max() == 360
    assert np.trapezoid(kde["density"], kde["Hue"]) == pytest.approx(1.0, abs=1e-6)
    dens = pd.read_csv(out / "iteration_density.csv")
    assert dens["bin_low"].min() == 0 and dens["bin_high"].max() == 360
    per = (dens["density"] * (dens["bin_high"] - dens["bin_low"])).groupby(
        [dens["iteration"], dens["source"]]).sum()
    assert np.allclose(per, 1.0)
    ar1 = pd.read_csv(out / "ar1.csv").set_index("quantity")
    fp = ar1.loc["fixed_point", "estimate"]
    assert np.isnan(fp) or 0 <= fp < 360
    groups = pd.read_csv(out / "group_fits.csv").set_index("group")
    assert list(groups.index) == ["p1", "p2", "p3", "pooled"]
    # a participant is one cluster: within it the chains are resampled
    assert (groups.loc[["p1", "p2", "p3"], "unit"] == "chain").all()
    assert groups.loc["pooled", "n_clusters"] == 3 and s["clusters"] == 3
    for name, sigma in zip(("p1", "p2", "p3"), truth, strict=True):
        assert groups.loc[name, "sigma"] == pytest.approx(sigma, rel=0.15)
        assert groups.loc[name, "sigma_low"] <= groups.loc[name, "sigma"] <= groups.loc[
            name, "sigma_high"]
    assert (out / "group_fits.png").is_file()
    text = _no_urls(out / "report.html")
    assert "3 modes" in text and "not converged" in text and "max-width:100%" in text
    assert "prior the chains converge to" not in text


def _dot_displays(path, shuffle=True, n_disp=60, n_items=3, n_it=8, sigma=0.05):
    """Displays of n_items dots of a 2-D Gaussian sampling agent (σ in data units ×100);
    the item column is the response order (shuffled at every iteration) when ``shuffle``."""
    import numpy as np
    import torch

    from serialrepro.chains.agents import Agent
    from serialrepro.chains.particle_chains import particle_chains
    from serialrepro.particles.priors import GaussianMixturePrior

    prior = GaussianMixturePrior([[0.0, 0.0]], [[[0.01, 0.0], [0.0, 0.01]]])
    rng = np.random.default_rng(0)
    start = torch.from_numpy(rng.normal(0, 0.1, (n_disp * n_items, 2)))
    st = particle_chains(Agent(prior, "gaussian", sigma), start, n_it, seed=1).numpy() * 100
    st = st.reshape(n_it + 1, n_disp, n_items, 2)
    order = np.stack([[rng.permutation(n_items) if shuffle else np.arange(n_items)
                       for _ in range(n_disp)] for _ in range(n_it + 1)])
    vals = np.take_along_axis(st, order[..., None], axis=2)
    its, disp, click = np.meshgrid(np.arange(n_it + 1), np.arange(n_disp), np.arange(n_items),
                                   indexing="ij")
    pd.DataFrame({"display": disp.reshape(-1), "iteration": its.reshape(-1),
                  "click": click.reshape(-1), "x": vals[..., 0].reshape(-1),
                  "y": vals[..., 1].reshape(-1)}).to_csv(path, index=False)
    return sigma * 100


def test_displays_matched_end_to_end_and_the_scramble_warning(app, tmp_path):
    sigma = _dot_displays(tmp_path / "dots.csv")
    args = ["chains", "analyze", tmp_path / "dots.csv", "--value-cols", "x,y", "--chain-col",
            "display", "--item-col", "click", "--cluster-col", "display", "--bootstrap", "30"]
    _invoke(app, [*args, "--match-items", "--out", tmp_path / "m"])
    s = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert s["noise_fit"]["sigma_data"] == pytest.approx(sigma, rel=0.15)
    assert s["clusters"] == 60 and not any("scrambled" in w for w in s["warnings"])
    ds = pd.read_csv(tmp_path / "m" / "display_stats.csv")
    assert list(ds.columns[:2]) == ["iteration", "source"]
    assert set(ds["source"]) == {"data", "model"}
    for c in ("dispersion", "dispersion_low", "dispersion_high", "nn_distance",
              "nn_distance_low", "nn_distance_high"):
        assert c in ds.columns
    assert (tmp_path / "m" / "display_stats.png").is_file()
    _invoke(app, [*args, "--no-fit", "--out", tmp_path / "u"])
    s = json.loads((tmp_path / "u" / "summary.json").read_text())
    assert any("scrambled" in w for w in s["warnings"])
    assert "scrambled" in (tmp_path / "u" / "report.html").read_text()


def test_analyze_row_filter_duplicates_and_stimulus_column(app, tmp_path):
    """--where drops rows, --duplicates mean averages repeats, --stimulus-col adds the seed
    as iteration 0 (responses at 1..n)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for c in range(30):
        prev = float(rng.normal(0, 3))
        for i in range(1, 7):
            resp = 0.5 * prev + float(rng.normal())
            rows.append({"chain": c, "iteration": i, "stim": prev, "resp": resp, "block": 1})
            prev = resp
    rows.append({**rows[0], "block": 2})  # a practice block, filtered out
    rows.append({**rows[1]})  # an exact duplicate
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    _invoke(app, ["chains", "analyze", tmp_path / "d.csv", "--value-cols", "resp",
                  "--stimulus-col", "stim", "--where", "block == 1", "--duplicates", "mean",
                  "--no-fit", "--bootstrap", "20", "--out", tmp_path / "an"])
    s = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert s["load"]["rows_filtered"] == 1 and s["load"]["seeds_added"] == 30
    assert s["iterations"] == 6 and s["chains"] == 30
    assert s["load"]["stimulus_mismatch_rate"] == 0.0
    text = (tmp_path / "an" / "report.html").read_text()
    assert "1 row(s) removed by --where" in text and "30 seed(s) taken" in text


def test_analyze_options_are_declared_well():
    """Every option has help, flags show as flags, choices are named in the help."""
    import re

    from serialrepro.cli import app as main_app

    cmd = typer.main.get_command(main_app).commands["chains"].commands["analyze"]
    opts = [p for p in cmd.params if p.param_type_name == "option"]
    assert all(p.help for p in opts), [p.name for p in opts if not p.help]
    names = {p.name for p in opts}
    assert {"chain_col", "item_col", "stimulus_col", "where", "duplicates", "group_col",
            "cluster_col", "match_items"} <= names
    dup = next(p for p in opts if p.name == "duplicates")
    assert all(c in dup.help for c in ("error", "first", "last", "mean"))
    res = runner.invoke(main_app, ["chains", "analyze", "--help"], terminal_width=100)
    assert res.exit_code == 0
    for flag in ("--match-items", "--circular", "--strict", "--no-fit"):
        assert re.search(re.escape(flag) + r"\s{2,}\S", res.output), flag  # no <value>


@pytest.mark.parametrize("extra,needle", [
    (["--duplicates", "keep"], "duplicates policy"),
    (["--family", "cauchy"], "noise family"),
    (["--rule", "median"], "response rule"),
    (["--where", "nosuch > 1"], "no column 'nosuch'"),
    (["--bins", "100000000"], "--bins is 100000000, above the limit of 4096"),
    (["--bins", "1"], "--bins 1 must be ≥ 2"),
    (["--out", "d.csv/o"], "is a file, not a folder"),
])
def test_analyze_bad_values_are_one_line_and_exit_2(tmp_path, extra, needle):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "d.csv").write_text("chain,iteration,x\na,0,1\na,1,2\nb,0,3\nb,1,2\n")
    exe = Path(sys.executable).parent / "serialrepro"
    res = subprocess.run([str(exe), "chains", "analyze", str(tmp_path / "d.csv"),
                          "--value-cols", "x", "--out", str(tmp_path / "o"), *extra],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_simulate_refuses_an_output_folder_below_a_file_before_simulating(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "f").write_text("x")
    exe = Path(sys.executable).parent / "serialrepro"
    res = subprocess.run([str(exe), "chains", "simulate", "gaussian-ar1", "--out",
                          str(tmp_path / "f" / "sim")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    assert "is a file, not a folder" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_summary_json_is_strict_even_with_undefined_numbers(tmp_path):
    import json

    from serialrepro.chains.outputs import _json

    text = _json({"a": float("nan"), "b": [1.0, float("inf")], "c": 2})
    assert "NaN" not in text and "Infinity" not in text
    out = json.loads(text)
    assert out["a"] is None and out["b"] == [1.0, None] and out["c"] == 2
    assert set(out["undefined"]) == {"a", "b.1"}
