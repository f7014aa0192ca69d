"""``serialrepro chains simulate`` and ``serialrepro chains analyze``.

Heavy modules (torch, pandas, matplotlib) are imported inside the commands so that
``serialrepro --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from serialrepro.atomic import check_output_folder
from serialrepro.budget import check_count
from serialrepro.errors import UserInputError

chains_app = typer.Typer(
    help="Serial-reproduction chains: simulate Bayesian agents, analyse chain data.",
    no_args_is_help=True,
)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _mapping(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in _split(text):
        src, sep, dst = part.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise UserInputError(f"--map entry {part!r} must look like SOURCE=TARGET "
                                 "(e.g. network_id=chain,degree=iteration)")
        out[src.strip()] = dst.strip()
    return out


@chains_app.command("simulate")
def simulate_cmd(
    config: Path = typer.Argument(..., metavar="CONFIG", help="a YAML config file (see "
                                  "serialrepro.chains.simulate) or a shipped config name: "
                                  "bimodal-1d, gaussian-ar1, hue-circular"),
    out: Path = typer.Option(Path("chains-sim"), "--out", help="Output folder."),
    seed: int | None = typer.Option(None, "--seed", help="Override the config's seed."),
    fmt: str = typer.Option("", "--format", help="Table format: csv or parquet "
                            "(default: the config's output.format)."),
) -> None:
    """Simulate chains of Bayesian agents; write chains.csv, figures and report.html."""
    from serialrepro.chains.outputs import write_simulation
    from serialrepro.chains.simulate import config_summary, load_config, simulate_chains

    check_output_folder(out)
    cfg = load_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    fmt = fmt or cfg.output.format
    if fmt not in ("csv", "parquet"):
        raise UserInputError(f"unknown table format {fmt!r}; valid choices: csv, parquet")
    sim = simulate_chains(cfg)
    summary = write_simulation(sim, config_summary(cfg), out, fmt)
    typer.echo(f"{summary['n_chains']} chains × {summary['n_iterations']} iterations in "
               f"{summary['seconds']:.2f} s -> {out / summary['chains_table']}, "
               f"{out / 'report.html'}")


#: most histogram bins per axis of the per-iteration densities (``--bins``)
MAX_BINS = 4096


@chains_app.command("analyze")
def analyze_cmd(
    data: Path = typer.Argument(..., help="Long-format chain table (.csv, .tsv, .parquet)."),
    value_cols: str = typer.Option(..., "--value-cols", help="Value columns, e.g. x,y."),
    chain_col: str = typer.Option("chain", "--chain-col", help="Chain id column; several "
                                  "columns form one id, e.g. Seed,Chain."),
    iteration_col: str = typer.Option("iteration", "--iteration-col",
                                      help="Iteration column (whole numbers; 0 = the seed)."),
    item_col: str | None = typer.Option(None, "--item-col", help="Item column(s) of "
                                        "multi-item displays (chains are chain × item)."),
    stimulus_col: str | None = typer.Option(None, "--stimulus-col", help="Column(s) with the "
                                            "stimulus shown at each iteration, one per value "
                                            "column: the first becomes iteration 0 and each "
                                            "is checked against the previous response."),
    where: str | None = typer.Option(None, "--where", help="Keep rows matching a comparison "
                                     "of columns, e.g. \"block == 2 and rt < 5000\"."),
    duplicates: str = typer.Option("error", "--duplicates", help="Repeated (chain, item, "
                                   "iteration) rows: error, first, last or mean."),
    group_col: str | None = typer.Option(None, "--group-col", help="Fit each group "
                                         "(participant, condition) separately as well as "
                                         "pooled; writes group_fits.csv."),
    cluster_col: str | None = typer.Option(None, "--cluster-col", help="Independent unit of "
                                           "the bootstrap (participant, display); default: "
                                           "the chain."),
    match_items: bool = typer.Option(False, "--match-items", help="Match the items of "
                                     "consecutive displays by minimum total distance before "
                                     "any analysis (when the item id is response order)."),
    mapping: str | None = typer.Option(None, "--map", help="Rename columns first: "
                                       "SOURCE=TARGET,... (e.g. a PsyNet export)."),
    json_col: str | None = typer.Option(None, "--json-col", help="Column holding a JSON list "
                                        "of the values (spread into --value-cols)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first data problem "
                                "instead of skipping rows."),
    circular: bool = typer.Option(False, "--circular", help="Angular 1-D data (angles, "
                                  "hues); results stay in the data's range."),
    period: float = typer.Option(360.0, "--period", help="Units per turn of circular data."),
    bins: int | None = typer.Option(None, "--bins", help="Histogram bins of the per-iteration "
                                    "densities."),
    late: int | None = typer.Option(None, "--late", help="Final iterations pooled as the late "
                                    "distribution (default: the last fifth)."),
    family: str = typer.Option("gaussian", "--noise", "--family", metavar="FAMILY",
                               help="Noise family of the model fit (alias --family; see "
                               "serialrepro families; von-mises for circular data)."),
    rule: str = typer.Option("sample", "--rule", help="Response rule of the model fit: "
                             "sample, mean or map."),
    production_sigma: float = typer.Option(0.0, "--production-sigma",
                                           help="Production noise (data units) of the model."),
    grid_n: int | None = typer.Option(None, "--grid", help="Starting model grid points per "
                                      "axis (refined automatically)."),
    n_boot: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples of the "
                               "independent units."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the model chains."),
    no_fit: bool = typer.Option(False, "--no-fit", help="Skip the model fit."),
    out: Path = typer.Option(Path("chains-analysis"), "--out", help="Output folder."),
    fmt: str = typer.Option("csv", "--format", help="Table format: csv or parquet."),
) -> None:
    """Convergence, late density, AR(1) and noise-level fits; tables, figures, report."""
    from serialrepro.chains.agents import RULES
    from serialrepro.chains.analysis import analyze_chains
    from serialrepro.chains.data import DUPLICATE_POLICIES, load_chains
    from serialrepro.chains.outputs import write_analysis
    from serialrepro.errors import unknown_name
    from serialrepro.families import get_family

    if fmt not in ("csv", "parquet"):
        raise UserInputError(f"unknown table format {fmt!r}; valid choices: csv, parquet")
    if n_boot < 0:
        raise UserInputError(f"--bootstrap {n_boot} must be ≥ 0")
    if production_sigma < 0:
        raise UserInputError(f"--production-sigma {production_sigma} must be ≥ 0")
    if rule not in RULES:
        raise unknown_name("response rule", rule, RULES)
    if duplicates not in DUPLICATE_POLICIES:
        raise unknown_name("duplicates policy", duplicates, DUPLICATE_POLICIES)
    if not period > 0:
        raise UserInputError(f"--period {period} must be > 0")
    if bins is not None:
        if bins < 2:
            raise UserInputError(f"--bins {bins} must be ≥ 2")
        check_count("--bins", bins, MAX_BINS, f"use --bins {MAX_BINS} or fewer")
    check_output_folder(out)
    family = get_family(family).name
    table = load_chains(data, _split(value_cols), chain_col, iteration_col, item_col,
                        _mapping(mapping), json_col, strict,
                        stimulus_cols=_split(stimulus_col) or None, where=where,
                        duplicates=duplicates, group_cols=group_col, cluster_cols=cluster_col,
                        circular=circular, period=period if circular else None)
    for w in table.report.warnings[:10]:
        typer.echo(f"warning: {w}", err=True)
    if len(table.report.warnings) > 10:
        typer.echo(f"warning: … {len(table.report.warnings) - 10} more in load_report.json",
                   err=True)
    a = analyze_chains(table, circular, period, bins, late, family, rule, production_sigma,
                       grid_n, n_boot, seed, not no_fit, match_items=match_items)
    for w in a.warnings:
        typer.echo(f"warning: {w}", err=True)
    summary = write_analysis(a, out, fmt)
    conv = {True: "converged", False: "NOT converged", None: "convergence not judged"}
    msg = (f"{summary['chains']} chains, {summary['iterations']} iterations: "
           f"{conv[summary['convergence']['converged']]}")
    if "noise_fit" in summary:
        nf = summary["noise_fit"]
        s = nf["sigma_data"] if nf.get("sigma_data") is not None else nf["sigma_unit"]
        ci = nf.get("sigma_ci") or nf["sigma_ci_unit"]
        msg += f"; ML σ ({nf['family']}, {nf['rule']}) = {s:.4g}"
        if ci and None not in ci:
            msg += f" [{ci[0]:.4g}, {ci[1]:.4g}]"
    typer.echo(msg + f" -> {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Add the ``chains`` sub-app to the main CLI."""
    app.add_typer(chains_app, name="chains")
