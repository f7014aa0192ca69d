"""``serialrepro train | sample | evaluate | fig4``: trained diffusion models under any family.

Heavy imports (torch, models, matplotlib) happen inside the commands so ``--help`` stays
fast. The lists of choices in the help texts are checked against the registries by
``tests/test_cli_help.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from serialrepro.errors import UserInputError

DATASET_HELP = ("training data: swiss-roll, two-moons, eight-gaussians, checkerboard (2-D "
                "toys), digits (8x8, ships with scikit-learn), mnist, fashion-mnist (need "
                "--data-dir)")
NOISE_HELP = ("noise family of the forward process: gaussian, laplace, uniform, student-t "
              "(variance preserving: epsilon, sample or v_prediction), resample-uniform, "
              "mask, blur (images; sample prediction). --family is an alias. See "
              "`serialrepro families`")
SAMPLER_HELP = ("auto (ddpm for variance-preserving families, else x0-renoise), ddpm "
                "(ancestral), ddim, x0-renoise (cold diffusion's Algorithm 1: predict x0, "
                "re-noise it to t-1 -- a posterior-mean agent, not the paper's serial step; "
                "old name: reproduction) or cold (cold diffusion's Algorithm 2)")
DEVICE_HELP = "torch device: cpu, cuda or cuda:N (default: cuda if available, else cpu)"
SEED_HELP = "seed of everything random in this command"
FID_FEATURES_HELP = ("features of FID/KID: classifier (a small classifier trained on the "
                     "data set, cached; offline default) or inception (the standard "
                     "Inception-v3 FID features, from --inception-weights)")
INCEPTION_HELP = ("the standard FID Inception weights, pt_inception-2015-12-05-6726825d.pth "
                  "(from github.com/mseitzer/pytorch-fid releases), a local file")
DIFFUSERS_HELP = ("a diffusers UNet2DModel folder written by save_pretrained, with its "
                  "scheduler_config.json beside it, or a DDPMPipeline folder (unet/, "
                  "scheduler/); read locally, needs `pip install diffusers`. Instead of "
                  "--run-dir")


def _model_source(run_dir: Path | None, diffusers_model: Path | None) -> str:
    """Exactly one of --run-dir and --diffusers-model; the one given, as words."""
    if (run_dir is None) == (diffusers_model is None):
        raise UserInputError("give either --run-dir (a model of `serialrepro train`) or "
                             "--diffusers-model (a saved diffusers UNet2DModel), not "
                             f"{'both' if run_dir is not None else 'neither'}")
    return (f"run {run_dir.name}" if run_dir is not None
            else f"diffusers model {diffusers_model.name}")


def train_cmd(
    run_dir: Path = typer.Option(..., "--run-dir", metavar="DIR",
                                 help="run directory: config.json, checkpoint.pt, loss.csv and "
                                 "loss.png; an existing run is resumed"),
    dataset: str = typer.Option("two-moons", "--dataset", metavar="NAME", help=DATASET_HELP),
    noise: str = typer.Option("gaussian", "--noise", "--family", metavar="FAMILY",
                              help=NOISE_HELP),
    schedule: str = typer.Option("linear", "--schedule", metavar="NAME",
                                 help="beta schedule: linear (1e-4 to 0.02) or cosine "
                                 "(Nichol & Dhariwal)"),
    timesteps: int = typer.Option(1000, "--timesteps", metavar="T",
                                  help="number of diffusion steps T"),
    prediction_type: str = typer.Option("auto", "--prediction-type", metavar="TYPE",
                                        help="what the network predicts, as diffusers: epsilon, "
                                        "sample (x0), v_prediction or auto (epsilon for "
                                        "variance-preserving families, else sample); eps and "
                                        "x0 are old names"),
    denoiser: str = typer.Option("auto", "--denoiser", metavar="NAME",
                                 help="network: mlp, unet or auto (mlp for points, unet for "
                                 "images)"),
    width: int | None = typer.Option(None, "--width", metavar="N",
                                     help="hidden width (mlp) or base channels (unet) "
                                     "[default: the network's own]"),
    steps: int = typer.Option(2000, "--steps", metavar="N",
                              help="training steps (a resumed run continues up to this)"),
    batch_size: int = typer.Option(128, "--batch-size", metavar="N",
                                   help="training examples per step"),
    lr: float = typer.Option(1e-3, "--lr", metavar="RATE", help="Adam learning rate"),
    seed: int = typer.Option(0, "--seed", metavar="N",
                             help="seed of initialisation, batches, timesteps and noise"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", metavar="N",
                                         help="write checkpoint.pt every N steps"),
    data_dir: Path | None = typer.Option(None, "--data-dir", metavar="DIR",
                                         help="folder with the MNIST/Fashion-MNIST .gz files"),
    device: str | None = typer.Option(None, "--device", metavar="DEVICE", help=DEVICE_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="show a progress bar"),
) -> None:
    """Train (or resume) a denoiser; also writes its loss curve (loss.csv, loss.png)."""
    from serialrepro.atomic import check_output_folder
    from serialrepro.data import DATASETS
    from serialrepro.devices import resolve_device
    from serialrepro.errors import unknown_name
    from serialrepro.models.previews import LOSS_PNG
    from serialrepro.models.training import TrainConfig, check_train_cost, train

    if dataset not in DATASETS:
        raise unknown_name("data set", dataset, DATASETS)
    for name, value in (("--steps", steps), ("--batch-size", batch_size),
                        ("--checkpoint-every", checkpoint_every), ("--timesteps", timesteps),
                        ("--width", 1 if width is None else width)):
        if value < 1:
            raise UserInputError(f"{name} {value} must be at least 1")
    if not (math.isfinite(lr) and lr > 0):
        raise UserInputError(f"--lr {lr!r} is invalid; the learning rate must be a finite "
                             "number > 0 (e.g. 1e-3)")
    check_output_folder(run_dir, "run directory")
    opts = {}
    if width is not None:
        opts = {"base" if denoiser == "unet" or (denoiser == "auto" and dataset in (
            "digits", "mnist", "fashion-mnist")) else "hidden": width}
    cfg = TrainConfig(dataset=dataset, family=noise, schedule=schedule, num_timesteps=timesteps,
                      prediction_type=None if prediction_type == "auto" else prediction_type,
                      denoiser=denoiser, denoiser_options=opts, steps=steps,
                      batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                      data_dir=None if data_dir is None else str(data_dir)).check("options")
    check_train_cost(cfg)
    result = train(cfg, run_dir, device=resolve_device(device), progress=progress)
    tail = result.losses[-min(100, len(result.losses)):]
    typer.echo(f"trained {result.step} steps; mean loss of the last {len(tail)}:"
               f" {sum(tail) / max(1, len(tail)):.5f}; checkpoint in {run_dir}")
    typer.echo(f"loss curve: {run_dir / LOSS_PNG}")


def sample_cmd(
    run_dir: Path | None = typer.Option(None, "--run-dir", metavar="DIR",
                                        help="a run directory written by `serialrepro "
                                        "train` (or give --diffusers-model)"),
    diffusers_model: Path | None = typer.Option(None, "--diffusers-model", metavar="DIR",
                                                help=DIFFUSERS_HELP),
    out: Path = typer.Option(..., "--out", metavar="FILE.npz",
                             help="output .npz (array 'samples'); a preview FILE.png is "
                             "written beside it"),
    n: int = typer.Option(1000, "--n", metavar="N", help="number of samples"),
    sampler: str = typer.Option("auto", "--sampler", metavar="NAME", help=SAMPLER_HELP),
    stride: int = typer.Option(1, "--stride", metavar="K",
                               help="use every K-th timestep (floor(T/K) sampling steps)"),
    respace: str = typer.Option("recompute", "--respace", metavar="HOW",
                                help="recompute (betas recomputed for the stride) or naive "
                                "(the T-step betas kept: naive striding)"),
    eta: float = typer.Option(0.0, "--eta", metavar="ETA",
                              help="DDIM eta (ddim sampler only): 0 deterministic, 1 DDPM-like"),
    seed: int = typer.Option(0, "--seed", metavar="N", help=SEED_HELP),
    per_sample_seeds: bool = typer.Option(False, "--per-sample-seeds",
                                          help="draw sample i's noise from seed+i alone, "
                                          "whatever --n (equal up to float32 round-off of "
                                          "the network, ~1e-3 after 1000 steps)"),
    device: str | None = typer.Option(None, "--device", metavar="DEVICE", help=DEVICE_HELP),
) -> None:
    """Draw samples from a trained model; save them as .npz with a preview .png beside."""
    from serialrepro import atomic
    from serialrepro.budget import check_memory
    from serialrepro.devices import resolve_device
    from serialrepro.loaders import check_samples
    from serialrepro.models.diffusion import check_eta
    from serialrepro.models.previews import preview_path, write_sample_preview
    from serialrepro.models.schedules import check_respacing
    from serialrepro.models.training import (
        _data_shape,
        load_run_config,
        load_trained,
        resolve_sampler,
        sample_from,
    )

    check_respacing(respace)
    check_eta(eta)
    if out.suffix != ".npz":
        raise UserInputError(f"output file {str(out)!r} must end in .npz")
    atomic.check_output_file(out, "samples file")
    atomic.check_output_file(preview_path(out), "preview file")
    if n < 1:
        raise UserInputError(f"number of samples {n} must be at least 1")
    if stride < 1:
        raise UserInputError(f"--stride {stride} must be at least 1")
    source = _model_source(run_dir, diffusers_model)
    if run_dir is not None:
        shape = _data_shape(load_run_config(run_dir))
    else:
        from serialrepro.models.external import diffusers_data_shape

        shape = diffusers_data_shape(diffusers_model)
    # the samples are held twice (the batches and their concatenation) as float32, and
    # once more as the preview's float64 copy
    check_memory(f"--n {n} samples of shape {shape}", n * math.prod(shape) * 16, "lower --n")
    if run_dir is not None:
        trained = load_trained(run_dir, resolve_device(device))
    else:
        from serialrepro.models.external import load_diffusers_model

        trained = load_diffusers_model(diffusers_model, resolve_device(device))
    key = resolve_sampler(sampler, trained.process.family.variance_preserving)
    if eta and key != "ddim":
        raise UserInputError("--eta applies to the ddim sampler only")
    kwargs = {"eta": eta} if key == "ddim" else {}
    x = sample_from(trained, n, sampler=key, stride=stride, seed=seed,
                    per_sample_seeds=per_sample_seeds, respace=respace, **kwargs)
    check_samples(x.numpy(), "the samples drawn")  # never write NaN samples
    atomic.write_npz(out, {"samples": x.numpy()})
    steps = len(trained.process.respace(stride, respace).timesteps)
    data = None
    if run_dir is not None:
        cfg = trained.config
        what = f"{cfg.dataset} · {cfg.family}"
        if x.ndim == 2:
            from serialrepro.data import load_dataset

            data = load_dataset(cfg.dataset, seed=cfg.seed, data_dir=cfg.data_dir).test.numpy()
    else:
        what = source
    png = write_sample_preview(
        preview_path(out), x.numpy(), data, seed=seed,
        title=f"{what} · {sampler if sampler != 'auto' else key} · {steps} steps")
    typer.echo(f"wrote {n} samples of shape {tuple(x.shape[1:])} to {out}; preview {png}")


def _reference_rows(scores: dict, reference: dict) -> list[tuple[str, str, str]]:
    rows = []
    for k, v in scores.items():
        ref = reference.get(k)
        rows.append((k, f"{v:.4g}", "" if ref is None else f"{ref:.4g}"))
    return rows


def evaluate_cmd(
    run_dir: Path | None = typer.Option(None, "--run-dir", metavar="DIR",
                                        help="a run directory written by `serialrepro "
                                        "train` (or give --diffusers-model and --dataset)"),
    samples: Path = typer.Option(..., "--samples", metavar="FILE.npz",
                                 help="an .npz written by `serialrepro sample`"),
    diffusers_model: Path | None = typer.Option(None, "--diffusers-model", metavar="DIR",
                                                help=DIFFUSERS_HELP),
    dataset: str | None = typer.Option(None, "--dataset", metavar="NAME",
                                       help="with --diffusers-model: the image data set to "
                                       "score against (digits, mnist, fashion-mnist)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", metavar="DIR",
                                         help="with --dataset: folder with the MNIST/"
                                         "Fashion-MNIST .gz files"),
    fid_features: str = typer.Option("classifier", "--fid-features", metavar="NET",
                                     help=FID_FEATURES_HELP),
    inception_weights: Path | None = typer.Option(None, "--inception-weights", metavar="PATH",
                                                  help=INCEPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    seed: int = typer.Option(0, "--seed", metavar="N",
                             help="seed of the metrics' random parts (sliced-Wasserstein "
                             "directions, KID subsets, the real reference sample; with "
                             "--dataset also its train/held-out split)"),
    device: str | None = typer.Option(None, "--device", metavar="DEVICE", help=DEVICE_HELP),
) -> None:
    """Score samples against held-out data, beside a real-vs-real reference of the same size.

    The reference scores a sample of real training points (disjoint from the held-out
    split) of the same size against the same held-out points: what a perfect model would
    get. Distances for 2-D data, FID/KID for images.
    """
    import torch

    from serialrepro.atomic import check_output_folder, dumps_strict
    from serialrepro.data import DATASETS, load_dataset
    from serialrepro.devices import resolve_device
    from serialrepro.errors import unknown_name
    from serialrepro.loaders import load_samples
    from serialrepro.metrics.fid import check_fid_features
    from serialrepro.models.training import CONFIG_FILE, load_run_config

    _model_source(run_dir, diffusers_model)
    check_fid_features(fid_features, inception_weights)
    model_shape = None
    if run_dir is not None:
        if dataset is not None or data_dir is not None:
            raise UserInputError("--dataset and --data-dir go with --diffusers-model; a run "
                                 "directory names its own data set")
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserInputError(f"{run_dir} is not a trained run: {CONFIG_FILE} is missing")
        cfg = load_run_config(run_dir)
        ds_name, split_seed, ds_dir, n_train = cfg.dataset, cfg.seed, cfg.data_dir, cfg.n_train
        clf_dir = run_dir
    else:
        from serialrepro.models.external import diffusers_data_shape

        images = [k for k in DATASETS if k in ("digits", "mnist", "fashion-mnist")]
        if dataset is None:
            raise UserInputError("--diffusers-model needs --dataset NAME, the image data set "
                                 f"to score against ({', '.join(images)})")
        if dataset not in images:
            raise unknown_name("image data set", dataset, images)
        model_shape = diffusers_data_shape(diffusers_model)
        ds_name, split_seed, n_train = dataset, seed, 20000
        ds_dir = None if data_dir is None else str(data_dir)
        # the FID classifier of a data set (and split seed), cached beside the samples
        clf_dir = samples.parent / f"fid-classifier-{dataset}-seed{seed}"
    x = torch.from_numpy(load_samples(samples)).float()
    if not bool(torch.isfinite(x).all()):  # float64 values beyond float32's range
        raise UserInputError(f"samples file {str(samples)!r} holds values beyond float32's "
                             "range")
    if model_shape is not None and tuple(x.shape[1:]) != model_shape:
        raise UserInputError(f"samples have shape {tuple(x.shape[1:])}, the diffusers model "
                             f"{model_shape}")
    n = int(x.shape[0])
    # the samples, the held-out and real references of the same size (float32 and their
    # float64 copies), the projections of sliced Wasserstein and a few distance blocks
    from serialrepro.budget import check_memory
    from serialrepro.metrics.sample import BLOCK

    check_memory(f"evaluate on {n} samples of shape {tuple(x.shape[1:])}",
                 n * math.prod(x.shape[1:]) * 3 * 12 + n * 3 * 128 * 8 + 4 * BLOCK**2 * 8,
                 "evaluate fewer samples")
    data = load_dataset(ds_name, seed=split_seed, data_dir=ds_dir,
                        n_train=max(n_train, n), n_test=max(1000, n))
    if tuple(x.shape[1:]) != data.data_shape:
        raise UserInputError(f"samples have shape {tuple(x.shape[1:])}, the data"
                             f" {data.data_shape}")
    ref = data.test
    perm = torch.randperm(data.train.shape[0], generator=torch.Generator().manual_seed(seed))
    real = data.train[perm[:n]]
    out: dict = {"n_samples": n, "n_reference": int(ref.shape[0]),
                 "n_real_reference": int(real.shape[0])}
    warning = None
    if data.is_image:
        from serialrepro.metrics.fid import FIDEvaluator, fid_feature_network

        dev = resolve_device(device)
        if fid_features == "classifier":
            check_output_folder(clf_dir, "folder of the FID classifier (classifier.pt)")
        feature = fid_feature_network(fid_features, inception_weights, clf_dir, data,
                                      seed=split_seed, device=dev)
        evaluator = FIDEvaluator(feature, ref, seed=seed, n_real_available=int(ref.shape[0]))
        res, base = evaluator(x), evaluator(real)
        scores = {"fid": res.fid, "kid": res.kid}
        reference = {"fid": base.fid, "kid": base.kid}
        out.update(scores, kid_std=res.kid_std, warning=res.warning,
                   fid_features=evaluator.label)
        warning = res.warning
    else:
        from serialrepro.metrics import distance_scores

        scores = distance_scores(x, ref, seed=seed)
        reference = distance_scores(real, ref, seed=seed)
        out.update(scores)
    out["real_vs_real"] = reference
    if as_json:
        typer.echo(dumps_strict(out, nonfinite="null"))
        return
    typer.echo(f"{ds_name}: {n} samples from {samples} against {out['n_reference']} "
               f"held-out points; real vs real: {out['n_real_reference']} training points "
               "against the same held-out points (lower is better)")
    rows = [("metric", "samples", "real vs real"), *_reference_rows(scores, reference)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo(f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}")
    if data.is_image:
        typer.echo(f"  (kid ± {out['kid_std']:.2g} over KID subsets; {out['fid_features']})")
    if warning:
        typer.echo(f"warning: {warning}", err=True)


def fig4_cmd(
    out: Path = typer.Option(Path("results/fig4"), "--out", metavar="DIR",
                             help="run directory (an existing one is resumed)"),
    preset: str = typer.Option("digits-cpu", "--preset", metavar="NAME",
                               help="quick (a smoke test), digits-cpu (8x8 digits on a CPU) or "
                               "mnist-gpu (the paper's MNIST setting; needs --data-dir)"),
    seed: int = typer.Option(0, "--seed", metavar="N", help=SEED_HELP),
    data_dir: Path | None = typer.Option(None, "--data-dir", metavar="DIR",
                                         help="folder with the MNIST .gz files (mnist-gpu)"),
    diffusers_model: Path | None = typer.Option(
        None, "--diffusers-model", metavar="DIR",
        help="sample this saved diffusers UNet2DModel (save_pretrained folder with its "
        "scheduler_config.json, or a DDPMPipeline folder) instead of training ours: the "
        "preset's variance-preserving curves run on it; needs `pip install diffusers`"),
    fid_features: str = typer.Option("classifier", "--fid-features", metavar="NET",
                                     help=FID_FEATURES_HELP),
    inception_weights: Path | None = typer.Option(None, "--inception-weights", metavar="PATH",
                                                  help=INCEPTION_HELP),
    device: str | None = typer.Option(None, "--device", metavar="DEVICE", help=DEVICE_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress",
                                  help="show a progress bar"),
) -> None:
    """The paper's Figure 4: FID against the number of sampling steps (strides 1..20)."""
    from serialrepro.atomic import check_output_folder
    from serialrepro.devices import resolve_device
    from serialrepro.metrics.fid import check_fid_features
    from serialrepro.models.fig4 import get_preset, run_fig4

    get_preset(preset)
    check_fid_features(fid_features, inception_weights)
    if fid_features == "inception":
        from serialrepro.metrics.inception import load_fid_inception

        load_fid_inception(inception_weights)  # a missing or foreign file: before any work
    if diffusers_model is not None:
        from serialrepro.models.external import diffusers_data_shape

        diffusers_data_shape(diffusers_model)
    check_output_folder(out, "fig4 output folder")
    res = run_fig4(out, preset=preset, seed=seed, progress=progress, data_dir=data_dir,
                   device=resolve_device(device), diffusers_model=diffusers_model,
                   fid_features=fid_features, inception_weights=inception_weights)
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
