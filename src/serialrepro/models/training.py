"""Seeded, device-agnostic, resumable training of a denoiser under any noise family.

A run directory holds ``config.json`` (the resolved :class:`TrainConfig`) and
``checkpoint.pt``: model, EMA and optimiser state dicts, the step, the per-step losses,
the training generator's state and the family's fitted state. Checkpoints are written
atomically (:mod:`serialrepro.atomic`) and read with ``torch.load(weights_only=True)``.
Everything random in training (model initialisation, batches, timesteps, noise) comes from
``seed``, and the generator state is checkpointed, so a run killed and resumed produces
the same losses, step for step, as an uninterrupted one.

Run directories are untrusted input: ``config.json`` is read with
:func:`serialrepro.loaders.load_json` and validated (:meth:`TrainConfig.check`), the
checkpoint with :func:`serialrepro.loaders.load_checkpoint` and checked against the model
it is loaded into, so a bad file is one line naming it. Training stops at the first
non-finite loss or gradient (:class:`NonFiniteTraining`, naming the step) before the
optimiser applies it; no checkpoint of a non-finite model is ever written, so the last
good checkpoint stays in place.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from serialrepro import atomic, loaders
from serialrepro.budget import MAX_SEED, check_memory
from serialrepro.data import Dataset, load_dataset
from serialrepro.devices import resolve_device
from serialrepro.errors import UserInputError
from serialrepro.models.diffusion import PREDICTION_ALIASES, Diffusion, check_prediction_type
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
    # None: the family's default (epsilon for VP families, else sample); saved configs
    # holding the old names eps and x0 are read as epsilon and sample
    prediction_type: str | None = None
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
    def from_dict(cls, d: dict, source: str = "training config") -> TrainConfig:
        if not isinstance(d, dict):
            raise UserInputError(f"{source} must be a mapping of option names to values")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserInputError(f"{source}: unknown training option(s) "
                                 f"{', '.join(unknown)[:200]}; valid: {', '.join(sorted(known))}")
        return cls(**d).check(source)

    def check(self, source: str = "training config") -> TrainConfig:
        """Refuse values of the wrong type or out of range (one line naming the option)."""
        def bad(name: str, want: str):
            value = getattr(self, name)
            text = repr(value)
            return UserInputError(f"{source}: {name} {text[:60]} is invalid; it must be {want}")

        for name in ("dataset", "family", "schedule", "denoiser"):
            if not isinstance(getattr(self, name), str):
                raise bad(name, "a name")
        for name in ("prediction_type", "data_dir"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise bad(name, "a name or null")
        if self.prediction_type is not None:
            self.prediction_type = check_prediction_type(self.prediction_type)
        if not isinstance(self.denoiser_options, dict) or not all(
                isinstance(k, str) and isinstance(v, int | float | list | tuple) and not
                isinstance(v, bool) for k, v in self.denoiser_options.items()):
            raise bad("denoiser_options", "a mapping of size options to numbers")
        for name in ("num_timesteps", "steps", "batch_size", "checkpoint_every", "n_train"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "an integer ≥ 1")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or \
                not 0 <= self.seed <= MAX_SEED:
            raise bad("seed", "an integer in 0..2^63 - 1")
        for name in ("lr", "ema_decay"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or \
                    not math.isfinite(value):
                raise bad(name, "a finite number")
        if not self.lr > 0:
            raise bad("lr", "a finite number > 0 (the Adam learning rate, e.g. 1e-3)")
        if not 0 <= self.ema_decay < 1:
            raise bad("ema_decay", "a number in [0, 1)")
        return self

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
                        config.prediction_type, clip_sample=data.clip_sample is not None,
                        clip_sample_range=data.clip_sample or 1.0)
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


class NonFiniteTraining(UserInputError):  # noqa: N818 (a user-facing refusal, exit 2)
    """Training produced a non-finite loss, gradient or weight; nothing was saved."""


#: what every checkpoint of :func:`train` holds
CHECKPOINT_KEYS = ("model", "ema", "optimizer", "rng", "step", "losses", "family")


def _load_checkpoint(path: Path, device: torch.device, keys=CHECKPOINT_KEYS) -> dict:
    """A training checkpoint: :func:`serialrepro.loaders.load_checkpoint` (plain tensors
    only, finite) holding a mapping with ``keys``."""
    ck = loaders.load_checkpoint(path, map_location=device)
    missing = [k for k in keys if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UserInputError(f"checkpoint {str(path)!r} is not a training checkpoint of "
                             f"serialrepro: it lacks {', '.join(missing)}")
    return ck


def _restore(what: str, path: Path, fn, *args) -> None:
    """``fn(*args)`` (a ``load_state_dict`` and the like); a mismatch is one line."""
    try:
        fn(*args)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserInputError(f"checkpoint {str(path)!r}: its {what} does not fit this run "
                             f"({first})") from None


def train_step_bytes(config: TrainConfig, data_shape: tuple[int, ...], is_image: bool) -> int:
    """Memory of one training step (a bound, by arithmetic): per example, the batch, its
    noise, x_t and target (4 × the data size), plus the network's activations and their
    gradients; 4 bytes each (float32). An MLP keeps about 16 values per hidden unit and
    layer, a UNet about 24 per pixel and channel of its widest level."""
    numel = math.prod(data_shape)
    opts = config.denoiser_options
    if config.resolved_denoiser(is_image) == "unet":
        mults = opts.get("channel_mults", (1, 2))
        widest = max(mults) if isinstance(mults, list | tuple) and mults else 2
        acts = 24 * int(opts.get("base", 32)) * int(widest) * math.prod(data_shape[1:])
    else:
        acts = 16 * int(opts.get("hidden", 128)) * (int(opts.get("depth", 3)) + 2)
    return config.batch_size * (4 * numel + acts) * 4


def check_train_cost(config: TrainConfig) -> int:
    """Refuse a batch whose training step would not fit in memory, before any data is
    loaded (:func:`serialrepro.budget.check_memory`)."""
    check_schedule_cost(config)
    # the loss history: a Python float in a list per step, and a float64 per checkpoint
    check_memory(f"--steps {config.steps} (the loss history)", config.steps * 48,
                 "lower --steps")
    shape = _data_shape(config)
    return check_memory(f"--batch-size {config.batch_size} ({config.dataset}, "
                        f"{config.resolved_denoiser(len(shape) == 3)}, size options "
                        f"{config.denoiser_options or 'default'})",
                        train_step_bytes(config, shape, len(shape) == 3),
                        "lower --batch-size or --width")


def check_schedule_cost(config: TrainConfig) -> int:
    """Refuse a number of timesteps whose schedule tables would not fit in memory (the
    process and each respacing hold about 16 float64 tables of T values)."""
    return check_memory(f"--timesteps {config.num_timesteps}", config.num_timesteps * 16 * 8,
                        "lower --timesteps")


def _grads_finite(params: list[nn.Parameter]) -> bool:
    sums = [p.grad.sum() for p in params if p.grad is not None]
    return not sums or bool(torch.isfinite(torch.stack(sums).sum()))


def _weights_finite(*modules: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())


def train(config: TrainConfig, run_dir: str | Path, device: torch.device | str | None = None,
          progress: bool = True, data: Dataset | None = None) -> TrainedModel:
    """Train (or resume) the model of ``config`` in ``run_dir`` up to ``config.steps`` steps."""
    run_dir = Path(run_dir)
    device = resolve_device(device)
    # Check and build everything the config names first: a bad value, name, path or
    # size, or missing data, fails before anything is written.
    config.check()
    atomic.check_output_folder(run_dir, "run directory")
    if data is None:
        check_train_cost(config)
        data = load_dataset(config.dataset, seed=config.seed, n_train=config.n_train,
                            data_dir=config.data_dir)
    model, process = build(config, data, device)
    saved = run_dir / CONFIG_FILE
    if saved.exists():
        old = _migrate(loaders.load_json(saved, "run config"))
        mine = json.loads(json.dumps(asdict(config)))  # tuples become lists, as saved
        diff = [k for k in mine if k != "steps" and old.get(k) != mine[k]]
        if diff:
            raise UserInputError(f"{run_dir} holds a run with different {', '.join(diff)}; use a"
                                 " new run directory")
    atomic.write_text(saved, json.dumps(asdict(config), indent=2))
    x_train = data.train.to(device)
    process.family.fit(data.train)
    ema = copy.deepcopy(model).requires_grad_(False)
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=config.lr)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    step, losses = 0, []
    ckpt_path = run_dir / CHECKPOINT_FILE
    if ckpt_path.exists():
        ck = _load_checkpoint(ckpt_path, device)
        source = f"checkpoint {str(ckpt_path)!r}"
        model.load_state_dict(loaders.check_state_dict(ck["model"], model, source))
        ema.load_state_dict(loaders.check_state_dict(ck["ema"], ema, source))
        _restore("optimizer state", ckpt_path, opt.load_state_dict, ck["optimizer"])
        _restore("generator state", ckpt_path, lambda r: gen.set_state(r.cpu()), ck["rng"])
        _restore("noise family state", ckpt_path, process.family.load_state_dict, ck["family"])
        _restore("step and losses", ckpt_path, lambda: (int(ck["step"]), ck["losses"].tolist()))
        step, losses = int(ck["step"]), ck["losses"].tolist()
        if not 0 <= step == len(losses):
            raise UserInputError(f"{source} is inconsistent: step {step} with "
                                 f"{len(losses)} losses")

    def stop(why: str) -> NonFiniteTraining:
        kept = (f"the last good checkpoint ({str(ckpt_path)!r}, step {saved_step}) is kept"
                if saved_step is not None else "no checkpoint was written")
        return NonFiniteTraining(f"training stopped at step {step + 1}: {why}; {kept}; "
                                 "lower --lr or check the data")

    saved_step = step if ckpt_path.exists() else None

    def save() -> None:
        nonlocal saved_step
        if not _weights_finite(model, ema):
            raise stop("the weights are no longer finite")
        saved_step = step
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
            if not bool(torch.isfinite(loss)):
                raise stop(f"the loss is {loss.item()!r}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if not _grads_finite(params):
                raise stop("a gradient is not finite")
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
    config = load_run_config(run_dir)
    ck = _load_checkpoint(ckpt_path, device)
    shape = _data_shape(config)
    is_image = len(shape) == 3
    family = make_family(config.family)
    _restore("noise family state", ckpt_path, family.load_state_dict, ck["family"])
    process = Diffusion(family, make_schedule(config.schedule, config.num_timesteps),
                        config.prediction_type, clip_sample=is_image, clip_sample_range=1.0)
    model = make_denoiser(config.resolved_denoiser(is_image), shape, **config.denoiser_options)
    model.load_state_dict(loaders.check_state_dict(ck["ema"], model,
                                                   f"checkpoint {str(ckpt_path)!r}"))
    model.to(device).eval().requires_grad_(False)
    return TrainedModel(config, model, process, shape, int(ck["step"]), ck["losses"].tolist())


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The validated :class:`TrainConfig` of a run directory (one line if it is bad)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise UserInputError(f"{run_dir} is not a trained run: it needs {CONFIG_FILE} and"
                             f" {CHECKPOINT_FILE} (run `serialrepro train` first)")
    config = TrainConfig.from_dict(_migrate(loaders.load_json(path, "run config")),
                                   f"run config {str(path)!r}")
    check_schedule_cost(config)
    return config


def _migrate(saved):
    """A saved run config in today's names: runs written before the diffusers names say
    ``eps``/``x0``, read (silently: the user wrote no code) as ``epsilon``/``sample``."""
    if isinstance(saved, dict) and saved.get("prediction_type") in PREDICTION_ALIASES:
        saved = {**saved, "prediction_type": PREDICTION_ALIASES[saved["prediction_type"]]}
    return saved


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


def sampler_names() -> list[str]:
    """The sampler names a user may give (``auto`` included), in the registry's order."""
    from serialrepro.models.samplers import SAMPLERS

    return ["auto", *SAMPLERS]


def resolve_sampler(name: str, variance_preserving: bool) -> str:
    """The registry key of a user's sampler name; ``auto`` is DDPM for variance-preserving
    families and ``x0-renoise`` (cold diffusion's Algorithm 1) otherwise."""
    from serialrepro.errors import unknown_name
    from serialrepro.models.samplers import SAMPLER_ALIASES, SAMPLERS

    if name == "auto":
        return "ddpm" if variance_preserving else "x0-renoise"
    key = SAMPLER_ALIASES.get(name, name)
    if key not in SAMPLERS:
        raise unknown_name("sampler", name, sampler_names())
    return key


def sample_from(trained: TrainedModel, n: int, sampler: str = "auto", stride: int = 1,
                seed: int = 0, per_sample_seeds: bool = False, batch_size: int = 1000,
                device: torch.device | str | None = None, respace: str = "recompute",
                **sampler_kwargs) -> Tensor:
    """Draw ``n`` samples from a trained model with a named sampler on a strided schedule.

    ``sampler="auto"`` uses DDPM ancestral sampling for variance-preserving families and
    ``x0-renoise`` (cold diffusion's Algorithm 1) otherwise. With ``per_sample_seeds`` every
    random draw of sample i comes from seed + i alone, whatever ``n`` and the batch size
    (EDM's convention); the network's float32 arithmetic can still depend on what else is
    in the batch, so samples agree across batch sizes to float32 round-off amplified over
    the steps (about 1e-3 after 1000 steps), not bit for bit. ``respace`` is
    ``"recompute"`` (betas recomputed for the stride) or ``"naive"`` (the T-step tables
    kept: naive striding, see :mod:`serialrepro.models.schedules`).
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


