"""Write what ``chains simulate`` and ``chains analyze`` produce: tables (CSV or Parquet),
PNG figures, a JSON summary and the HTML report, each written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from serialrepro.atomic import write_bytes, write_json, write_table, write_text
from serialrepro.chains import report as rp
from serialrepro.chains.analysis import Analysis
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
    chains_path = write_table(frame, out / f"chains.{fmt}")
    figures: dict[str, bytes] = {}
    tables: list[tuple[str, pd.DataFrame]] = []
    summary = {"chains_table": chains_path.name, "n_chains": int(states.shape[1]),
               "n_iterations": int(n_it), "dims": int(states.shape[2]),
               "seconds": round(sim["seconds"], 4), "value_cols": names}
    values = frame.pivot(index="chain", columns="iteration", values=names[0]).to_numpy()
    if states.shape[2] == 1:
        figures["trajectories"] = rp.fig_trajectories(its, [("simulated chains", values)],
                                                      names[0])
    else:
        figures["start_end"] = rp.fig_scatter_2d(
            [("iteration 0", states[0]), (f"iteration {n_it}", states[-1])],
            (names[0], names[1]))
    space = sim["space"]
    if sim["marginals"] is not None:
        m = sim["marginals"]
        prior = agent.prior.on_grid(space)
        d = space.dims
        jsd = jsd_bits(m, prior.expand_as(m), ndim=d).numpy()
        conv = pd.DataFrame({"iteration": its, "jsd_to_prior_bits": jsd})
        tables.append(("exact JSD of the population distribution to the prior", conv))
        summary["exact_final_jsd_to_prior_bits"] = float(jsd[-1])
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
    cf = sim["closed_form"]
    if cf is not None:
        x0 = states[0, :, 0]
        sim_mean, sim_var = states[:, :, 0].mean(1), states[:, :, 0].var(1, ddof=1)
        ref_mean = cf.fixed_point + cf.slope**its * (x0.mean() - cf.fixed_point)
        ref_var = cf.var(its, float(x0.var(ddof=1)))
        figures["closed_form"] = rp.fig_moments(its, sim_mean, sim_var, ref_mean, ref_var,
                                                "AR(1) closed form")
        tables.append(("moments per iteration against the AR(1) closed form", pd.DataFrame({
            "iteration": its, "mean": sim_mean, "mean_closed_form": ref_mean,
            "variance": sim_var, "variance_closed_form": ref_var})))
        summary["closed_form"] = cf.as_dict()
    _save_figures(out, figures)
    write_json(out / "summary.json", summary)
    write_json(out / "config.resolved.json", config)
    sections = [
        rp.Section("Run", paragraphs=[
            f"{summary['n_chains']} chains × {n_it} iterations of a "
            f"{agent.family.name} agent (σ = {agent.sigma:g}, rule {agent.rule}, production "
            f"noise {agent.production_sigma:g}) in {config['mode']} mode; "
            f"{sim['seconds']:.2f} s."],
            tables=[("summary", pd.DataFrame([{k: v for k, v in summary.items()
                                               if not isinstance(v, dict | list)}]))]),
        rp.Section("Figures", figures=[(k.replace("_", " "), v) for k, v in figures.items()],
                   tables=tables),
        rp.Section("Resolved config", preformatted=_json(config)),
    ]
    write_text(out / "report.html", rp.html_report("serialrepro · simulated chains", sections))
    return summary


def _json(obj) -> str:
    import json

    return json.dumps(obj, indent=2, default=float)


def write_analysis(a: Analysis, out: Path, fmt: str = "csv") -> dict:
    """Tables, figures, summary.json, load_report.json and report.html of an analysis."""
    out.mkdir(parents=True, exist_ok=True)
    t = a.table
    names = t.value_cols
    unit_label = (f"{names[0]} (period {a.coords.scale:g})" if a.coords.circular
                  else names[0])
    figures: dict[str, bytes] = {}
    write_table(a.convergence, out / f"convergence.{fmt}")
    figures["convergence"] = rp.fig_convergence(a.convergence, a.model_convergence)
    if a.model_convergence is not None:
        write_table(a.model_convergence, out / f"model_convergence.{fmt}")
    late_unit = a.unit[:, len(a.iterations) - a.late:].reshape(-1, t.dims)
    late_unit = late_unit[~np.isnan(late_unit).any(-1)]
    late_data = a.coords.from_unit(late_unit)
    if t.dims == 1:
        g = (np.linspace(-0.5, 0.5, 401) if a.coords.circular else
             np.linspace(late_unit.min() - 0.05, late_unit.max() + 0.05, 401))
        dens = a.prior.density(g[:, None]) / a.coords.scale
        gx = a.coords.from_unit(g)
        write_table(pd.DataFrame({names[0]: gx, "density": dens}), out / f"prior_kde.{fmt}")
        figures["prior"] = rp.fig_prior_1d(late_data[:, 0], gx, dens, unit_label)
    else:
        lo, hi = late_unit[:, :2].min(0) - 0.05, late_unit[:, :2].max(0) + 0.05
        dens = None
        if t.dims == 2:
            gx, gy = np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80)
            mesh = np.stack(np.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
            dens = a.prior.density(mesh).reshape(80, 80)
            dm = a.coords.from_unit(mesh)
            write_table(pd.DataFrame({names[0]: dm[:, 0], names[1]: dm[:, 1],
                                      "density": dens.reshape(-1) / a.coords.scale**2}),
                        out / f"prior_kde.{fmt}")
        ext_lo, ext_hi = a.coords.from_unit(lo), a.coords.from_unit(hi)
        figures["prior"] = rp.fig_prior_2d(
            late_data, (ext_lo[0], ext_hi[0], ext_lo[1], ext_hi[1]), dens, (names[0], names[1]),
            title="stationary prior (late iterations)" + ("" if t.dims == 2 else
                                                          ", first two axes"))
    data_vals = a.coords.from_unit(a.unit)
    if a.coords.circular:
        data_vals = a.unit * a.coords.scale
    model_vals = None if a.model_unit is None else (
        a.model_unit * a.coords.scale if a.coords.circular else a.coords.from_unit(a.model_unit))
    if t.dims == 1:
        panels = [("data", data_vals[:, :, 0])]
        if model_vals is not None:
            panels.append(("fitted Bayesian agent", model_vals[:, :, 0]))
        figures["trajectories"] = rp.fig_trajectories(a.iterations, panels, unit_label)
    else:
        panels = [("data, first iteration", data_vals[:, 0]),
                  ("data, last iteration", data_vals[:, -1])]
        if model_vals is not None:
            panels.append(("fitted agent, last iteration", model_vals[:, -1]))
        panels = [(k, v[~np.isnan(v).any(-1)]) for k, v in panels]
        figures["trajectories"] = rp.fig_scatter_2d(panels, (names[0], names[1]))
    tables: list[tuple[str, pd.DataFrame]] = []
    if a.ar1 is not None:
        write_table(a.ar1, out / f"ar1.{fmt}")
        tables.append(("AR(1) fit (95 % bootstrap intervals over chains)", a.ar1))
        x, xn, _ = t.transitions()
        est = dict(zip(a.ar1["quantity"], a.ar1["estimate"], strict=True))
        if a.coords.circular:
            figures["ar1"] = rp.fig_ar1(wrap_period(x[:, 0], a.coords.scale),
                                        wrap_period(xn[:, 0], a.coords.scale), est["slope"],
                                        est["fixed_point"], names[0], circular=True)
        else:
            figures["ar1"] = rp.fig_ar1(x[:, 0], xn[:, 0], est["slope"], est["intercept"],
                                        names[0])
    if a.noise_fit is not None:
        nf = a.noise_fit
        write_table(nf.profile, out / f"noise_profile.{fmt}")
        col = "sigma_data" if nf.sigma_data is not None else "sigma_unit"
        figures["noise_profile"] = rp.fig_profile(
            nf.profile, nf.sigma_data if nf.sigma_data is not None else nf.sigma_unit, col)
        tables.append(("maximum-likelihood perception level", pd.DataFrame([nf.as_dict()])))
    _save_figures(out, figures)
    write_json(out / "summary.json", a.summary)
    write_json(out / "load_report.json", t.report.as_dict())
    warn = t.report.warnings
    sections = [
        rp.Section("Data", paragraphs=[
            f"{t.report.path}: {t.report.rows_read} rows read, {t.report.rows_kept} kept, "
            f"{t.report.chains} chains, {len(a.iterations)} iterations, {t.dims} value "
            f"column(s) {', '.join(names)}" + (" (circular)" if a.coords.circular else "")
            + f"; the last {a.late} iteration(s) are taken as stationary."],
            items=(warn[:50] + ([f"… and {len(warn) - 50} more (load_report.json)"]
                                if len(warn) > 50 else [])) + a.notes),
        rp.Section("Convergence", paragraphs=[
            "Distance of each iteration's distribution (across chains) to that of the late "
            "iterations; bands are 95 % percentile bootstrap intervals over chains."],
            figures=[("convergence", figures["convergence"])],
            tables=[("convergence", a.convergence)]),
        rp.Section("Stationary prior", paragraphs=[
            "Kernel density estimate (Scott's rule) of the late iterations: the prior the "
            "chains converge to when agents sample from their posterior."],
            figures=[("prior", figures["prior"])]),
        rp.Section("Chains", figures=[("trajectories", figures["trajectories"])]),
    ]
    if tables or "ar1" in figures or "noise_profile" in figures:
        sections.append(rp.Section(
            "Fits", tables=tables,
            figures=[(k.replace("_", " "), figures[k]) for k in ("ar1", "noise_profile")
                     if k in figures]))
    sections.append(rp.Section("Summary", preformatted=_json(a.summary)))
    write_text(out / "report.html", rp.html_report("serialrepro · chain analysis", sections))
    return a.summary


def wrap_period(x: np.ndarray, period: float) -> np.ndarray:
    return (np.mod(x / period + 0.5, 1.0) - 0.5) * period

