"""Figures and the self-contained HTML report of ``chains simulate`` / ``chains analyze``.

Every image is a PNG embedded as base64 (no external files, no URLs; the PNG
"Software" tag, which carries a URL, is dropped), tables are inline HTML, and the page
is written atomically. Matplotlib is imported here, inside the functions' module, which
the CLI imports only when a command runs.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from serialrepro import __version__


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


# -- figures -------------------------------------------------------------------------------


def fig_convergence(conv: pd.DataFrame, model: pd.DataFrame | None = None,
                    title: str = "convergence") -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    metric = str(conv["metric"].iloc[0])
    for df, label, color in ((conv, "data", "C0"), (model, "fitted model", "C3")):
        if df is None:
            continue
        ax.plot(df["iteration"], df["distance"], "o-", color=color, label=label, ms=3)
        if np.isfinite(df["lower"]).any():
            ax.fill_between(df["iteration"], df["lower"], df["upper"], color=color, alpha=0.2,
                            lw=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("JSD to late iterations (bits)" if metric == "jsd_bits"
                  else "energy distance to late iterations")
    ax.set_title(title)
    ax.legend(frameon=False)
    return png_bytes(fig)


def fig_prior_1d(late: np.ndarray, grid: np.ndarray, density: np.ndarray, xlabel: str,
                 extra: list[tuple[np.ndarray, np.ndarray, str]] | None = None,
                 title: str = "stationary prior (late iterations)",
                 labels: tuple[str, str] = ("late iterations", "KDE")) -> bytes:
    """Histogram of ``late`` values with density curves (grid, density) in data units."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(late, bins=40, density=True, color="0.8", label=labels[0])
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
        ax.imshow(density.T, origin="lower", extent=extent, cmap="viridis", aspect="auto")
    ax.scatter(late[:, 0], late[:, 1], s=3, c="w" if density is not None else "C0", alpha=0.5)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    return png_bytes(fig)


def fig_trajectories(iterations: np.ndarray, panels: list[tuple[str, np.ndarray]],
                     ylabel: str, max_chains: int = 40) -> bytes:
    """1-D chains: values [C, I] per panel, a few chains and the 10/50/90 % quantiles."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), sharey=True,
                             squeeze=False)
    for ax, (title, v) in zip(axes[0], panels, strict=True):
        for row in v[:max_chains]:
            ax.plot(iterations, row, color="0.6", lw=0.6, alpha=0.6)
        q = np.nanpercentile(v, [10, 50, 90], axis=0)
        ax.plot(iterations, q[1], "C3", lw=2, label="median")
        ax.fill_between(iterations, q[0], q[2], color="C3", alpha=0.15, label="10–90 %")
        ax.set_title(title)
        ax.set_xlabel("iteration")
    axes[0, 0].set_ylabel(ylabel)
    axes[0, 0].legend(frameon=False)
    return png_bytes(fig)


def fig_scatter_2d(panels: list[tuple[str, np.ndarray]], labels: tuple[str, str]) -> bytes:
    """2-D point clouds [N, 2], one panel each."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (title, v) in zip(axes[0], panels, strict=True):
        ax.scatter(v[:, 0], v[:, 1], s=4, alpha=0.6)
        ax.set_title(title)
        ax.set_xlabel(labels[0])
    axes[0, 0].set_ylabel(labels[1])
    return png_bytes(fig)


def fig_ar1(x: np.ndarray, x_next: np.ndarray, slope: float, intercept: float,
            label: str, circular: bool = False) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(x, x_next, s=3, alpha=0.4)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    g = np.linspace(lo, hi, 50)
    ax.plot(g, g, "k:", lw=1, label="identity")
    if not circular:
        ax.plot(g, intercept + slope * g, "C3", lw=2, label=f"AR(1): λ={slope:.3f}")
    else:
        ax.plot(g, intercept + slope * (g - intercept), "C3", lw=2,
                label=f"wrapped AR(1): λ={slope:.3f}")
    ax.set_xlabel(f"{label} at iteration n")
    ax.set_ylabel(f"{label} at iteration n + 1")
    ax.legend(frameon=False)
    return png_bytes(fig)


def fig_profile(profile: pd.DataFrame, sigma: float, col: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.semilogx(profile[col], profile["loglik_cells"], "o-", ms=3)
    ax.axvline(sigma, color="C3", ls="--", label=f"ML σ = {sigma:.4g}")
    ax.set_xlabel(f"σ ({'data units' if col == 'sigma_data' else 'unit coordinates'})")
    ax.set_ylabel("log-likelihood of transitions")
    ax.legend(frameon=False)
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
        ax.set_xlabel("iteration")
        ax.set_title(name)
    axes[0].legend(frameon=False)
    return png_bytes(fig)


# -- HTML ----------------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)
    preformatted: str | None = None
    items: list[str] = field(default_factory=list)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}figure{margin:1em 0}figcaption{font-size:.9em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
"""


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, float_format=lambda v: f"{v:.6g}", na_rep="—",
                      escape=True)


def html_report(title: str, sections: list[Section]) -> str:
    """A self-contained page: inline CSS, base64 PNGs, no links."""
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{esc(title)}</h1>",
           f"<p>serialrepro {esc(__version__)} · Python {esc(platform.python_version())}</p>"]
    for s in sections:
        out.append(f"<h2>{esc(s.title)}</h2>")
        out += [f"<p>{esc(p)}</p>" for p in s.paragraphs]
        if s.items:
            out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in s.items) + "</ul>")
        for cap, df in s.tables:
            out.append(f"<h3>{esc(cap)}</h3>{_table_html(df)}")
        for cap, png in s.figures:
            b64 = base64.b64encode(png).decode("ascii")
            out.append(f"<figure><img alt='{esc(cap)}' src='data:image/png;base64,{b64}'>"
                       f"<figcaption>{esc(cap)}</figcaption></figure>")
        if s.preformatted:
            out.append(f"<pre>{esc(s.preformatted)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
