"""``serialrepro train | sample | evaluate | fig4``: trained diffusion models under any family.

Heavy imports (torch models, matplotlib) happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from serialrepro import atomic
from serialrepro.devices import resolve_device
from serialrepro.errors import UserInputError


def train_cmd(
    run_dir: Path = typer.Option(..., "--run-dir", help="Directory for config and checkpoints."),
    dataset: str = typer.Option("two-moons", help="swiss-roll, two-moons, eight-gaussians, "
                                "checkerboard, digits, mnist, fashion-mnist."),
    family: str = typer.Option("gaussian", help="Noise family (gaussian, laplace, uniform, "
                               "student-t, fade-uniform, blur, mask)."),
    schedule: str = typer.Option("linear", help="linear or cosine."),
    timesteps: int = typer.Option(1000, help="Number of diffusion steps T."),
    prediction_type: str = typer.Option("auto", help="eps, x0 or auto (eps for VP families)."),
    denoiser: str = typer.Option("auto", help="mlp, unet or auto."),
    width: int | None = typer.Option(None, help="Hidden width (mlp) or base channels (unet)."),
    steps: int = typer.Option(2000, help="Training steps (a resumed run continues to this)."),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    checkpoint_every: int = typer.Option(500),
    data_dir: Path | None = typer.Option(None, help="Folder with MNIST/Fashion-MNIST files."),
    device: str | None = typer.Option(None, help="cpu, cuda, ... (default: cuda if present)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train (or resume) a denoiser; checkpoints hold model, EMA, optimiser and RNG state."""
    from serialrepro.data import DATASETS
    from serialrepro.errors import unknown_name
    from serialrepro.models.training import TrainConfig, train

    if dataset not in DATASETS:
        raise unknown_name("data set", dataset, DATASETS)
    for name, value in (("steps", steps), ("batch size", batch_size),
                        ("checkpoint interval", checkpoint_every)):
        if value < 1:
            raise UserInputError(f"{name} {value} must be at least 1")
    opts = {}
    if width is not None:
        opts = {"base" if denoiser == "unet" or (denoiser == "auto" and dataset in (
            "digits", "mnist", "fashion-mnist")) else "hidden": width}
    cfg = TrainConfig(dataset=dataset, family=family, schedule=schedule, num_timesteps=timesteps,
                      prediction_type=None if prediction_type == "auto" else prediction_type,
                      denoiser=denoiser, denoiser_options=opts, steps=steps,
                      batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                      data_dir=None if data_dir is None else str(data_dir))
    result = train(cfg, run_dir, device=resolve_device(device), progress=progress)
    tail = result.losses[-min(100, len(result.losses)):]
    typer.echo(f"trained {result.step} steps; mean loss of the last {len(tail)}:"
               f" {sum(tail) / max(1, len(tail)):.5f}; checkpoint in {run_dir}")


def sample_cmd(
    run_dir: Path = typer.Option(..., "--run-dir", help="A run directory written by `train`."),
    out: Path = typer.Option(..., "--out", help="Output .npz (array 'samples')."),
    n: int = typer.Option(1000, "--n", help="Number of samples."),
    sampler: str = typer.Option("auto", help="ddpm, ddim, reproduction, cold or auto."),
    stride: int = typer.Option(1, help="Sample every k-th timestep (⌊T/k⌋ steps)."),
    respace: str = typer.Option("recompute", help="recompute (betas recomputed for the "
                                "stride) or naive (the T-step betas kept: naive striding)."),
    eta: float = typer.Option(0.0, help="DDIM η (ddim sampler only)."),
    seed: int = typer.Option(0),
    per_sample_seeds: bool = typer.Option(False, help="Sample i from seed+i alone."),
    device: str | None = typer.Option(None),
) -> None:
    """Draw samples from a trained model and save them as .npz."""
    from serialrepro.models.schedules import check_respacing
    from serialrepro.models.training import load_trained, sample_from

    check_respacing(respace)
    if out.suffix != ".npz":
        raise UserInputError(f"output file {str(out)!r} must end in .npz")
    if not out.parent.exists():
        raise UserInputError(f"the folder {str(out.parent)!r} does not exist")
    if n < 1:
        raise UserInputError(f"number of samples {n} must be at least 1")
    trained = load_trained(run_dir, resolve_device(device))
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    if eta and sampler != "ddim":
        raise UserInputError("--eta applies to the ddim sampler only")
    x = sample_from(trained, n, sampler=sampler, stride=stride, seed=seed,
                    per_sample_seeds=per_sample_seeds, respace=respace, **kwargs)
    atomic.write_npz(out, {"samples": x.numpy()})
    typer.echo(f"wrote {n} samples of shape {tuple(x.shape[1:])} to {out}")


def evaluate_cmd(
    run_dir: Path = typer.Option(..., "--run-dir", help="A run directory written by `train`."),
    samples: Path = typer.Option(..., "--samples", help="An .npz written by `sample`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    seed: int = typer.Option(0),
    device: str | None = typer.Option(None),
) -> None:
    """Score samples against the held-out split: distances for 2-D, FID/KID for images."""
    import numpy as np
    import torch

    from serialrepro.data import load_dataset
    from serialrepro.models.training import CONFIG_FILE, TrainConfig

    if not samples.is_file():
        raise UserInputError(f"samples file {str(samples)!r} does not exist")
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise UserInputError(f"{run_dir} is not a trained run: {CONFIG_FILE} is missing")
    cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    with np.load(samples, allow_pickle=False) as f:
        if "samples" not in f:
            raise UserInputError(f"{samples} has no 'samples' array")
        x = torch.from_numpy(f["samples"]).float()
    data = load_dataset(cfg.dataset, seed=cfg.seed, data_dir=cfg.data_dir,
                        n_test=max(1000, x.shape[0]))
    if tuple(x.shape[1:]) != data.data_shape:
        raise UserInputError(f"samples have shape {tuple(x.shape[1:])}, the data"
                             f" {data.data_shape}")
    ref = data.test
    out: dict[str, float | int | str | None] = {"n_samples": int(x.shape[0]),
                                                "n_reference": int(ref.shape[0])}
    if data.is_image:
        from serialrepro.metrics.fid import FIDEvaluator, cached_classifier

        dev = resolve_device(device)
        clf = cached_classifier(run_dir, data.train, data.train_labels, seed=cfg.seed, device=dev)
        res = FIDEvaluator(clf, ref, seed=seed)(x)
        out.update(fid=res.fid, kid=res.kid, kid_std=res.kid_std, warning=res.warning)
    else:
        from serialrepro.metrics import energy_distance, grid_kl_bits, mmd, sliced_wasserstein

        g = torch.Generator().manual_seed(seed)
        out.update(energy_distance=energy_distance(x, ref), mmd=mmd(x, ref),
                   sliced_wasserstein=sliced_wasserstein(x, ref, generator=g),
                   grid_kl_bits=grid_kl_bits(x, ref))
    if as_json:
        typer.echo(json.dumps(out))
    else:
        for k, v in out.items():
            typer.echo(f"{k}: {v}")


def fig4_cmd(
    out: Path = typer.Option(Path("results/fig4"), "--out", help="Run directory (resumable)."),
    preset: str = typer.Option("digits-cpu", help="quick, digits-cpu or mnist-gpu."),
    seed: int = typer.Option(0),
    data_dir: Path | None = typer.Option(None, help="Folder with MNIST files (mnist-gpu)."),
    device: str | None = typer.Option(None),
    progress: bool = typer.Option(True),
) -> None:
    """The paper's Figure 4: FID against the number of sampling steps (strides 1..20)."""
    from serialrepro.models.fig4 import get_preset, run_fig4

    get_preset(preset)
    res = run_fig4(out, preset=preset, seed=seed, progress=progress, data_dir=data_dir,
                   device=resolve_device(device))
    cols = ["dataset", "family", "sampler", "steps", "fid", "kid", "n_samples"]
    typer.echo(res.table[cols].to_string(index=False))
    typer.echo(res.notes)
    typer.echo(f"figure: {res.figure}")


def register(app: typer.Typer) -> None:
    """Add the trained-model commands to the top-level app."""
    app.command("train")(train_cmd)
    app.command("sample")(sample_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("fig4")(fig4_cmd)
