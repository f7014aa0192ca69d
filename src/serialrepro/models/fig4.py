"""The paper's Figure 4: FID against the number of sampling steps of a trained model.

Marjieh et al. (2023) train a DDPM on MNIST (T = 1000) and sample it with strides
k = 1..20, i.e. ⌊1000/k⌋ steps; FID worsens as the steps fall (docs/design.md §2 lists their
numbers). :func:`run_fig4` trains one T = 1000 model per (data set, family), samples every
stride with each of the family's samplers, scores each sample set with FID/KID against held-out real
images (features of a classifier trained locally, cached in the run directory) and writes a
table (Parquet + CSV) and a PNG figure. A sampler entry ``"<sampler>-<respacing>"`` (e.g.
``ddpm-naive``) runs that sampler on the same model with another respacing of the strided
schedule (:mod:`serialrepro.models.schedules`): ``ddpm-naive`` strides the T-step DDPM
sampler without recomputing the betas, the hypothesis for the paper's sharp rise. Every
cell (one stride of one model) is written atomically as JSON, models checkpoint while
training, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from serialrepro import atomic
from serialrepro.data import load_dataset
from serialrepro.devices import resolve_device
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.metrics.fid import FIDEvaluator
from serialrepro.metrics.trends import fid_trend_sentence, fid_trends
from serialrepro.models.schedules import check_respacing
from serialrepro.models.training import (
    TrainConfig,
    sample_from,
    train,
)
from serialrepro.store import CellStore

#: Generated samples kept per cell (in the cell's .npz beside its JSON) for the sample-grid figure.
GRID_SAMPLES = 64

#: The paper's Figure 4 (MNIST, Inception FID): steps -> FID (their 1000-step run excluded).
PAPER_FID = {500: 37.5, 333: 42.6, 250: 32.6, 200: 42.7, 166: 61.3, 142: 92.0, 125: 123.9,
             111: 127.2, 100: 110.8, 90: 122.2, 83: 160.6, 76: 165.2, 71: 179.0, 66: 221.9,
             62: 192.9, 58: 166.7, 55: 209.3, 52: 232.4, 50: 227.0}


@dataclass(frozen=True)
class Fig4Preset:
    """One configuration of the experiment (what a named preset expands to)."""

    name: str
    datasets: tuple[str, ...]
    #: family -> the samplers run on its model ("ddpm", or "ddpm-naive": sampler-respacing)
    samplers: dict[str, tuple[str, ...]]
    strides: tuple[int, ...]
    train_steps: int
    batch_size: int = 128
    lr: float = 1e-3
    num_timesteps: int = 1000
    schedule: str = "linear"
    denoiser: str = "unet"
    denoiser_options: dict = field(default_factory=dict)
    n_samples: int | None = None  # None: as many as the held-out real images
    classifier_steps: int = 600
    sample_batch: int = 1000
    data_dir: str | None = None
    #: intra-op threads on CPU (None: torch's default). Small convolutions on a shared
    #: 2-core machine ran up to 5x slower with 2 threads than with 1 (OpenMP barrier waits).
    cpu_threads: int | None = None


PRESETS: dict[str, Fig4Preset] = {
    "quick": Fig4Preset(
        "quick", ("digits",), {"gaussian": ("ddpm", "serial")}, strides=(10, 20),
        train_steps=150,
        denoiser_options={"base": 8, "channel_mults": (1, 2)}, n_samples=128,
        classifier_steps=60, cpu_threads=1),
    "digits-cpu": Fig4Preset(
        "digits-cpu", ("digits",),
        {"gaussian": ("ddpm", "ddpm-naive", "ddim", "x0-renoise", "serial"),
         "blur": ("cold",)},
        strides=tuple(range(1, 21)), train_steps=2000,
        denoiser_options={"base": 16, "channel_mults": (1, 2)}, lr=2e-3, cpu_threads=1),
    "mnist-gpu": Fig4Preset(
        "mnist-gpu", ("mnist",),
        {"gaussian": ("ddpm", "ddim", "x0-renoise", "serial"), "laplace": ("ddpm",),
         "blur": ("cold",), "resample-uniform": ("cold",)},
        strides=tuple(range(1, 21)), train_steps=60000, lr=2e-4,
        denoiser_options={"base": 64, "channel_mults": (1, 2, 2)}, n_samples=10000,
        classifier_steps=3000, sample_batch=2500, data_dir="data/mnist"),
}


@dataclass
class Fig4Result:
    """The experiment's outputs: the tidy table, the figure's path and notes (warnings)."""

    table: pd.DataFrame
    figure: Path
    notes: str
    #: sample grids at the fewest and the most steps of every curve (None: no samples kept)
    samples: Path | None = None


def get_preset(name: str) -> Fig4Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_name("fig4 preset", name, PRESETS) from None


def sampler_variant(name: str) -> tuple[str, str]:
    """(sampler, respacing) of a preset's sampler entry: a sampler's name ("ddpm",
    "x0-renoise") or "<sampler>-<respacing>" ("ddpm-naive")."""
    from serialrepro.models.training import sampler_names

    if name in sampler_names():
        return name, "recompute"
    sampler, sep, respacing = name.rpartition("-")
    return (sampler, check_respacing(respacing)) if sep else (name, "recompute")


def _spearman(x: list[float], y: list[float]) -> float:
    rx, ry = pd.Series(x).rank(), pd.Series(y).rank()
    return float(rx.corr(ry))


def run_fig4(out_dir: Path, preset: str = "digits-cpu", seed: int = 0, progress: bool = True,
             data_dir: str | Path | None = None, device: str | torch.device | None = None,
             diffusers_model: str | Path | None = None, fid_features: str = "classifier",
             inception_weights: str | Path | None = None) -> Fig4Result:
    """Run (or resume) Figure 4 under ``preset`` in ``out_dir``; see the module docstring.

    ``diffusers_model``: a saved diffusers UNet2DModel (:mod:`serialrepro.models.external`)
    sampled instead of training ours: the preset's variance-preserving samplers run on it
    (the other families need a model trained with their noise). ``fid_features``:
    ``classifier`` (the local classifier) or ``inception`` (the standard Inception-v3
    features from the local file ``inception_weights``).
    """
    from serialrepro.metrics.fid import check_fid_features

    cfg = get_preset(preset)
    device = resolve_device(device)
    check_fid_features(fid_features, inception_weights)
    external = None
    if diffusers_model is not None:
        from serialrepro.models.external import load_diffusers_model

        external = load_diffusers_model(diffusers_model, device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        return _run(cfg, Path(out_dir), seed, progress, data_dir, device, external,
                    fid_features, inception_weights)
    finally:
        torch.set_num_threads(threads)


def _cells_folder(fid_features: str) -> str:
    """Cells scored with other features are other cells: ``cells`` (the local classifier,
    as before the option existed) or ``cells-inception``."""
    return "cells" if fid_features == "classifier" else f"cells-{fid_features}"


def _run(cfg: Fig4Preset, out_dir: Path, seed: int, progress: bool,
         data_dir: str | Path | None, device: torch.device, external=None,
         fid_features: str = "classifier", inception_weights=None) -> Fig4Result:
    from serialrepro.metrics.fid import fid_feature_network
    from serialrepro.models.noise import TENSOR_FAMILIES

    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir if data_dir is not None else cfg.data_dir
    # the curves to run: (family, entries); a diffusers model is a VP (gaussian) model
    plan = {fam: v for fam, v in cfg.samplers.items()
            if external is None or TENSOR_FAMILIES[fam].variance_preserving}
    if external is not None:
        plan = dict(list(plan.items())[:1])  # one model: the first VP family's samplers
    num_timesteps = cfg.num_timesteps if external is None else external.num_timesteps
    atomic.write_text(out_dir / "config.json", json.dumps({
        "experiment": "fig4", "preset": asdict(cfg), "seed": seed, "device": str(device),
        "fid_features": fid_features,
        "inception_weights": None if inception_weights is None else str(inception_weights),
        "diffusers_model": None if external is None else str(external.files.folder),
        "diffusers_model_sha256": None if external is None else external.fingerprint,
        "torch": torch.__version__, "python": platform.python_version(),
    }, indent=2, default=list))

    rows: list[dict] = []
    warnings_seen: list[str] = []
    floors: dict[str, float] = {}
    label = ""
    with _Fig4Progress(cfg, progress, plan, num_timesteps, external is None) as bar:
        for dataset in cfg.datasets:
            data = load_dataset(dataset, seed=seed, data_dir=data_dir)
            if data.train_labels is None or not data.is_image:
                raise UserInputError(f"fig4 needs a labelled image data set; {dataset!r} is not")
            if external is not None and tuple(external.data_shape) != tuple(data.data_shape):
                raise UserInputError(f"--diffusers-model draws images of shape "
                                     f"{external.data_shape}; the preset's data set "
                                     f"{dataset!r} has {data.data_shape}")
            ds_dir = out_dir / dataset
            bar.doing(f"{dataset}: feature network for FID ({fid_features})")
            feature = fid_feature_network(fid_features, inception_weights, ds_dir, data,
                                          seed=seed, device=device,
                                          steps=cfg.classifier_steps)
            evaluator = FIDEvaluator(feature, data.test, seed=seed)
            label = evaluator.label
            n_samples = cfg.n_samples or int(data.test.shape[0])
            bar.doing(f"{dataset}: noise floor (real vs real FID)")
            floor_key = "floor" if fid_features == "classifier" else f"floor-{fid_features}"
            floors[dataset] = _noise_floor(CellStore(ds_dir, check=floor_problem), floor_key,
                                           evaluator, data.train, n_samples, seed)
            for family, samplers in plan.items():
                t0 = time.perf_counter()
                if external is None:
                    model_name, model_dir = "serialrepro", ds_dir / family
                    trained, train_s = _train_model(cfg, dataset, family, seed, data,
                                                    data_dir, ds_dir / family / "model",
                                                    device, progress, bar)
                    train_steps = trained.step
                else:
                    # the cells of a foreign model live under its fingerprint, so another
                    # model in the same folder is never mistaken for this one
                    trained, train_s, train_steps = external, 0.0, 0
                    model_name = f"diffusers:{external.files.folder.name}"
                    model_dir = ds_dir / f"diffusers-{external.fingerprint[:12]}"
                    bar.trained(0, 0.0)
                # one resumable cell cache (serialrepro.store): "<variant>-k<stride>.json"
                # with the sample grid in the matching .npz; a cell scored with other
                # features lives in another folder
                store = CellStore(model_dir / _cells_folder(fid_features), check=cell_problem)
                for variant, stride in ((s, k) for s in samplers for k in cfg.strides):
                    # the key is the entry's name: "ddpm-k01" (recomputed respacing, as
                    # before variants existed), "ddpm-naive-k01", "x0-renoise-k01"
                    key = f"{variant}-k{stride:02d}"
                    sampler, respacing = sampler_variant(variant)
                    steps = num_timesteps // stride
                    bar.doing(f"{dataset} · {family} · {variant} · k={stride} ({steps} steps)")
                    identity = {"dataset": dataset, "family": family, "sampler": variant,
                                "stride": stride, "steps": steps, "model": model_name,
                                "fid_features": fid_features}
                    # None: never ran, unreadable, or another cell's record (recomputed)
                    row = _read_cell(store, key, identity)
                    fresh = row is None
                    t0 = time.perf_counter()
                    if fresh:
                        # the same seed at every stride (common random numbers: every
                        # stride starts from the same x_T), so differences between strides
                        # are not sampling noise of the starting points
                        samples = sample_from(trained, n_samples, sampler=sampler, stride=stride,
                                              seed=seed, respace=respacing,
                                              batch_size=cfg.sample_batch, device=device)
                        sample_s = time.perf_counter() - t0
                        res = evaluator(samples)
                        row = {
                            **identity,
                            "fid": res.fid, "kid": res.kid, "kid_std": res.kid_std,
                            "n_samples": res.n_fake, "n_real": res.n_real,
                            "train_steps": train_steps, "train_seconds": train_s,
                            "sample_seconds": sample_s, "warning": res.warning or "",
                        }
                        grid = samples[:GRID_SAMPLES].detach().cpu().numpy()
                        store.write(key, row, {"samples": grid})
                    row = {k: v for k, v in row.items() if k not in STORE_FIELDS}
                    if row["warning"] and row["warning"] not in warnings_seen:
                        warnings_seen.append(row["warning"])
                    cell = store.json_path(key)
                    rows.append({**row, "cell": str(cell.relative_to(out_dir))})
                    bar.sampled(steps, time.perf_counter() - t0 if fresh else None)

    table = pd.DataFrame(rows).sort_values(["dataset", "family", "sampler", "steps"],
                                           ignore_index=True)
    atomic.write_table(table, out_dir / "fig4.parquet")
    atomic.write_table(table, out_dir / "fig4.csv")
    notes = _notes(table, warnings_seen, floors, label)
    if external is not None:
        skipped = [f for f in cfg.samplers if f not in plan]
        notes += (f"\nmodel: {external.describe()}; the preset's {', '.join(plan)} curves ran "
                  "on it" + (f", not its {', '.join(skipped)} curves (they need a model "
                             "trained with that noise)" if skipped else ""))
    atomic.write_text(out_dir / "notes.txt", notes + "\n")
    figure = _plot(table, out_dir / "fig4.png", cfg, floors, label)
    samples = _plot_samples(table, out_dir, out_dir / "fig4_samples.png")
    return Fig4Result(table, figure, notes, samples)


def _train_model(cfg: Fig4Preset, dataset: str, family: str, seed: int, data,
                 data_dir, model_dir: Path, device, progress: bool, bar):
    """Train (or resume) our model of one (data set, family); (model, seconds)."""
    tc = TrainConfig(
        dataset=dataset, family=family, schedule=cfg.schedule,
        num_timesteps=cfg.num_timesteps, denoiser=cfg.denoiser,
        # lists, as a run config holds them (JSON has no tuples)
        denoiser_options={k: list(v) if isinstance(v, tuple) else v
                          for k, v in cfg.denoiser_options.items()},
        steps=cfg.train_steps,
        batch_size=cfg.batch_size, lr=cfg.lr, seed=seed,
        checkpoint_every=max(1, cfg.train_steps // 10),
        data_dir=None if data_dir is None else str(data_dir))
    t0 = time.perf_counter()
    bar.doing(f"{dataset} · {family}: training {cfg.train_steps} steps")
    done_before = _trained_steps(model_dir)
    trained = train(tc, model_dir, device=device, progress=progress, data=data)
    train_s = time.perf_counter() - t0
    bar.trained(trained.step - done_before, train_s)
    return trained, train_s


#: the numbers every finished Figure 4 cell holds
CELL_NUMBERS = ("stride", "steps", "fid", "kid", "kid_std", "n_samples")


def _finite_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


#: bookkeeping fields the cell store adds to a record (not columns of the table)
STORE_FIELDS = ("key", "checksum", "arrays_sha256", "undefined")


def cell_problem(record: dict) -> str | None:
    """Why a stored Figure 4 cell cannot be reused (a number that is missing, text, NaN or
    a bool; a warning that is not text), or None."""
    bad = [k for k in CELL_NUMBERS if not _finite_number(record.get(k))]
    if bad:
        return f"has no finite {', '.join(bad)}"
    return None if isinstance(record.get("warning", ""), str) else "has a warning that is not text"


def _read_cell(store: CellStore, key: str, identity: dict | None = None) -> dict | None:
    """A finished cell's row, or None when there is none or it cannot be trusted (torn,
    edited, failing :func:`cell_problem`, or naming another cell than ``identity``: data
    set, family, sampler, stride, steps, model, features): such a cell is computed again,
    never reused."""
    row = store.read(key)
    if row is None:
        return None
    if identity is not None and any(row.get(k) != v for k, v in identity.items()):
        return None
    return row


def floor_problem(record: dict) -> str | None:
    """Why a cached noise floor cannot be reused, or None."""
    return None if _finite_number(record.get("fid")) else "has no finite fid"


def _trained_steps(model_dir: Path) -> int:
    """Training steps already in ``model_dir``'s checkpoint (0 without one)."""
    from serialrepro.models.training import CHECKPOINT_FILE

    ck = model_dir / CHECKPOINT_FILE
    if not ck.exists():
        return 0
    from serialrepro.loaders import load_checkpoint

    state = load_checkpoint(ck, what="Figure 4 checkpoint")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise UserInputError(f"Figure 4 checkpoint {str(ck)!r} has no training step; delete "
                             "it to train again")
    return state["step"]


class _Fig4Progress:
    """One rich bar for the whole Figure 4 run: cells done of all, what is running now
    (data set · family · sampler · stride), and an ETA from measured rates: sampling
    seconds per network step over the cells computed in this run, and training seconds
    per step, applied to the sampling steps and training steps still to do (a bar that
    counted cells would swing, as a stride-1 cell costs 20 times a stride-20 one)."""

    def __init__(self, cfg: Fig4Preset, enabled: bool,
                 plan: dict[str, tuple[str, ...]] | None = None,
                 num_timesteps: int | None = None, trains: bool = True):
        plan = cfg.samplers if plan is None else plan
        num_timesteps = num_timesteps or cfg.num_timesteps
        self.enabled = enabled
        self.cells = len(cfg.datasets) * sum(map(len, plan.values())) * len(cfg.strides)
        per_model = sum(num_timesteps // k for k in cfg.strides)
        self.sample_left = sum(per_model * len(v) for v in plan.values()) * len(cfg.datasets)
        self._train_steps = cfg.train_steps if trains else 0
        self.train_left = self._train_steps * len(plan) * len(cfg.datasets)
        self.sample_rate: list[float] = [0.0, 0.0]  # network steps, seconds (fresh cells)
        self.train_rate: list[float] = [0.0, 0.0]   # training steps, seconds

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("[bold]Figure 4[/bold]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("cells · ETA {task.fields[eta]} · {task.fields[what]}"),
            disable=not self.enabled, transient=False)
        self._progress.__enter__()
        self._task = self._progress.add_task("fig4", total=self.cells, what="starting",
                                             eta="measuring…")
        return self

    def __exit__(self, *exc):
        self._progress.update(self._task, what="done", eta="0:00")
        return self._progress.__exit__(*exc)

    def doing(self, what: str) -> None:
        self._progress.update(self._task, what=what)

    def trained(self, steps: int, seconds: float) -> None:
        if steps > 0:
            self.train_rate[0] += steps
            self.train_rate[1] += seconds
        self.train_left = max(0, self.train_left - self._train_steps)
        self._progress.update(self._task, eta=self._eta())

    def sampled(self, steps: int, seconds: float | None) -> None:
        if seconds is not None:
            self.sample_rate[0] += steps
            self.sample_rate[1] += seconds
        self.sample_left -= steps
        self._progress.update(self._task, advance=1, eta=self._eta())

    def _eta(self) -> str:
        secs = 0.0
        for left, (n, t) in ((self.sample_left, self.sample_rate),
                             (self.train_left, self.train_rate)):
            if left > 0:
                if n <= 0:
                    return "measuring…"
                secs += left * t / n
        m, sec = divmod(int(round(secs)), 60)
        return f"{m}:{sec:02d}"


def tile_images(x: torch.Tensor, gap: int = 1) -> torch.Tensor:
    """The first ⌊√n⌋² images of ``x`` (n, c, h, w), values in [−1, 1], as one (H, W, c)
    image in [0, 1] with ``gap`` pixels of white between tiles (touching tiles read as
    stripes)."""
    n = math.isqrt(x.shape[0])
    c, h, w = x.shape[1:]
    tiles = ((x[: n * n].float() + 1) / 2).clamp(0, 1)
    tiles = torch.nn.functional.pad(tiles, (0, gap, 0, gap), value=1.0)  # white right/below
    grid = tiles.reshape(n, n, c, h + gap, w + gap).permute(0, 3, 1, 4, 2)
    return grid.reshape(n * (h + gap), n * (w + gap), c)[: n * (h + gap) - gap,
                                                          : n * (w + gap) - gap]


def _plot_samples(table: pd.DataFrame, out_dir: Path, path: Path) -> Path | None:
    """Sample grids at the most and the fewest steps of every curve (from the cells' arrays):
    one row per curve, two columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for (_ds, fam, smp), g in table.groupby(["dataset", "family", "sampler"]):
        pair = []
        for row in (g.nlargest(1, "steps").iloc[0], g.nsmallest(1, "steps").iloc[0]):
            f = out_dir / row["cell"]
            arrays = CellStore(f.parent, check=cell_problem).read_arrays(f.stem)
            x = None if arrays is None else arrays.get("samples")
            if x is None or x.ndim != 4:
                continue  # missing, tampered or not a grid of images: drawn without it
            pair.append((f"{int(row['steps'])} steps: FID {row['fid']:.3g}", torch.from_numpy(x)))
        if pair:
            rows.append((f"{fam} / {smp}", pair))
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 2, figsize=(5.6, 2.9 * len(rows)), squeeze=False)
    for (label, pair), ax_row in zip(rows, axes, strict=True):
        for ax in ax_row:
            ax.axis("off")
        for ax, (title, x) in zip(ax_row, pair, strict=False):
            ax.imshow(tile_images(x).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{label}\n{title}", fontsize=9)
    fig.tight_layout()
    return atomic.save_figure(fig, path, dpi=120)


def _noise_floor(store: CellStore, key: str, evaluator: FIDEvaluator, train: torch.Tensor,
                 n: int, seed: int) -> float:
    """FID of ``n`` real training images against the held-out set: the best a model can
    score at this sample count (FID is biased upwards at small n), cached as ``key`` in
    ``store``."""
    cached = store.read(key)
    if cached is not None and cached.get("n") == n:
        return float(cached["fid"])
    idx = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    res = evaluator(train[idx])
    store.write(key, {"fid": res.fid, "kid": res.kid, "n": res.n_fake})
    return res.fid


def _notes(table: pd.DataFrame, warnings_seen: list[str], floors: dict[str, float],
           features: str = "") -> str:
    lines = [f"{ds}: noise floor (real training images vs held-out, same n) FID {f:.2f}"
             for ds, f in floors.items()]
    for t in fid_trends(table):
        lines.append(f"{t['curve']}: {fid_trend_sentence(t)}")
    for (ds, fam), g in table.groupby(["dataset", "family"]):
        naive, ddpm = g[g["sampler"] == "ddpm-naive"], g[g["sampler"] == "ddpm"]
        if naive.empty:
            continue
        line = (f"{ds}/{fam}/ddpm-naive strides the T-step DDPM sampler without recomputing"
                " the betas (each step removes one original step's noise, not k steps')")
        both = naive.merge(ddpm, on="steps", suffixes=("_naive", ""))
        if not both.empty:
            few = both.nsmallest(1, "steps").iloc[0]
            line += (f"; at {int(few['steps'])} steps its FID is {few['fid_naive']:.2f} against"
                     f" {few['fid']:.2f} with recomputed betas")
            paper = both[both["steps"].isin(list(PAPER_FID))]
            if len(paper) >= 3:
                ref = [PAPER_FID[int(s)] for s in paper["steps"]]
                line += (f"; rank correlation with the paper's FIDs at its {len(paper)} step"
                         f" counts: {_spearman(paper['fid_naive'].tolist(), ref):+.2f} naive,"
                         f" {_spearman(paper['fid'].tolist(), ref):+.2f} recomputed")
        lines.append(line + ".")
    if (table["sampler"] == "x0-renoise").any():
        lines.append(
            "The x0-renoise curve is cold diffusion's Algorithm 1: it re-noises"
            " x̂_0 = E[x_0 | x_t] (the MSE-trained net's posterior mean), i.e. each step is a"
            " posterior-mean agent (not the paper's serial-reproduction step); such a chain"
            " shrinks the variance instead of keeping the prior (docs/design.md §1): more steps"
            " mean more shrinkage, so this sampler can get worse with more steps.")
    lines.extend(serial_step_notes(table))
    if features.startswith("Inception"):
        lines.append("FIDs use the standard Inception-v3 features: on MNIST they are on the"
                     " paper's scale (its sample counts and preprocessing may still differ).")
    else:
        lines.append("Absolute FIDs use a locally trained classifier's features, not Inception:"
                     " compare trends with the paper, not values.")
    lines.extend(f"warning: {w}" for w in warnings_seen)
    return "\n".join(lines)


def serial_step_notes(table: pd.DataFrame) -> list[str]:
    """Sentences on the paper's serial-reproduction step (``serial``) against the grid's
    and against DDPM on the same model, computed from ``table``.

    On the grid (docs/design.md §2, Figure 3 golden values) the exact serial step
    improves with more steps: KL(r_0 ‖ data) falls as T rises, then levels off. Here
    "improves with more steps" is :func:`~serialrepro.metrics.trends.fid_trends`' verdict
    (Spearman ρ(steps, FID) < −0.3 and FID at the fewest steps ≥ 1.25 × FID at the most), and
    "tracks DDPM" is a Spearman rank correlation > 0.3 between the two curves' FIDs over
    their shared step counts (three at least).
    """
    from serialrepro.metrics.trends import TREND_RHO

    grid = ("the grid's exact serial step improves with more steps (docs/design.md §2: its"
            " Figure 3 KL to the data falls as T rises, then levels off)")
    out = []
    trends = {t["curve"]: t for t in fid_trends(table)}
    for (ds, fam), g in table.groupby(["dataset", "family"]):
        serial = g[g["sampler"] == "serial"]
        if serial.empty:
            continue
        t = trends.get(f"{ds}/{fam}/serial")
        if t is None or "fid_many" not in t or len(serial) < 3:
            out.append(f"{ds}/{fam}/serial (the paper's serial-reproduction step): "
                       f"{len(serial)} step counts, too few to compare with the grid's.")
            continue
        if t["agrees"]:
            how = "improves with more steps, as the grid's does"
        elif t.get("weak"):
            how = "improves only slightly with more steps, less clearly than the grid's"
        else:
            how = "does not improve with more steps, unlike the grid's"
        line = (f"{ds}/{fam}/serial (the paper's serial-reproduction step: one forward step"
                f" K_t from x_t, then the step-t posterior sample) {how} (Spearman ρ(steps,"
                f" FID) = {t['rho']:+.2f}; FID {t['fid_many']:.3g} at {t['steps_many']} steps,"
                f" {t['fid_few']:.3g} at {t['steps_few']}); {grid}")
        ddpm = g[g["sampler"] == "ddpm"]
        both = serial.merge(ddpm, on="steps", suffixes=("", "_ddpm"))
        if len(both) >= 3:
            rho = _spearman(both["fid"].tolist(), both["fid_ddpm"].tolist())
            ratio = float((both["fid"] / both["fid_ddpm"]).median())
            verdict = "tracks" if rho > TREND_RHO else "does not track"
            line += (f". It {verdict} DDPM on the same model (Spearman ρ between the two"
                     f" curves over {len(both)} step counts {rho:+.2f}; its FID is"
                     f" {ratio:.3g}× DDPM's at the median step count)")
        out.append(line + ".")
    return out


def _plot(table: pd.DataFrame, path: Path, cfg: Fig4Preset, floors: dict[str, float],
          features: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (ds, fam, smp), g in table.groupby(["dataset", "family", "sampler"]):
        g = g.sort_values("steps")
        ax.plot(g["steps"], g["fid"], "o-", ms=3, label=f"{ds} {fam} ({smp})")
    for ds, f in floors.items():
        ax.axhline(f, color="black", lw=0.8, ls=":", label=f"{ds}: real vs real (noise floor)")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ticks = [s for s in (10, 20, 50, 100, 200, 500, 1000)
             if table["steps"].min() <= s <= max(table["steps"].max(), max(PAPER_FID))]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if table["fid"].max() > 20 * max(table["fid"].min(), 1e-9):
        ax.set_yscale("log")  # naive striding can be orders of magnitude worse
        from matplotlib.ticker import LogLocator

        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"sampling steps ⌊T/k⌋ (T = {cfg.num_timesteps})")
    ax.set_ylabel(f"FID ({features or 'local classifier features'})")
    ax2 = ax.twinx()
    steps = sorted(PAPER_FID)
    ax2.plot(steps, [PAPER_FID[s] for s in steps], "--", color="grey",
             label="paper, MNIST (Inception FID)")
    ax2.set_ylabel("paper FID (Inception)", color="grey")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax.set_title(f"Figure 4 ({cfg.name}): FID vs number of sampling steps")
    fig.tight_layout()
    return atomic.save_figure(fig, path, dpi=120)
