"""Figures and the self-contained HTML report of ``chains simulate`` / ``chains analyze``.

Every image is a PNG embedded as base64 (no external files, no URLs; the PNG
"Software" tag, which carries a URL, is dropped), tables are inline HTML, and the page
is written atomically. Matplotlib is imported here, inside the functions' module, which
the CLI imports only when a command runs.
"""

from __future__ import annotations

import io
import platform
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from serialrepro import __version__
from serialrepro.html import escape, page, png_img


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _iteration_axis(ax) -> None:
    """Label an x axis of iterations and tick it at whole iterations only."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


# -- figures -------------------------------------------------------------------------------

#: how the correlation statistics of :mod:`serialrepro.chains.convergence` are named in text
STATISTIC_NAMES = {"pearson": "Pearson", "fisher_lee": "Fisher–Lee circular"}


def fig_convergence(conv: pd.DataFrame, model: pd.DataFrame | None = None,
                    dependence: pd.DataFrame | None = None, small: float = 0.1,
                    unit: str = "data units") -> bytes:
    """Energy distance to the late iterations (data and fitted model, 95 % bands) and,
    beside it, the correlation of each iteration with the start (95 % band)."""
    plt = _plt()
    n = 1 if dependence is None else 2
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    ax = axes[0, 0]
    for df, label, color in ((conv, "data", "C0"), (model, "fitted model", "C3")):
        if df is None:
            continue
        ax.plot(df["iteration"], df["distance"], "o-", color=color, label=label, ms=3)
        if np.isfinite(df["lower"]).any():
            ax.fill_between(df["iteration"], df["lower"], df["upper"], color=color, alpha=0.2,
                            lw=0)
    ax.axhline(0, color="k", lw=0.6)
    _iteration_axis(ax)
    ax.set_ylabel(f"energy distance ({unit})")
    ax.set_title("distance to the late iterations")
    ax.legend(frameon=False)
    if dependence is not None:
        ax = axes[0, 1]
        ax.axhspan(-small, small, color="0.9", lw=0, label=f"|r| < {small:g}")
        ax.plot(dependence["iteration"], dependence["correlation"], "o-", color="C2", ms=3,
                label="data")
        ax.fill_between(dependence["iteration"], dependence["lower"], dependence["upper"],
                        color="C2", alpha=0.25, lw=0, label="95 % interval")
        ax.axhline(0, color="k", lw=0.6)
        stat = STATISTIC_NAMES.get(str(dependence["statistic"].iloc[0]),
                                   str(dependence["statistic"].iloc[0]))
        ax.set_ylabel(f"correlation with iteration 0 ({stat})")
        _iteration_axis(ax)
        ax.set_title("dependence on the start")
        lows = dependence["lower"].to_numpy(dtype=np.float64)
        low = float(np.min(lows[np.isfinite(lows)])) if np.isfinite(lows).any() else 0.0
        ax.set_ylim(min(-0.2, low - 0.05), 1.05)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def fig_prior_1d(late: np.ndarray, grid: np.ndarray, density: np.ndarray, xlabel: str,
                 extra: list[tuple[np.ndarray, np.ndarray, str]] | None = None,
                 title: str = "stationary prior (late iterations)",
                 labels: tuple[str, str] = ("late iterations", "KDE"),
                 domain: tuple[float, float] | None = None) -> bytes:
    """Histogram of ``late`` values with density curves (grid, density) in data units;
    ``domain`` (one period of circular data) fixes the histogram range and the axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(late, bins=40, range=domain, density=True, color="0.8", label=labels[0])
    if domain is not None:
        ax.set_xlim(*domain)
    ax.plot(grid, density, "C0", lw=2, label=labels[1])
    for k, (x, y, lab) in enumerate(extra or []):
        ax.plot(x, y, "--", color=f"C{k + 1}", lw=1.5, label=lab)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(frameon=False)
    return png_bytes(fig)


def fig_prior_2d(late: np.ndarray, extent: tuple[float, float, float, float],
                 density: np.ndarray | None, labels: tuple[str, str],
                 title: str = "stationary prior (late iterations)") -> bytes:
    """``density`` [nx, ny] with axis 0 horizontal (``imshow(p.T, origin='lower')``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.6))
    if density is not None:
        ax.imshow(density.T, origin="lower", extent=extent, cmap="viridis", aspect="equal")
    ax.scatter(late[:, 0], late[:, 1], s=3, c="w" if density is not None else "C0", alpha=0.5)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    return png_bytes(fig)


def break_at_wraps(v: np.ndarray, period: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of values [C, I] made drawable on a circle: a NaN is put between consecutive
    values that differ by more than half a period, so no line crosses the wrap point.
    Returns (x positions [C, 2I − 1], values [C, 2I − 1]) for iterations 0..I−1 placed at
    even positions (x = position / 2)."""
    c, n = v.shape
    x = np.arange(2 * n - 1) / 2
    out = np.full((c, 2 * n - 1), np.nan)
    out[:, ::2] = v
    if period is not None and n > 1:
        jump = np.abs(np.diff(v, axis=1)) > period / 2
        mid = np.where(jump, np.nan, (v[:, 1:] + v[:, :-1]) / 2)
        out[:, 1::2] = mid
    else:
        out[:, 1::2] = (v[:, 1:] + v[:, :-1]) / 2
    return np.broadcast_to(x, out.shape), out


def fig_trajectories(iterations: np.ndarray, panels: list[tuple[str, np.ndarray]],
                     ylabel: str, max_chains: int = 40, period: float | None = None,
                     domain: tuple[float, float] | None = None, band: bool = True) -> bytes:
    """1-D chains: values [C, I] per panel, a few chains and (``band``) the 10/50/90 %
    quantiles. Circular data (``period``) have their lines broken at the wrap point and
    no quantile band (a median of angles is meaningless across the wrap)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), sharey=True,
                             squeeze=False)
    its = np.asarray(iterations, dtype=np.float64)
    for ax, (title, v) in zip(axes[0], panels, strict=True):
        sub = v[:max_chains]
        pos, vals = break_at_wraps(sub, period)
        xs = its[0] + pos * (its[-1] - its[0]) / max(len(its) - 1, 1)
        for row_x, row in zip(xs, vals, strict=True):
            ax.plot(row_x, row, color="0.45", lw=0.7, alpha=0.6)
        if band and period is None:
            q = np.nanpercentile(v, [10, 50, 90], axis=0)
            ax.plot(iterations, q[1], "C3", lw=2, label="median")
            ax.fill_between(iterations, q[0], q[2], color="C3", alpha=0.15, label="10–90 %")
        ax.set_title(title)
        _iteration_axis(ax)
        if domain is not None:
            ax.set_ylim(*domain)
    axes[0, 0].set_ylabel(ylabel)
    if band and period is None:
        axes[0, 0].legend(frameon=False)
    fig.tight_layout()
    return png_bytes(fig)


def fig_iteration_density(iterations: np.ndarray, edges: np.ndarray,
                          panels: list[tuple[str, np.ndarray]], ylabel: str) -> bytes:
    """Density per iteration (heatmap, one column per iteration, density per data unit
    on a shared colour scale) for data and model."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.8, 3.6),
                             sharey=True, squeeze=False)
    vmax = max(float(np.nanmax(d)) for _, d in panels)
    its = np.asarray(iterations, dtype=np.float64)
    xe = np.r_[its - 0.5, its[-1] + 0.5]
    im = None
    for ax, (title, d) in zip(axes[0], panels, strict=True):
        im = ax.pcolormesh(xe, edges, d.T, cmap="magma", vmin=0, vmax=vmax, shading="flat")
        ax.set_title(title)
        _iteration_axis(ax)
    axes[0, 0].set_ylabel(ylabel)
    fig.colorbar(im, ax=axes[0].tolist(), label="density (per data unit)", shrink=0.9)
    return png_bytes(fig)


def fig_group_fits(df: pd.DataFrame, cols: list[tuple[str, str]]) -> bytes:
    """Per-group estimates with 95 % intervals (one panel per (column, label)); the pooled
    fit as a line with its band."""
    plt = _plt()
    groups = df[df["group"] != "pooled"]
    num = pd.to_numeric(groups["group"], errors="coerce")
    if num.notna().all():  # participant numbers in numeric order, not as text
        groups = groups.iloc[np.argsort(num.to_numpy(), kind="stable")]
    groups = groups.reset_index(drop=True)
    pooled = df[df["group"] == "pooled"]
    fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols),
                                                    max(2.5, 0.22 * len(groups) + 1.2)),
                             squeeze=False)
    y = np.arange(len(groups))
    for ax, (col, label) in zip(axes[0], cols, strict=True):
        est = groups[col].to_numpy(dtype=np.float64)
        lo = groups[f"{col}_low"].to_numpy(dtype=np.float64)
        hi = groups[f"{col}_high"].to_numpy(dtype=np.float64)
        ax.errorbar(est, y, xerr=[np.maximum(est - lo, 0), np.maximum(hi - est, 0)], fmt="o",
                    ms=3, color="C0", ecolor="C0", elinewidth=1)
        if len(pooled) and col in pooled:
            p = pooled.iloc[0]
            ax.axvline(p[col], color="C3", lw=1.2, label="pooled")
            if np.isfinite(p[f"{col}_low"]):
                ax.axvspan(p[f"{col}_low"], p[f"{col}_high"], color="C3", alpha=0.15, lw=0)
            ax.legend(frameon=False, fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels(groups["group"].astype(str), fontsize=7 if len(groups) > 25 else 9)
        ax.invert_yaxis()
        ax.set_xlabel(label)
    fig.tight_layout()
    return png_bytes(fig)


def fig_display_stats(df: pd.DataFrame, unit: str = "data units") -> bytes:
    """Display dispersion and nearest-neighbour distance per iteration, data and model,
    with 95 % bands."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (stat, label) in zip(axes, (("dispersion", "dispersion (log det Σ)"),
                                        ("nn_distance", f"nearest-neighbour distance ({unit})")),
                                 strict=True):
        for src, color in (("data", "C0"), ("model", "C3")):
            d = df[df["source"] == src]
            if d.empty:
                continue
            ax.plot(d["iteration"], d[stat], "o-", ms=3, color=color,
                    label="fitted model" if src == "model" else src)
            ax.fill_between(d["iteration"], d[f"{stat}_low"], d[f"{stat}_high"], color=color,
                            alpha=0.2, lw=0)
        _iteration_axis(ax)
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    fig.tight_layout()
    return png_bytes(fig)


def fig_scatter_2d(panels: list[tuple[str, np.ndarray]], labels: tuple[str, str]) -> bytes:
    """2-D point clouds [N, 2], one panel each."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (title, v) in zip(axes[0], panels, strict=True):
        ax.scatter(v[:, 0], v[:, 1], s=4, alpha=0.6)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(title)
        ax.set_xlabel(labels[0])
    axes[0, 0].set_ylabel(labels[1])
    return png_bytes(fig)


def fig_ar1(x: np.ndarray, x_next: np.ndarray, slope: float, intercept: float,
            label: str, circular: bool = False, domain: tuple[float, float] | None = None
            ) -> bytes:
    """Transitions x_n → x_{n+1} with the AR(1) line. Circular: ``intercept`` is the fixed
    point μ and the line μ + λ wrap(x − μ) is drawn in the data's range, broken at the
    wrap point."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(x, x_next, s=3, alpha=0.3)
    lo, hi = domain if domain is not None else (float(np.nanmin(x)), float(np.nanmax(x)))
    g = np.linspace(lo, hi, 721)
    ax.plot(g, g, "k:", lw=1, label="identity")
    if np.isfinite(slope) and np.isfinite(intercept):
        if not circular:
            ax.plot(g, intercept + slope * g, "C3", lw=2, label=f"AR(1): λ = {slope:.3f}")
        else:
            period = hi - lo
            dev = np.mod(g - intercept + period / 2, period) - period / 2
            yv = np.mod(intercept + slope * dev - lo, period) + lo
            # break where the deviation wraps (x = μ ± P/2) or the response wraps
            cut = (np.diff(dev) < 0) | (np.abs(np.diff(yv)) > period / 2)
            yv[1:][cut] = np.nan
            ax.plot(g, yv, "C3", lw=2, label=f"wrapped AR(1): λ = {slope:.3f}")
    if domain is not None:
        ax.set_xlim(*domain)
        ax.set_ylim(*domain)
    ax.set_xlabel(f"{label} at iteration n")
    ax.set_ylabel(f"{label} at iteration n + 1")
    ax.legend(frameon=False, fontsize=8)
    return png_bytes(fig)


def fig_profile(sigma: np.ndarray, loglik: np.ndarray, estimate: float,
                ci: tuple[float, float] | None, unit: str) -> bytes:
    """Profile log-likelihood of the noise level with the estimate and its interval."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    order = np.argsort(sigma)
    ax.semilogx(np.asarray(sigma)[order], np.asarray(loglik)[order], "o-", ms=3)
    if ci is not None and all(np.isfinite(ci)):
        ax.axvspan(ci[0], ci[1], color="C3", alpha=0.15, lw=0, label="95 % interval")
    ax.axvline(estimate, color="C3", ls="--", label=f"ML σ = {estimate:.4g}")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"σ ({unit}, log scale)")
    ax.set_ylabel("log-likelihood of transitions")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def fig_exact_jsd(iterations: np.ndarray, jsd: np.ndarray) -> bytes:
    """Exact JSD (bits) of the population distribution to the prior per iteration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    pos = jsd > 0
    ax.semilogy(np.asarray(iterations)[pos], np.asarray(jsd)[pos], "o-", ms=3)
    _iteration_axis(ax)
    ax.set_ylabel("JSD to the prior (bits)")
    fig.tight_layout()
    return png_bytes(fig)


def fig_moments(iterations: np.ndarray, sim_mean: np.ndarray, sim_var: np.ndarray,
                ref_mean: np.ndarray, ref_var: np.ndarray, ref_label: str) -> bytes:
    """Simulated mean and variance per iteration against a reference (closed form)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, s, r, name in ((axes[0], sim_mean, ref_mean, "mean"),
                           (axes[1], sim_var, ref_var, "variance")):
        ax.plot(iterations, s, "o", ms=4, label="simulation")
        ax.plot(iterations, r, "C3-", label=ref_label)
        _iteration_axis(ax)
        ax.set_title(name)
    axes[0].legend(frameon=False)
    return png_bytes(fig)


# -- HTML ----------------------------------------------------------------------------------


@dataclass
class Section:
    """A report section. ``figures`` are (caption, png); ``tables`` are shown, ``folded``
    tables sit in a closed <details>; ``html`` is trusted markup built by this module's
    helpers (e.g. :func:`key_value_table`)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    preformatted: str | None = None
    items: list[str] = field(default_factory=list)
    folded: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    html: str | None = None
    warnings: list[str] = field(default_factory=list)


#: this report's rules on top of serialrepro.html.BASE_CSS
_CSS = """
h2 { font-size: 1.25em; margin-top: 1.6em; } h3 { font-size: 1em; }
.scroll{overflow-x:auto;max-width:100%}
table { margin: .6em 0; font-size: .88em; }
td, th { padding: .25em .6em; }
table.kv td:first-child { text-align: left; color: #444; } table.kv td { text-align: left; }
figure { margin: 1em 0; } figure img { height: auto; display: block; }
figcaption { font-size: .9em; color: #444; max-width: 60em; }
pre { max-height: 30em; }
.warn { background: #fff4e0; border-left: 4px solid #e69a00; padding: .4em .8em; margin: .4em 0; }
.ok { color: #186a1e; font-weight: 600; } .bad { color: #b00020; font-weight: 600; }
summary { color: #333; }
"""


def _table_html(df: pd.DataFrame) -> str:
    return ("<div class='scroll'>" + df.to_html(
        index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="—", escape=True)
        + "</div>")


def key_value_table(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (label, value) strings, escaped."""
    esc = escape
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<div class='scroll'><table class='kv'>{body}</table></div>"


def html_report(title: str, sections: list[Section]) -> str:
    """A self-contained page (:func:`serialrepro.html.page`): inline CSS, base64 PNGs, no
    links."""
    esc = escape
    out = [f"<h1>{esc(title)}</h1>",
           f"<p>serialrepro {esc(__version__)} · Python {esc(platform.python_version())}</p>"]
    for s in sections:
        out.append(f"<h2>{esc(s.title)}</h2>")
        out += [f"<div class='warn'>{esc(w)}</div>" for w in s.warnings]
        out += [f"<p>{esc(p)}</p>" for p in s.paragraphs]
        if s.html:
            out.append(s.html)
        if s.items:
            out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in s.items) + "</ul>")
        for cap, png in s.figures:
            out.append(f"<figure>{png_img(png, cap[:80])}<figcaption>{esc(cap)}</figcaption>"
                       "</figure>")
        for cap, df in s.tables:
            out.append(f"<h3>{esc(cap)}</h3>{_table_html(df)}")
        for cap, df in s.folded:
            out.append(f"<details><summary>{esc(cap)} ({len(df)} rows)</summary>"
                       f"{_table_html(df)}</details>")
        if s.preformatted:
            out.append(f"<details><summary>raw</summary><pre>{esc(s.preformatted)}</pre>"
                       "</details>")
    return page(title, out, css=_CSS, width="1000px")
