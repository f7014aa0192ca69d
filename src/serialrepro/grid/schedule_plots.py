"""Figures of optimised schedules: the optimum against the baselines, and optima against T."""

from __future__ import annotations

from pathlib import Path


def plot_schedules(result: dict, path: str | Path | None = None, *, title: str | None = None):
    """Levels σ_t against the step t for the optimum (thick) and every baseline of
    ``result`` (the dict of :func:`~serialrepro.grid.optimize.optimize_schedule`), each
    labelled with its kl in bits. Saves to ``path`` (atomically) if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, r in result["baselines"].items():
        if r is None:
            continue
        t = range(1, len(r["sigmas"]) + 1)
        ax.plot(t, r["sigmas"], marker=".", lw=1, label=f"{name} (kl {r['kl_bits']:.4f})")
    t = range(1, len(result["sigmas"]) + 1)
    ax.plot(t, result["sigmas"], marker="o", lw=2.5, color="black",
            label=f"optimal (kl {result['kl_bits']:.4f})")
    ax.set_xlabel("step t")
    ax.set_ylabel("level σ_t")
    ax.set_title(title or f"constraint {result['constraint']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Write a matplotlib figure through :mod:`serialrepro.atomic`, format from the suffix."""
    from serialrepro.atomic import atomic_write

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
