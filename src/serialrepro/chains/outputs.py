"""Write what ``chains simulate`` and ``chains analyze`` produce: tables (CSV or Parquet),
PNG figures, a JSON summary and the HTML report, each written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from serialrepro.atomic import write_bytes, write_json, write_table, write_text
from serialrepro.chains import report as rp
from serialrepro.chains.analysis import Analysis
from serialrepro.chains.coordinates import Coordinates
from serialrepro.chains.prior import (
    count_modes,
    density_grid_1d,
    density_grid_2d,
    estimate_prior,
    iteration_densities,
)
from serialrepro.grid.scores import jsd_bits


def _save_figures(out: Path, figures: dict[str, bytes]) -> None:
    for name, png in figures.items():
        write_bytes(out / f"{name}.png", png)


def write_simulation(sim: dict, config: dict, out: Path, fmt: str = "csv") -> dict:
    """Chain table, exact marginals (grid mode), figures, summary and report of a run."""
    out.mkdir(parents=True, exist_ok=True)
    frame: pd.DataFrame = sim["frame"]
    names = sim["value_cols"]
    agent = sim["agent"]
    states = sim["states"].numpy()  # [I + 1, C, D], unit coordinates
    n_it = states.shape[0] - 1
    its = np.arange(n_it + 1)
    circular = bool(config.get("circular"))
    period = float(config["output"]["period"]) if circular else None
    chains_path = write_table(frame, out / f"chains.{fmt}")
    figures: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    tables: list[tuple[str, pd.DataFrame]] = []
    summary = {"chains_table": chains_path.name, "n_chains": int(states.shape[1]),
               "n_iterations": int(n_it), "dims": int(states.shape[2]),
               "seconds": round(sim["seconds"], 4), "value_cols": names}
    space = sim["space"]
    d = states.shape[2]
    m = sim["marginals"]
    prior = agent.prior.on_grid(space) if m is not None else None
    if m is not None and d == 1:
        n_modes = count_modes(prior.numpy().reshape(-1), circular=False)
    elif d == 1:
        late = states[-max(1, n_it // 5):, :, 0].reshape(-1, 1)
        n_modes = count_modes(estimate_prior(late, circular).density(
            np.linspace(-0.5, 0.5, 721)[:, None]), circular=circular)
    else:
        n_modes = 1
    values = frame.pivot(index="chain", columns="iteration", values=names[0]).to_numpy()
    if d == 1:
        domain = (-period / 2, period / 2) if circular else None
        unimodal = n_modes <= 1 and not circular
        figures["trajectories"] = rp.fig_trajectories(its, [("simulated chains", values)],
                                                      names[0], period=period, domain=domain,
                                                      band=unimodal)
        captions["trajectories"] = (
            f"Up to 40 of the {summary['n_chains']} chains over {n_it} iterations"
            + ("; red: median and 10–90 % of all chains" if unimodal else
               f"; no quantile band: the prior has {n_modes} modes" if n_modes > 1 else "")
            + (", lines broken where a chain wraps" if circular else "") + ".")
        coords = Coordinates(np.zeros(1), period if circular else 1.0, circular,
                             -period / 2 if circular else 0.0)
        edges, dens = iteration_densities(np.transpose(states, (1, 0, 2)), coords,
                                          36 if circular else 30)
        figures["iteration_density"] = rp.fig_iteration_density(
            its, edges, [("simulated chains", dens)], names[0])
        captions["iteration_density"] = (
            f"Density of the {summary['n_chains']} chains' values at each iteration "
            f"(histogram, {len(edges) - 1} bins, each column integrating to 1).")
    else:
        figures["start_end"] = rp.fig_scatter_2d(
            [("iteration 0", states[0]), (f"iteration {n_it}", states[-1])],
            (names[0], names[1]))
        captions["start_end"] = (f"The {summary['n_chains']} chains at iteration 0 and at "
                                 f"iteration {n_it}.")
    if m is not None:
        jsd = jsd_bits(m, prior.expand_as(m), ndim=d).numpy()
        jsd = np.where(np.abs(jsd) < 1e-12, 0.0, jsd)  # round-off below 0 is 0
        conv = pd.DataFrame({"iteration": its, "jsd_to_prior_bits": jsd})
        tables.append(("exact JSD of the population distribution to the prior", conv))
        summary["exact_final_jsd_to_prior_bits"] = float(jsd[-1])
        figures["exact_jsd"] = rp.fig_exact_jsd(its, jsd)
        captions["exact_jsd"] = (f"Exact JSD of the population distribution to the prior, "
                                 f"{jsd[0]:.3g} bits at iteration 0 and {jsd[-1]:.3g} bits at "
                                 f"iteration {n_it} (log scale).")
        pts = space.points().numpy()
        long = pd.DataFrame({
            "iteration": np.repeat(its, space.size),
            **{names[k]: np.tile(pts[:, k], n_it + 1) for k in range(d)},
            "probability": m.reshape(n_it + 1, -1).numpy().reshape(-1)})
        write_table(long, out / f"exact_marginals.{fmt}")
        if d == 1:
            h = space.spacing
            x = pts[:, 0]
            figures["exact_marginals"] = rp.fig_prior_1d(
                states[-1, :, 0], x, m[-1].numpy() / h, names[0],
                extra=[(x, prior.numpy() / h, "prior")],
                title=f"iteration {n_it}", labels=("sampled chains", "exact marginal"))
            captions["exact_marginals"] = (
                f"The sampled chains at iteration {n_it} (histogram), the exact marginal "
                f"and the prior (densities per unit, JSD {jsd[-1]:.3g} bits).")
    cf = sim["closed_form"]
    if cf is not None:
        x0 = states[0, :, 0]
        sim_mean, sim_var = states[:, :, 0].mean(1), states[:, :, 0].var(1, ddof=1)
        ref_mean = cf.fixed_point + cf.slope**its * (x0.mean() - cf.fixed_point)
        ref_var = cf.var(its, float(x0.var(ddof=1)))
        figures["closed_form"] = rp.fig_moments(its, sim_mean, sim_var, ref_mean, ref_var,
                                                "AR(1) closed form")
        captions["closed_form"] = (
            f"Mean and variance of the {summary['n_chains']} chains per iteration against "
            f"the AR(1) closed form (slope {cf.slope:.3f}); at iteration {n_it} the variance "
            f"is {sim_var[-1]:.4g} against {ref_var[-1]:.4g}.")
        tables.append(("moments per iteration against the AR(1) closed form", pd.DataFrame({
            "iteration": its, "mean": sim_mean, "mean_closed_form": ref_mean,
            "variance": sim_var, "variance_closed_form": ref_var})))
        summary["closed_form"] = cf.as_dict()
    _save_figures(out, figures)
    write_json(out / "summary.json", summary)
    write_json(out / "config.resolved.json", config)
    rows = [("chains × iterations", f"{summary['n_chains']} × {n_it}"),
            ("agent", f"{agent.family.name}, σ = {agent.sigma:g}, rule {agent.rule}, "
                      f"production noise {agent.production_sigma:g}"),
            ("mode", str(config["mode"]) + (" (circular)" if circular else "")),
            ("time", f"{sim['seconds']:.2f} s"), ("table", summary["chains_table"])]
    if "exact_final_jsd_to_prior_bits" in summary:
        rows.append((f"exact JSD to the prior at iteration {n_it}",
                     f"{summary['exact_final_jsd_to_prior_bits']:.3g} bits"))
    sections = [
        rp.Section("Run", html=rp.key_value_table(rows)),
        rp.Section("Figures", figures=[(captions[k], v) for k, v in figures.items()],
                   folded=tables),
        rp.Section("Resolved config", preformatted=_json(config)),
    ]
    write_text(out / "report.html", rp.html_report("serialrepro · simulated chains", sections))
    return summary


def _json(obj) -> str:
    """Strict JSON (no bare NaN/Infinity): a non-finite number becomes null, its key path
    listed under ``"undefined"``."""
    from serialrepro.atomic import dumps_strict

    return dumps_strict(obj, nonfinite="null", indent=2)


def _ci(lo: float | None, hi: float | None, fmt: str = ".3g") -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    return f"95 % CI {lo:{fmt}}–{hi:{fmt}}"


def _verdict_text(v: dict) -> str:
    c = v["converged"]
    return {True: "converged", False: "not converged", None: "cannot be judged"}[c]


def _summary_rows(a: Analysis) -> list[tuple[str, str]]:
    s = a.summary
    v = a.verdict
    dep = v["start_dependence"]
    rows = [("chains", f"{s['chains']} ({s['clusters']} independent units for the "
                       f"bootstrap, by {s['cluster_col']})"),
            ("iterations", f"{s['iterations']} reproductions (iteration rows "
                           f"{int(a.iterations[0])}–{int(a.iterations[-1])}); late: last "
                           f"{a.late}"),
            ("transitions", str(s["transitions"])),
            ("convergence", _verdict_text(v)),
            (f"correlation with the start at iteration {dep['iteration']}",
             f"{dep['correlation']:.3f} ({rp.STATISTIC_NAMES.get(dep['statistic'])}; "
             f"{_ci(dep['lower'], dep['upper'])})")]
    sa = v["seed_agreement"]
    if sa is not None:
        rows.append(("chains from different seeds at the last iteration",
                     f"permutation p = {sa['p_value']:.3g} over {sa['groups']} seed groups"))
    lo, hi = s["final_distance_ci"]
    rows.append(("energy distance to the late iterations, first → last",
                 f"{s['initial_distance']:.3g} → {s['final_distance']:.3g} "
                 f"({_ci(lo, hi)}; data units)"))
    rows.append((f"modes of the {s['late_density']['name']}", str(s["late_density"]["modes"])))
    if "ar1" in s:
        ar = s["ar1"]
        lo, hi = ar["slope_ci"]
        stat = ("stationary" if ar["stationary"] else "NON-STATIONARY: no stationary variance")
        rows.append(("AR(1) slope λ", f"{ar['slope']:.3f} ({_ci(lo, hi)}; {stat})"))
        if ar["stationary"]:
            rows.append(("AR(1) fixed point, stationary variance",
                         f"{ar['fixed_point']:.4g}, {ar['stationary_var']:.4g}"))
    if "noise_fit" in s:
        nf = s["noise_fit"]
        val = nf["sigma_data"] if nf.get("sigma_data") is not None else nf["sigma_unit"]
        ci = nf.get("sigma_ci") or nf["sigma_ci_unit"]
        rows.append((f"noise level σ ({nf['family']}, rule {nf['rule']})",
                     f"{val:.4g} ({_ci(*ci, fmt='.4g')}, {nf['ci_method']}; grid "
                     f"{nf['grid_n']} per axis" + ("; AT A BOUND" if nf["at_bound"] else "")
                     + ")"))
    return rows


def write_analysis(a: Analysis, out: Path, fmt: str = "csv") -> dict:
    """Tables, figures, summary.json, load_report.json and report.html of an analysis."""
    out.mkdir(parents=True, exist_ok=True)
    t = a.table
    c = a.coords
    names = t.value_cols
    circ = c.circular
    domain = c.domain
    label = f"{names[0]} (period {c.scale:g})" if circ else names[0]
    late_name = a.summary["late_density"]["name"]
    figures: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    its = a.iterations

    # convergence
    write_table(a.convergence, out / f"convergence.{fmt}")
    write_table(a.start_dependence, out / f"start_dependence.{fmt}")
    if a.model_convergence is not None:
        write_table(a.model_convergence, out / f"model_convergence.{fmt}")
    from serialrepro.chains.convergence import DEPENDENCE_SMALL

    figures["convergence"] = rp.fig_convergence(a.convergence, a.model_convergence,
                                                a.start_dependence, DEPENDENCE_SMALL)
    dep = a.verdict["start_dependence"]
    s = a.summary
    captions["convergence"] = (
        f"Left: energy distance (U-statistic, data units) of each iteration's values to the "
        f"pooled last {a.late} iteration(s), {s['initial_distance']:.3g} at iteration "
        f"{int(its[0])} and {s['final_distance']:.3g} "
        f"({_ci(*s['final_distance_ci'])}) at iteration {int(its[-1])} (the unbiased "
        "estimate can fall below 0 where the distributions agree); bands: 95 % "
        f"bootstrap over {s['clusters']} {s['cluster_col']} units. Right: correlation of "
        f"iteration n with the start ({rp.STATISTIC_NAMES.get(dep['statistic'])}), "
        f"{dep['correlation']:.2f} "
        f"({_ci(dep['lower'], dep['upper'], '.2f')}) at the last iteration; grey: "
        f"|r| < {DEPENDENCE_SMALL:g}. Verdict: {_verdict_text(a.verdict)}.")

    # late density
    late_unit = a.unit[:, len(its) - a.late:].reshape(-1, t.dims)
    late_unit = late_unit[~np.isnan(late_unit).any(-1)]
    late_data = c.from_unit(late_unit)
    n_modes = a.n_modes
    if t.dims == 1:
        gx, dens = density_grid_1d(a.prior, c, late_unit[:, 0])
        write_table(pd.DataFrame({names[0]: gx, "density": dens}), out / f"prior_kde.{fmt}")
        figures["prior"] = rp.fig_prior_1d(late_data[:, 0], gx, dens, label,
                                           title=f"{late_name} (last {a.late} iterations)",
                                           domain=domain)
        integral = float(np.trapezoid(dens, gx))
    elif t.dims == 2:
        gx, gy, dens = density_grid_2d(a.prior, c, late_unit)
        mx, my = np.meshgrid(gx, gy, indexing="ij")
        write_table(pd.DataFrame({names[0]: mx.reshape(-1), names[1]: my.reshape(-1),
                                  "density": dens.reshape(-1)}), out / f"prior_kde.{fmt}")
        figures["prior"] = rp.fig_prior_2d(late_data, (gx[0], gx[-1], gy[0], gy[-1]), dens,
                                           (names[0], names[1]),
                                           title=f"{late_name} (last {a.late} iterations)")
        integral = float(np.trapezoid(np.trapezoid(dens, gy, axis=1), gx))
    else:
        figures["prior"] = rp.fig_prior_2d(late_data, (0, 1, 0, 1), None, (names[0], names[1]),
                                           title=f"{late_name}, first two axes")
        integral = float("nan")
    what = ("the agents' prior, since the chains have converged" if a.converged
            else "not the agents' prior: the chains have not been shown to converge")
    captions["prior"] = (
        f"Kernel density estimate of the {late_name} ({len(late_unit)} values of the last "
        f"{a.late} iteration(s); bandwidth {a.prior.bandwidth * c.scale:.3g} data units"
        + ("; wrapped normal kernel, cross-validated bandwidth" if circ else
           "; cross-validated bandwidth, variance-corrected" if t.dims == 1 else
           "; Scott's rule, variance-corrected")
        + f"); {n_modes} mode(s); it integrates to {integral:.3f} over "
        + (f"one period {domain[0]:g}–{domain[1]:g}" if circ else "the plotted range")
        + f" — {what}.")

    # chains
    data_vals = c.from_unit(a.unit)
    model_vals = None if a.model_unit is None else c.from_unit(a.model_unit)
    if t.dims == 1:
        panels = [("data", data_vals[:, :, 0])]
        if model_vals is not None:
            panels.append(("fitted Bayesian agent", model_vals[:, :, 0]))
        unimodal = n_modes <= 1
        figures["trajectories"] = rp.fig_trajectories(
            its, panels, label, period=c.scale if circ else None, domain=domain,
            band=unimodal)
        captions["trajectories"] = (
            f"Up to 40 chains of {s['chains']}" + (", lines broken where a chain wraps "
                                                 f"around {domain[0]:g}/{domain[1]:g}"
                                                 if circ else "")
            + ("; red: median and 10–90 % of all chains" if unimodal and not circ else "")
            + ".")
        edges, d_data = iteration_densities(a.unit, c, 36 if circ else 30)
        dpanels = [("data", d_data)]
        tabs = [pd.DataFrame({"iteration": np.repeat(its, len(edges) - 1), "source": "data",
                              "bin_low": np.tile(edges[:-1], len(its)),
                              "bin_high": np.tile(edges[1:], len(its)),
                              "density": d_data.reshape(-1)})]
        if a.model_unit is not None:
            _, d_model = iteration_densities(a.model_unit, c, 36 if circ else 30,
                                             edges=edges)
            dpanels.append(("fitted Bayesian agent", d_model))
            tabs.append(tabs[0].assign(source="model", density=d_model.reshape(-1)))
        write_table(pd.concat(tabs, ignore_index=True), out / f"iteration_density.{fmt}")
        figures["iteration_density"] = rp.fig_iteration_density(its, edges, dpanels, label)
        captions["iteration_density"] = (
            f"Density of the values at each iteration (histogram, {len(edges) - 1} bins over "
            + (f"one period {domain[0]:g}–{domain[1]:g}" if circ else "the data's range")
            + ", each column integrating to 1; shared colour scale)"
            + (" for data and the fitted agent" if len(dpanels) > 1 else "") + ".")
    else:
        first = ("data, first iteration", data_vals[:, 0])
        panels = [first, ("data, last iteration", data_vals[:, -1])]
        if model_vals is not None:
            panels.append(("fitted agent, last iteration", model_vals[:, -1]))
        panels = [(k, v[~np.isnan(v).any(-1)]) for k, v in panels]
        figures["trajectories"] = rp.fig_scatter_2d(panels, (names[0], names[1]))
        captions["trajectories"] = (f"Values of all {s['chains']} chains at the first and the "
                                    "last iteration" + (", and of the fitted agent's chains"
                                                        if model_vals is not None else "")
                                    + ".")

    # fits
    fit_tables: list[tuple[str, pd.DataFrame]] = []
    if a.ar1 is not None:
        write_table(a.ar1, out / f"ar1.{fmt}")
        fit_tables.append((f"AR(1) fit (95 % bootstrap intervals over {s['clusters']} "
                           f"{s['cluster_col']} units; — : not defined for a non-stationary "
                           "fit)", a.ar1))
        x, xn, _ = t.transitions()
        est = dict(zip(a.ar1["quantity"], a.ar1["estimate"], strict=True))
        row = a.ar1.set_index("quantity").loc["slope"]
        figures["ar1"] = rp.fig_ar1(x[:, 0], xn[:, 0], est["slope"],
                                    est["fixed_point"] if circ else est["intercept"], names[0],
                                    circular=circ, domain=domain)
        captions["ar1"] = (f"{s['transitions']} transitions and the "
                           + ("wrapped " if circ else "") + f"AR(1) fit: slope "
                           f"{est['slope']:.3f} ({_ci(row['lower'], row['upper'])})"
                           + ("" if a.ar1_stationary else
                              "; the slope reaches 1, so the fit is non-stationary") + ".")
    if a.noise_fit is not None:
        nf = a.noise_fit
        prof = nf.profile.copy()
        scale = c.scale if nf.level_is_scale else 1.0
        prof["sigma_data"] = prof["sigma_unit"] * scale
        write_table(prof, out / f"noise_profile.{fmt}")
        ci = nf.ci_data(c.scale) if nf.level_is_scale else nf.sigma_ci_unit
        est = nf.sigma_unit * scale
        figures["noise_profile"] = rp.fig_profile(prof["sigma_data"].to_numpy(),
                                                  prof["loglik"].to_numpy(), est, ci,
                                                  "data units" if nf.level_is_scale
                                                  else "weight")
        captions["noise_profile"] = (
            f"Log-likelihood of the {nf.n_transitions} transitions under a {nf.family} agent "
            f"(rule {nf.rule}) with the {late_name} as its prior; ML σ = {est:.4g} "
            f"({_ci(*ci, fmt='.4g')}, {nf.ci_method}) on a {nf.grid_n}-point grid per axis"
            + ("; σ is at a search bound or the resolution limit" if nf.at_bound else "")
            + ".")
    if a.group_fits is not None:
        write_table(a.group_fits, out / f"group_fits.{fmt}")
        cols = [(k, lab) for k, lab in (("sigma", "σ (data units)"), ("slope", "AR(1) slope"))
                if k in a.group_fits]
        if cols:
            figures["group_fits"] = rp.fig_group_fits(a.group_fits, cols)
            captions["group_fits"] = (
                f"Per-group fits ({t.group_name}, {len(a.group_fits) - 1} groups) with 95 % "
                "intervals (bootstrap within each group over the units of its 'unit' "
                "column); red: the pooled fit and its interval.")

    # displays
    if a.display_stats is not None:
        write_table(a.display_stats, out / f"display_stats.{fmt}")
        figures["display_stats"] = rp.fig_display_stats(a.display_stats)
        captions["display_stats"] = (
            "Per iteration, the mean over displays of the within-display dispersion and of "
            "the mean nearest-neighbour distance, for the data"
            + (" and the fitted independent-item model" if a.model_unit is not None else "")
            + "; bands: 95 % bootstrap intervals.")

    _save_figures(out, figures)
    write_json(out / "summary.json", a.summary)
    write_json(out / "load_report.json", t.report.as_dict())

    def fig(k: str) -> list[tuple[str, bytes]]:
        return [(captions[k], figures[k])] if k in figures else []

    load_warn = t.report.warnings
    sections = [
        rp.Section("Summary", html=rp.key_value_table(_summary_rows(a)),
                   warnings=a.warnings),
        rp.Section("Data", paragraphs=[
            f"{t.report.path}: {t.report.rows_read} rows read, {t.report.rows_kept} kept, "
            f"{t.report.chains} chains, {s['iterations']} iterations, {t.dims} value "
            f"column(s) {', '.join(names)}" + (f" (circular, {domain[0]:g}–{domain[1]:g})"
                                              if circ else "")
            + f"; the last {a.late} iteration(s) are pooled as the late distribution."
            + (f" {t.report.rows_filtered} row(s) removed by --where." if t.report.rows_filtered
               else "")
            + (f" {t.report.seeds_added} seed(s) taken from the stimulus column as iteration "
               f"0; {t.report.stimulus_mismatches} of {t.report.stimulus_checked} stimuli "
               f"({100 * (t.report.stimulus_mismatch_rate or 0):.1f} %) differ from the "
               "previous response." if t.report.stimulus_checked or t.report.seeds_added
               else "")],
            items=a.notes,
            folded=([("load warnings", pd.DataFrame({"warning": load_warn}))]
                    if load_warn else [])),
        rp.Section("Convergence", paragraphs=[
            "Two diagnostics that do not take the data's own end as the truth: the "
            "dependence of each iteration on the start, and the agreement of chains started "
            "from different seeds (a permutation test). The distance curve on the left is "
            "descriptive."], figures=fig("convergence"),
            folded=[("distance per iteration", a.convergence),
                    ("correlation with the start per iteration", a.start_dependence)]),
        rp.Section("Late distribution" if not a.converged else "Stationary prior",
                   figures=fig("prior")),
        rp.Section("Chains", figures=fig("trajectories") + fig("iteration_density")),
    ]
    if fit_tables or a.noise_fit is not None:
        sections.append(rp.Section("Fits", figures=fig("ar1") + fig("noise_profile"),
                                   tables=fit_tables))
    if a.group_fits is not None:
        sections.append(rp.Section("Per-group fits", figures=fig("group_fits"),
                                   folded=[("per-group estimates", a.group_fits)]))
    if a.display_stats is not None:
        verdict = (a.display_warnings if a.display_warnings else
                   ["The fitted independent-item model reproduces the data's display "
                    "statistics within their 95 % intervals at the last iterations."]
                   if a.model_unit is not None else [])
        sections.append(rp.Section("Displays", paragraphs=verdict, figures=fig("display_stats"),
                                   folded=[("display statistics", a.display_stats)]))
    sections.append(rp.Section("Machine-readable summary", paragraphs=[
        "The same numbers as summary.json."], preformatted=_json(a.summary)))
    write_text(out / "report.html", rp.html_report("serialrepro · chain analysis", sections))
    return a.summary
