"""Seeded, device-agnostic, resumable training of a denoiser under any noise family.

A run directory holds ``config.json`` (the resolved :class:`TrainConfig`) and
``checkpoint.pt``: model, EMA and optimiser state dicts, the step, the per-step losses,
the training generator's state and the family's fitted state. Checkpoints are written
atomically (:mod:`serialrepro.atomic`) and read with ``torch.load(weights_only=True)``.
Everything random in training (model initialisation, batches, timesteps, noise) comes from
``seed``, and the generator state is checkpointed, so a run killed and resumed produces
the same losses, step for step, as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from serialrepro import atomic
from serialrepro.data import Dataset, load_dataset
from serialrepro.devices import resolve_device
from serialrepro.errors import UserInputError
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.losses import diffusion_loss
from serialrepro.models.networks import make_denoiser
from serialrepro.models.noise import make_family
from serialrepro.models.schedules import make_schedule

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Everything that defines a trained model (saved as JSON in the run directory)."""

    dataset: str = "two-moons"
    family: str = "gaussian"
    schedule: str = "linear"
    num_timesteps: int = 1000
    prediction_type: str | None = None  # None: the family's default (eps for VP, else x0)
    denoiser: str = "auto"  # auto: mlp for vectors, unet for images
    denoiser_options: dict = field(default_factory=dict)
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    n_train: int = 20000
    data_dir: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(f"unknown training option(s) {', '.join(unknown)}; valid:"
                                 f" {', '.join(sorted(known))}")
        return cls(**d)

    def resolved_denoiser(self, is_image: bool) -> str:
        return self.denoiser if self.denoiser != "auto" else ("unet" if is_image else "mlp")




@dataclass
class TrainedModel:
    """A denoiser (EMA weights, eval mode) with the process it was trained for."""

    config: TrainConfig
    denoiser: nn.Module
    process: Diffusion
    data_shape: tuple[int, ...]
    step: int
    losses: list[float]


def build(config: TrainConfig, data: Dataset, device: torch.device) -> tuple[nn.Module, Diffusion]:
    """The (freshly initialised, seeded) denoiser and the process for a config."""
    family = make_family(config.family)
    family.check_input((1, *data.data_shape))
    process = Diffusion(family, make_schedule(config.schedule, config.num_timesteps),
                        config.prediction_type, data.clip_sample)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = make_denoiser(config.resolved_denoiser(data.is_image), data.data_shape,
                              **config.denoiser_options)
    return model.to(device), process


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))  # warm-up so early EMA is not the random init
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p, 1 - d)


def _load_checkpoint(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=True)


def train(config: TrainConfig, run_dir: str | Path, device: torch.device | str | None = None,
          progress: bool = True, data: Dataset | None = None) -> TrainedModel:
    """Train (or resume) the model of ``config`` in ``run_dir`` up to ``config.steps`` steps."""
    run_dir = Path(run_dir)
    device = resolve_device(device)
    # Build everything the config names first: a bad name or missing data fails before
    # anything is written.
    if data is None:
        data = load_dataset(config.dataset, seed=config.seed, n_train=config.n_train,
                            data_dir=config.data_dir)
    model, process = build(config, data, device)
    saved = run_dir / CONFIG_FILE
    if saved.exists():
        old = json.loads(saved.read_text())
        mine = json.loads(json.dumps(asdict(config)))  # tuples become lists, as saved
        diff = [k for k in mine if k != "steps" and old.get(k) != mine[k]]
        if diff:
            raise UserInputError(f"{run_dir} holds a run with different {', '.join(diff)}; use a"
                                 " new run directory")
    atomic.write_text(saved, json.dumps(asdict(config), indent=2))
    x_train = data.train.to(device)
    process.family.fit(data.train)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    step, losses = 0, []
    ckpt_path = run_dir / CHECKPOINT_FILE
    if ckpt_path.exists():
        ck = _load_checkpoint(ckpt_path, device)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["rng"].cpu())
        process.family.load_state_dict(ck["family"])
        step, losses = int(ck["step"]), ck["losses"].tolist()

    def save() -> None:
        atomic.torch_save({
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "rng": gen.get_state(), "step": step,
            "losses": torch.tensor(losses, dtype=torch.float64),
            "family": process.family.state_dict(),
        }, ckpt_path)

    bar = _progress(progress)
    with bar:
        task = bar.add_task(f"train {config.dataset}/{config.family}", total=config.steps,
                            completed=step, loss=float("nan"))
        model.train()
        while step < config.steps:
            idx = torch.randint(x_train.shape[0], (config.batch_size,), generator=gen,
                                device=device)
            loss = diffusion_loss(model, process, x_train[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _ema_update(ema, model, config.ema_decay, step)
            step += 1
            losses.append(loss.item())
            bar.update(task, advance=1, loss=losses[-1])
            if step % config.checkpoint_every == 0 or step == config.steps:
                save()
    if not ckpt_path.exists():
        save()
    from serialrepro.models.previews import write_loss_curve

    write_loss_curve(run_dir, losses, title=f"{config.dataset} · {config.family} noise · "
                     f"{config.num_timesteps} timesteps · batch {config.batch_size}")
    ema.eval()
    return TrainedModel(config, ema, process, data.data_shape, step, losses)


def load_trained(run_dir: str | Path, device: torch.device | str | None = None) -> TrainedModel:
    """Load a trained model (EMA weights) from a run directory written by :func:`train`."""
    run_dir = Path(run_dir)
    cfg_path, ckpt_path = run_dir / CONFIG_FILE, run_dir / CHECKPOINT_FILE
    if not cfg_path.exists() or not ckpt_path.exists():
        raise UserInputError(f"{run_dir} is not a trained run: it needs {CONFIG_FILE} and"
                             f" {CHECKPOINT_FILE} (run `serialrepro train` first)")
    device = resolve_device(device)
    config = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    ck = _load_checkpoint(ckpt_path, device)
    shape = _data_shape(config)
    is_image = len(shape) == 3
    family = make_family(config.family)
    family.load_state_dict(ck["family"])
    process = Diffusion(family, make_schedule(config.schedule, config.num_timesteps),
                        config.prediction_type, 1.0 if is_image else None)
    model = make_denoiser(config.resolved_denoiser(is_image), shape, **config.denoiser_options)
    model.load_state_dict(ck["ema"])
    model.to(device).eval().requires_grad_(False)
    return TrainedModel(config, model, process, shape, int(ck["step"]), ck["losses"].tolist())


def _data_shape(config: TrainConfig) -> tuple[int, ...]:
    if config.dataset == "digits":
        return (1, 8, 8)
    if config.dataset in ("mnist", "fashion-mnist"):
        return (1, 28, 28)
    return (2,)


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not enabled, transient=False)


#: The command line's name for each sampler of :data:`serialrepro.models.samplers.SAMPLERS`
#: where it differs: the serial-reproduction step is ``serial`` everywhere (``simulate
#: --step serial``), and the registry's ``reproduction`` stays accepted as an alias.
SAMPLER_PUBLIC_NAMES = {"reproduction": "serial"}


def sampler_names() -> list[str]:
    """The sampler names a user may give (``auto`` included), in the registry's order."""
    from serialrepro.models.samplers import SAMPLERS

    return ["auto", *(SAMPLER_PUBLIC_NAMES.get(k, k) for k in SAMPLERS)]


def resolve_sampler(name: str, variance_preserving: bool) -> str:
    """The registry key of a user's sampler name; ``auto`` is DDPM for variance-preserving
    families and the serial-reproduction step otherwise."""
    from serialrepro.errors import unknown_name
    from serialrepro.models.samplers import SAMPLERS

    if name == "auto":
        return "ddpm" if variance_preserving else "reproduction"
    key = {v: k for k, v in SAMPLER_PUBLIC_NAMES.items()}.get(name, name)
    if key not in SAMPLERS:
        raise unknown_name("sampler", name, sampler_names())
    return key


def sample_from(trained: TrainedModel, n: int, sampler: str = "auto", stride: int = 1,
                seed: int = 0, per_sample_seeds: bool = False, batch_size: int = 1000,
                device: torch.device | str | None = None, respace: str = "recompute",
                **sampler_kwargs) -> Tensor:
    """Draw ``n`` samples from a trained model with a named sampler on a strided schedule.

    ``sampler="auto"`` uses DDPM ancestral sampling for variance-preserving families and
    the serial-reproduction step (``serial``, alias ``reproduction``) otherwise. With
    ``per_sample_seeds`` sample i comes from seed + i alone, whatever the batch size (EDM's
    convention). ``respace`` is ``"recompute"`` (betas recomputed for the stride) or
    ``"naive"`` (the T-step tables kept: naive striding, see :mod:`serialrepro.models.schedules`).
    """
    from serialrepro.models.samplers import get_sampler

    fn = get_sampler(resolve_sampler(sampler, trained.process.family.variance_preserving))
    dev = next(trained.denoiser.parameters()).device if device is None else torch.device(device)
    process = trained.process.respace(stride, respace)
    out: list[Tensor] = []
    gen = torch.Generator(device=dev).manual_seed(seed)
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        g = ([torch.Generator(device=dev).manual_seed(seed + start + i) for i in range(m)]
             if per_sample_seeds else gen)
        x = process.family.limit_sample((m, *trained.data_shape), g, torch.float32, dev)
        traj = fn(trained.denoiser, x, process, g, **sampler_kwargs)
        out.append(traj.samples.cpu())
    return torch.cat(out) if out else torch.empty((0, *trained.data_shape))


