"""Figures of a grid simulation: the forward row above the reverse row (paper, Fig. 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serialrepro.grid.process import SimulationResult


def _pick(T: int, max_columns: int) -> list[int]:
    """Up to ``max_columns`` of the steps 1..T, evenly spread, always the first and last."""
    if T <= max_columns:
        return list(range(1, T + 1))
    return sorted({int(round(x)) for x in np.linspace(1, T, max_columns)})


def _as_image(p) -> np.ndarray:
    a = p.detach().cpu().numpy()
    if a.ndim == 3:  # 3-D grids: show the projection on the first two axes
        a = a.sum(axis=2)
    return a


def plot_process(result: SimulationResult, path: str | Path | None = None, *,
                 max_columns: int = 10, title: str | None = None):
    """Forward marginals q_1…q_T (top) above the reverse trajectory r_T…r_0 (bottom).

    2-D grids are drawn as images (x right, y up; 3-D grids as their projection on the
    first two axes), 1-D grids as line plots with the data in grey. Each image panel is
    scaled to its own maximum (a panel near uniform would otherwise be one flat colour):
    the colour bar reads "mass ÷ the panel's maximum", and each title gives that maximum
    as a multiple of the uniform mass 1/M. With more than ``max_columns`` steps an evenly
    spread subset is shown. Saves to ``path`` if given and returns the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = result.T
    steps = _pick(T, max_columns)
    reverse_steps = [T] + [t - 1 for t in reversed(steps)]
    reverse_steps = list(dict.fromkeys(reverse_steps))  # keep order, drop repeats
    ncols = max(len(steps), len(reverse_steps))
    one_d = result.space.dims == 1
    fig, axes = plt.subplots(2, ncols, figsize=(1.9 * ncols + (0 if one_d else 1.1),
                                                5.0 if not one_d else 4.0), squeeze=False)
    extent = (-0.5, 0.5, -0.5, 0.5)
    data = _as_image(result.data)
    x = result.space.coords().numpy()
    uniform = 1.0 / data.size
    image = None

    def draw(ax, p, label):
        nonlocal image
        a = _as_image(p)
        if one_d:
            ax.plot(x, data, color="0.75", lw=1)
            ax.plot(x, a, color="C0", lw=1.2)
            ax.set_yticks([])
        else:
            peak = max(float(a.max()), 1e-300)
            image = ax.imshow(a.T / peak, origin="lower", extent=extent, cmap="magma", vmin=0,
                              vmax=1, interpolation="nearest")
            ax.set_yticks([])
            label = f"{label}\nmax {peak / uniform:.3g}/M"
        ax.set_xticks([])
        ax.set_title(label, fontsize=14, linespacing=1.1)

    for j in range(ncols):
        for row in range(2):
            axes[row, j].axis("off")
    for j, t in enumerate(steps):
        axes[0, j].axis("on")
        draw(axes[0, j], result.marginals[t], f"$q_{{{t}}}$ σ={result.sigmas[t - 1]:.2g}")
    for j, t in enumerate(reverse_steps):
        axes[1, j].axis("on")
        draw(axes[1, j], result.reverse[t], f"$r_{{{t}}}$")
    axes[0, 0].set_ylabel("forward", fontsize=14)
    axes[1, 0].set_ylabel("reverse", fontsize=14)
    fig.suptitle(title or (
        f"{result.family}, {result.step} step, T={T}, {result.space.label}: "
        f"KL(r_0‖data) = {result.kl_bits:.3f} bits"), fontsize=15)
    # a fixed layout in inches (tight_layout would measure every title text per figure)
    w, h = fig.get_figwidth(), fig.get_figheight()
    right = 1.1 if image is not None else 0.1
    title_h = 0.62 if image is not None else 0.35  # two-line panel titles for images
    fig.subplots_adjust(left=0.35 / w, right=1 - right / w, bottom=0.08 / h,
                        top=1 - (0.35 + title_h) / h, wspace=0.08, hspace=title_h / (
                            (h - 0.43 - 2 * title_h) / 2))
    if image is not None:
        cax = fig.add_axes((1 - 0.95 / w, 0.12, 0.16 / w, 0.7))
        bar = fig.colorbar(image, cax=cax, ticks=[0, 0.5, 1])
        bar.ax.tick_params(labelsize=12)
        bar.set_label("mass ÷ panel max", fontsize=12)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
