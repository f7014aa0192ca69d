"""Analysis of serial-reproduction chains (human or simulated): the orchestrator.

:func:`analyze_chains` runs, on a validated :class:`~serialrepro.chains.data.ChainTable`:

1. items matched across iterations (``match_items``; else a warning when the ids look
   scrambled) — :mod:`serialrepro.chains.display`;
2. coordinates and the cluster bootstrap — :mod:`serialrepro.chains.coordinates`;
3. convergence: the energy-distance curve to the late iterations, the dependence of each
   iteration on the start and the agreement of chains from different seeds, with a
   verdict that can be "not converged" — :mod:`serialrepro.chains.convergence`;
4. the late-iteration density (the prior only when the chains have converged) and its
   modes — :mod:`serialrepro.chains.prior`;
5. AR(1) fits (1-D) with a stationarity flag — :mod:`serialrepro.chains.ar1`;
6. the Bayesian agent's noise level by maximum likelihood with an interval, pooled and per
   group, and chains of the fitted agent — :mod:`serialrepro.chains.noise_fit`;
7. display statistics of data and fitted model (multi-item displays) —
   :mod:`serialrepro.chains.display`.

Every interval resamples the independent unit (the table's cluster: the chain by default,
the participant or display when given); a per-group fit whose group holds fewer than
:data:`MIN_GROUP_CLUSTERS` clusters (a participant as both group and cluster) resamples the
group's chains. The fitted agent's prior is the late-iteration density, shared by all
groups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from serialrepro.chains import display as disp
from serialrepro.chains.ar1 import fit_ar1, fit_circular_ar1
from serialrepro.chains.convergence import (
    convergence_curve,
    judge_convergence,
    seed_agreement,
    seed_groups,
    start_dependence,
)
from serialrepro.chains.coordinates import Coordinates, cluster_resample
from serialrepro.chains.data import ChainTable
from serialrepro.chains.noise_fit import NoiseFit, fit_noise_level, simulate_fitted
from serialrepro.chains.prior import (
    PriorEstimate,
    count_modes,
    density_grid_1d,
    density_grid_2d,
    estimate_prior,
)
from serialrepro.errors import UserInputError

#: the bootstrap interval of the noise fit needs at least this many resamples
MIN_FIT_BOOT = 20
#: a group with fewer clusters than this resamples its chains instead
MIN_GROUP_CLUSTERS = 5


@dataclass
class Analysis:
    """Everything ``serialrepro chains analyze`` computes: tables, figure data, summary."""

    table: ChainTable
    coords: Coordinates
    iterations: np.ndarray
    unit: np.ndarray  # [C, I, D]
    late: int
    convergence: pd.DataFrame
    start_dependence: pd.DataFrame
    verdict: dict
    prior: PriorEstimate
    n_modes: int
    ar1: pd.DataFrame | None
    ar1_stationary: bool | None
    noise_fit: NoiseFit | None
    model_unit: np.ndarray | None  # [C', I, D], chains with a first value
    model_convergence: pd.DataFrame | None
    group_fits: pd.DataFrame | None
    display_stats: pd.DataFrame | None
    summary: dict
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: where the fitted model cannot reproduce the data's display statistics (also in
    #: ``warnings``)
    display_warnings: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool | None:
        return self.verdict["converged"]


def _strict(obj):
    """Non-finite floats -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _group_rows(table: ChainTable, coords: Coordinates, ux, ux_next, chain, cluster_of_chain,
                pooled: NoiseFit | None, fit_kw: dict | None, n_boot: int, seed: int,
                circular: bool) -> pd.DataFrame:
    """One row per group and one for the pooled fit (``pooled``, already fitted): σ with
    its interval, AR(1) slope (1-D)."""
    codes = table.group_codes
    labels = table.group_labels or []
    rows = []
    for g in [*range(len(labels)), None]:
        name = "pooled" if g is None else labels[g]
        sel = np.ones(len(chain), bool) if g is None else (codes[chain] == g)
        row = {"group": name, "n_chains": int(np.unique(chain[sel]).size),
               "n_transitions": int(sel.sum())}
        if sel.sum() < 3:
            rows.append({**row, "note": "fewer than 3 transitions: not fitted"})
            continue
        cl = cluster_of_chain[chain[sel]]
        if g is not None and np.unique(cl).size < MIN_GROUP_CLUSTERS:
            # the cluster is the group itself (e.g. the participant): within one group the
            # independent units are its chains
            cl = chain[sel]
            row["unit"] = "chain"
        else:
            row["unit"] = table.cluster_name
        row["n_clusters"] = int(np.unique(cl).size)
        if fit_kw is not None:
            try:
                nf = pooled if g is None and pooled is not None else fit_noise_level(
                    ux[sel], ux_next[sel], cluster=cl, **fit_kw)
                s = nf.sigma_data(coords.scale)
                ci = nf.ci_data(coords.scale)
                row.update(sigma=s if s is not None else nf.sigma_unit,
                           sigma_low=ci[0] if ci else nf.sigma_ci_unit[0],
                           sigma_high=ci[1] if ci else nf.sigma_ci_unit[1],
                           at_bound=nf.at_bound)
            except UserInputError as exc:
                row["note"] = str(exc)
        if table.dims == 1:
            _, inv = np.unique(cl, return_inverse=True)
            wg, _ = cluster_resample(inv, n_boot, seed)
            w = wg[:, inv]
            if circular:
                ar = fit_circular_ar1(ux[sel, 0], ux_next[sel, 0], w, coords.scale,
                                      coords.origin)
            else:
                x, xn = coords.from_unit(ux[sel]), coords.from_unit(ux_next[sel])
                ar = fit_ar1(x[:, 0], xn[:, 0], w)
            s_row = ar.set_index("quantity").loc["slope"]
            row.update(slope=s_row["estimate"], slope_low=s_row["lower"],
                       slope_high=s_row["upper"], stationary=ar.attrs["stationary"])
        rows.append(row)
    return pd.DataFrame(rows)


def analyze_chains(
    table: ChainTable, circular: bool = False, period: float = 360.0, bins: int | None = None,
    late: int | None = None, family: str = "gaussian", rule: str = "sample",
    production_sigma: float = 0.0, grid_n: int | None = None, n_boot: int = 200,
    seed: int = 0, fit_model: bool = True, *, match_items: bool = False,
    n_perm: int = 200,
) -> Analysis:
    """Run every analysis of the module docstring on ``table``.

    A table loaded as circular brings its own period and range; ``circular``/``period``
    serve tables loaded without them. ``production_sigma`` is in data units; ``late`` is
    the number of final iterations pooled as the late distribution (default: the last
    fifth, at least 1); ``bins`` sets the per-iteration density histogram.
    """
    notes: list[str] = []
    warnings: list[str] = []
    if n_boot < 0:
        raise UserInputError(f"--bootstrap {n_boot} must be ≥ 0")
    match_info = None
    if match_items:
        m = disp.match_items(table)
        table = m.table
        match_info = {"mean_jump_before": m.mean_jump_before,
                      "mean_jump_after": m.mean_jump_after}
        notes.append(f"items matched across consecutive iterations (mean jump "
                     f"{m.mean_jump_before:.3g} -> {m.mean_jump_after:.3g})")
    elif table.has_item:
        ratio, warn = disp.identity_scramble_check(table)
        match_info = {"scramble_ratio": ratio}
        if warn:
            warnings.append(warn)
    if table.circular:
        circular, period = True, float(table.period)
    its, keys, values = table.by_iteration()
    flat = values.reshape(-1, table.dims)
    coords = Coordinates.fit(flat[~np.isnan(flat).any(-1)], circular, period,
                             table.origin if table.circular else None)
    unit = coords.to_unit(values)
    n_it = len(its)
    if n_it < 2:
        raise UserInputError("the chains have a single iteration; nothing to analyse")
    late = max(1, math.ceil(n_it / 5)) if late is None else int(late)
    if not 1 <= late < n_it:
        raise UserInputError(f"--late {late} must lie in 1..{n_it - 1} (there are {n_it} "
                             "iteration rows)")
    bins = int(bins) if bins is not None else (36 if circular else 30)
    if bins < 2:
        raise UserInputError(f"--bins {bins} must be at least 2")

    # -- cluster bootstrap, convergence ---------------------------------------------------
    _, cl = np.unique(table.cluster_codes, return_inverse=True)
    wg, _ = cluster_resample(cl, n_boot, seed)
    chain_w = wg[:, cl]
    emb = coords.embed(unit)
    conv = convergence_curve(emb, its, late, cl, wg)
    dep = start_dependence(unit, its, circular, chain_w)
    x0 = unit[:, 0]
    ok_end = ~np.isnan(x0).any(-1) & ~np.isnan(unit[:, -1]).any(-1)
    agreement = None
    groups = seed_groups(x0[ok_end], circular) if ok_end.sum() >= 4 else None
    if groups is not None and np.bincount(groups).min() >= 2:
        agreement = seed_agreement(emb[ok_end, -1], groups, n_perm, seed)
    verdict = judge_convergence(dep, agreement, int(ok_end.sum()))
    late_word = "prior" if verdict["converged"] else "late distribution"
    if verdict["converged"] is False:
        warnings.append("the chains have not converged: " + "; ".join(verdict["reasons"])
                        + ". The late-iteration density is the late distribution, not the "
                        "agents' prior.")
    elif verdict["converged"] is None:
        warnings.append("convergence cannot be judged (" + "; ".join(verdict["reasons"])
                        + "): the late-iteration density may not be the prior")

    # -- late density ---------------------------------------------------------------------
    late_values = unit[:, n_it - late:].reshape(-1, table.dims)
    prior = estimate_prior(late_values, circular)
    if table.dims == 1:
        _, dens = density_grid_1d(prior, coords, late_values[:, 0])
        n_modes = count_modes(dens, circular)
    elif table.dims == 2:
        n_modes = count_modes(density_grid_2d(prior, coords, late_values)[2])
    else:
        n_modes = 1
    if n_modes > 1:
        notes.append(f"the late density has {n_modes} modes: one attractor (the AR(1) fit) "
                     "is a poor model of these chains; the Bayesian-agent fit with the "
                     "KDE prior handles several")

    # -- AR(1) ----------------------------------------------------------------------------
    x, x_next, chain = table.transitions()
    if len(x) == 0:
        raise UserInputError("no chain has two consecutive iterations: no transitions to fit")
    ux, ux_next = coords.to_unit(x), coords.to_unit(x_next)
    tw = chain_w[:, chain]
    ar1 = stationary = None
    if table.dims == 1:
        ar1 = (fit_circular_ar1(ux[:, 0], ux_next[:, 0], tw, coords.scale, coords.origin)
               if circular else fit_ar1(x[:, 0], x_next[:, 0], tw))
        stationary = bool(ar1.attrs["stationary"])
        if not stationary:
            s = ar1.set_index("quantity").loc["slope"]
            warnings.append(f"the AR(1) slope {s['estimate']:.3f} (95 % CI {s['lower']:.3f}–"
                            f"{s['upper']:.3f}) reaches 1: the fit is non-stationary, so no "
                            "fixed point, stationary variance or prior inversion is reported")
    else:
        notes.append("the AR(1) fit is for 1-D data; skipped")

    # -- noise fit, model chains, groups --------------------------------------------------
    noise_fit = model_unit = model_conv = group_fits = None
    fit_kw = None
    if fit_model and table.dims <= 2:
        fit_kw = dict(prior_density=prior.density, family=family, rule=rule,
                      production_sigma_unit=production_sigma / coords.scale, dims=table.dims,
                      circular=circular, grid_n=grid_n,
                      ci="bootstrap" if n_boot >= MIN_FIT_BOOT else "profile",
                      n_boot=max(n_boot, MIN_FIT_BOOT), seed=seed)
        noise_fit = fit_noise_level(ux, ux_next, cluster=cl[chain], **fit_kw)
        warnings.extend(f"noise fit: {w}" for w in noise_fit.warnings)
        first = unit[:, 0]
        ok = ~np.isnan(first).any(-1)
        if ok.sum() == 0:
            notes.append("no chain has a value at the first iteration; model chains not run")
        else:
            model_unit = simulate_fitted(noise_fit, first[ok], n_it - 1,
                                         prior_density=prior.density, seed=seed)
            _, mcl = np.unique(cl[ok], return_inverse=True)
            mwg, _ = cluster_resample(mcl, n_boot, seed)
            model_conv = convergence_curve(coords.embed(model_unit), its, late, mcl, mwg)
    elif fit_model:
        notes.append("the model fit runs on 1-D and 2-D data; skipped for "
                     f"{table.dims}-D data")
    if table.group_codes is not None:
        group_fits = _group_rows(table, coords, ux, ux_next, chain, cl, noise_fit, fit_kw,
                                 n_boot, seed, circular)

    # -- display statistics ---------------------------------------------------------------
    dstats = None
    display_warnings: list[str] = []
    if table.has_item:
        period_arg = coords.scale if circular else None
        v, d_id, d_it, d_cl = table.displays()
        data_stats = disp.display_stats(v, d_id, d_it, n_boot, seed, d_cl, period=period_arg)
        frames = [data_stats.assign(source="data")]
        if model_unit is not None:
            ok = ~np.isnan(unit[:, 0]).any(-1)
            mv, m_id, m_it, track = disp.track_displays(coords.from_unit(model_unit),
                                                        table.chain_index[ok], its)
            model_stats = disp.display_stats(mv, m_id, m_it, n_boot, seed,
                                             table.cluster_codes[ok][track],
                                             period=period_arg)
            frames.append(model_stats.assign(source="model"))
            display_warnings = disp.compare_display_stats(data_stats, model_stats, late)
            warnings.extend(display_warnings)
        dstats = pd.concat(frames, ignore_index=True)
        dstats = dstats[["iteration", "source"] + [c for c in dstats.columns
                                                   if c not in ("iteration", "source")]]

    summary = {
        "chains": int(len(keys)), "iterations": int(table.n_iterations),
        "iteration_rows": int(n_it), "dims": table.dims,
        "transitions": int(len(x)), "late_iterations": late, "circular": circular,
        "clusters": int(wg.shape[1]), "cluster_col": table.cluster_name,
        "coordinates": coords.as_dict(), "convergence_metric": str(conv["metric"].iloc[0]),
        "initial_distance": float(conv["distance"].iloc[0]),
        "final_distance": float(conv["distance"].iloc[-1]),
        "final_distance_ci": [float(conv["lower"].iloc[-1]), float(conv["upper"].iloc[-1])],
        "convergence": verdict, "late_density": {"name": late_word, "modes": n_modes,
                                                 "bandwidth_unit": prior.bandwidth},
        "load": table.report.as_dict(),
    }
    if match_info is not None:
        summary["items"] = match_info
    if ar1 is not None:
        summary["ar1"] = {r.quantity: r.estimate for r in ar1.itertuples()}
        summary["ar1"]["stationary"] = stationary
        summary["ar1"]["slope_ci"] = [float(ar1["lower"].iloc[0]), float(ar1["upper"].iloc[0])]
    if noise_fit is not None:
        nf = noise_fit.as_dict(coords.scale)
        nf["grid"] = f"torus {noise_fit.grid_n}^{noise_fit.dims}"
        summary["noise_fit"] = nf
    if group_fits is not None:
        summary["groups"] = {"column": table.group_name, "n": int(len(group_fits) - 1)}
    summary["warnings"] = list(warnings)
    summary = _strict(summary)
    return Analysis(table, coords, its, unit, late, conv, dep, verdict, prior, n_modes, ar1,
                    stationary, noise_fit, model_unit, model_conv, group_fits, dstats,
                    summary, notes, warnings, display_warnings)
