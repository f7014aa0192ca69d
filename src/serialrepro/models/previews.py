"""Pictures of what the trained-model commands make: a loss curve, a preview of samples.

- :func:`write_loss_curve`: ``loss.csv`` (step, loss, trailing mean) and ``loss.png`` in a
  run directory, written by ``serialrepro train``.
- :func:`write_sample_preview`: a PNG beside a samples ``.npz``: a grid of images with
  gaps between the tiles, or for 2-D points a scatter of the samples over the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serialrepro import atomic

LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"
#: Tiles in an image preview and the gap between them (pixels of one image).
PREVIEW_TILES = 64
TILE_GAP = 1
#: Points drawn in a 2-D preview (of the samples and of the data each).
PREVIEW_POINTS = 2000


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``min(window, i + 1)`` values at each i (cumulative sums, O(n))."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    c = np.concatenate([[0.0], np.cumsum(v)])
    i = np.arange(1, v.size + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def loss_window(n_steps: int) -> int:
    """Smoothing window of the loss curve: about 1/25 of the run, between 1 and 200 steps."""
    return int(min(200, max(1, n_steps // 25)))


def write_loss_curve(run_dir: str | Path, losses: list[float] | np.ndarray,
                     title: str = "") -> tuple[Path, Path]:
    """``loss.csv`` and ``loss.png`` of a training run (raw loss and its trailing mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    run_dir = Path(run_dir)
    loss = np.asarray(losses, dtype=np.float64)
    window = loss_window(loss.size)
    smooth = trailing_mean(loss, window)
    steps = np.arange(1, loss.size + 1)
    csv = atomic.write_table(pd.DataFrame({"step": steps, "loss": loss,
                                           f"mean_last_{window}": smooth}),
                             run_dir / LOSS_CSV)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    ax.plot(steps, loss, color="0.75", lw=0.6, label="loss per step")
    ax.plot(steps, smooth, color="C0", lw=1.6, label=f"mean of the last {window} steps")
    if loss.size and np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training loss", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=8)
    png = atomic.save_figure(fig, run_dir / LOSS_PNG, dpi=120)
    return csv, png


def image_grid(images: np.ndarray, ncols: int | None = None, gap: int = TILE_GAP,
               background: float = 1.0) -> np.ndarray:
    """Tile images [N, C, H, W] with values in [−1, 1] into one [rows·(H+gap)−gap, …] array.

    Returns values in [0, 1], shape [h, w] for one channel or [h, w, C] for three; the
    ``gap`` pixels between tiles hold ``background`` so neighbouring tiles never touch.
    """
    x = np.clip((np.asarray(images, dtype=np.float64) + 1) / 2, 0, 1)
    n, c, h, w = x.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    padded = np.full((nrows * ncols, c, h + gap, w + gap), background)
    padded[:n, :, :h, :w] = x
    out = (padded.reshape(nrows, ncols, c, h + gap, w + gap)
           .transpose(0, 3, 1, 4, 2)  # rows, y, cols, x, channel
           .reshape(nrows * (h + gap), ncols * (w + gap), c))[:-gap or None, :-gap or None]
    return out[..., 0] if c == 1 else out


def preview_path(samples_path: str | Path) -> Path:
    """Where the preview of ``samples.npz`` goes: ``samples.png`` beside it."""
    return Path(samples_path).with_suffix(".png")


def write_sample_preview(path: str | Path, samples: np.ndarray, data: np.ndarray | None = None,
                         title: str = "", seed: int = 0) -> Path:
    """An image grid (images) or a scatter of samples over ``data`` (2-D points) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(samples)
    rng = np.random.default_rng(seed)
    if x.ndim == 4:
        grid = image_grid(x[:PREVIEW_TILES])
        h, w = grid.shape[:2]
        scale = max(1.0, 480 / max(h, w))  # small images (8x8 digits) are drawn larger
        fig = plt.figure(figsize=(w * scale / 100, h * scale / 100 + 0.35))
        ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + 35)))
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        fig.suptitle(title or f"{min(len(x), PREVIEW_TILES)} of {len(x)} samples", fontsize=9,
                     y=0.995, va="top")
        return atomic.save_figure(fig, path, dpi=100)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"a preview needs images [N, C, H, W] or 2-D points [N, 2]; got "
                         f"shape {x.shape}")
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    if data is not None:
        d = np.asarray(data)
        d = d[rng.permutation(len(d))[:PREVIEW_POINTS]]
        ax.scatter(d[:, 0], d[:, 1], s=3, color="0.6", alpha=0.5, lw=0,
                   label=f"held-out data ({len(d)} shown)")
    s = x[rng.permutation(len(x))[:PREVIEW_POINTS]]
    ax.scatter(s[:, 0], s[:, 1], s=3, color="C3", alpha=0.7, lw=0,
               label=f"samples ({len(s)} of {len(x)})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(frameon=False, fontsize=8, markerscale=4, loc="upper right")
    ax.set_title(title or "samples against the data", fontsize=10)
    return atomic.save_figure(fig, path, dpi=120)
