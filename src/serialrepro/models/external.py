"""Someone else's trained model as our denoiser: a local diffusers ``UNet2DModel``.

The thin adapter layer of k-diffusion's ``external.py`` (docs/style.md): the wrapped model
answers ``denoiser(x_t, t)`` like our own networks, and the process it was trained for
becomes a :class:`~serialrepro.models.diffusion.Diffusion`, so every sampler and stride
of :mod:`serialrepro.models.samplers` runs on it unchanged. What is mapped:

- **timesteps**: ours are indices of the training schedule, t = 0 … T−1 with
  ᾱ_t = ∏_{s≤t}(1 − β_s) (DDPM eq. 4); diffusers' ``DDPMScheduler`` indexes its
  ``alphas_cumprod`` the same way, so the model is called with our t unchanged
  (:meth:`DiffusersDenoiser.model_timesteps`);
- **betas**: the scheduler's own ``betas`` (whatever its ``beta_schedule`` or
  ``trained_betas``), as float64, with ``num_train_timesteps`` of them;
- **prediction type**: ``epsilon`` → our ε, ``sample`` → our x_0, ``v_prediction``
  (Salimans & Ho 2022) → ε = √ᾱ_t v + √(1 − ᾱ_t) x_t, converted in the adapter;
- **clipping**: ``clip_sample`` with ``clip_sample_range`` → x̂_0 clipped to ±range;
- **inference steps**: not taken from the config (``timestep_spacing``, ``steps_offset``
  say how diffusers picks them); our strides and respacings choose them, as for our models.

What the process cannot represent is refused with one line, never approximated:
``variance_type`` other than ``fixed_small``/``fixed_small_log`` (our DDPM step uses the
posterior variance β̃_t, DDPM eq. 7), ``thresholding``, ``rescale_betas_zero_snr``,
class- or text-conditional models, Fourier (σ-conditioned) time embeddings.

Files are read from the folder only (``local_files_only``): nothing is downloaded. Two
layouts are accepted, both as written by ``save_pretrained``: a ``UNet2DModel`` folder
(``config.json`` + weights) with the scheduler's ``scheduler_config.json`` beside them,
or a ``DDPMPipeline`` folder (``model_index.json``, ``unet/``, ``scheduler/``).
diffusers is an optional dependency, imported only here and only when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from serialrepro.errors import UserInputError
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.schedules import NoiseSchedule

UNET_CONFIG = "config.json"
SCHEDULER_CONFIG = "scheduler_config.json"
PIPELINE_INDEX = "model_index.json"
#: weight files ``save_pretrained`` writes (safetensors by default, .bin on request)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
#: diffusers' prediction types → ours (v is converted to ε by the adapter)
PREDICTION_TYPES = {"epsilon": "epsilon", "sample": "sample", "v_prediction": "epsilon"}
#: the variance types whose DDPM step is ours (β̃_t, DDPM eq. 7)
VARIANCE_TYPES = ("fixed_small", "fixed_small_log")


def import_diffusers():
    """The diffusers module, or a one-line error naming how to install it."""
    try:
        import diffusers
    except ImportError:
        raise UserInputError("--diffusers-model needs the diffusers package, which is not "
                             "installed: pip install diffusers") from None
    return diffusers


@contextlib.contextmanager
def _quiet(diffusers):
    """diffusers' own log notices (ignored config keys, optional speed-ups) kept off the
    terminal while it loads; its verbosity is restored afterwards."""
    logging = diffusers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


@dataclass(frozen=True)
class ModelFiles:
    """Where the parts of a saved diffusers model lie."""

    folder: Path
    unet_dir: Path
    scheduler_config: Path
    weights: Path


def find_model_files(folder: str | Path) -> ModelFiles:
    """The UNet folder, its weights and the scheduler config of a saved model, or one
    line naming the first file that is missing (module docstring: the two layouts)."""
    folder = Path(folder)
    what = f"--diffusers-model {str(folder)!r}"
    if not folder.is_dir():
        raise UserInputError(f"{what} is not a folder (give the folder save_pretrained "
                             "wrote)" if folder.exists() else f"{what} does not exist")
    if (folder / PIPELINE_INDEX).is_file():
        unet_dir, sched = folder / "unet", folder / "scheduler" / SCHEDULER_CONFIG
    else:
        unet_dir, sched = folder, folder / SCHEDULER_CONFIG
    if not (unet_dir / UNET_CONFIG).is_file():
        raise UserInputError(f"{what} is not a diffusers model: {unet_dir / UNET_CONFIG} is "
                             f"missing (need a UNet2DModel folder with {SCHEDULER_CONFIG} "
                             f"beside it, or a DDPMPipeline folder with {PIPELINE_INDEX})")
    weights = next((unet_dir / w for w in WEIGHT_FILES if (unet_dir / w).is_file()), None)
    if weights is None:
        raise UserInputError(f"{what}: the model's weights are missing: no "
                             f"{' or '.join(WEIGHT_FILES)} in {unet_dir}")
    if not sched.is_file():
        raise UserInputError(f"{what}: the scheduler config {sched} is missing (save the "
                             "training scheduler with scheduler.save_pretrained into the "
                             "model folder)")
    return ModelFiles(folder, unet_dir, sched, weights)


def _read_config(path: Path, what: str) -> dict:
    from serialrepro.loaders import load_json

    return load_json(path, what)


def process_from_scheduler_config(config: dict, source: str = "scheduler config") -> tuple[
        Diffusion, str]:
    """Our :class:`Diffusion` for a diffusers scheduler config, and the model's
    prediction type in diffusers' words; refuses what the process cannot represent."""
    diffusers = import_diffusers()

    def refuse(why: str) -> UserInputError:
        return UserInputError(f"{source}: {why}")

    pred = config.get("prediction_type", "epsilon")
    if pred not in PREDICTION_TYPES:
        raise refuse(f"prediction_type {pred!r} is not supported (valid: "
                     f"{', '.join(PREDICTION_TYPES)})")
    variance = config.get("variance_type", "fixed_small")
    if variance not in VARIANCE_TYPES:
        raise refuse(f"variance_type {variance!r} cannot be represented: our DDPM step uses "
                     f"the posterior variance ({' or '.join(VARIANCE_TYPES)})")
    for flag in ("thresholding", "rescale_betas_zero_snr"):
        if config.get(flag):
            raise refuse(f"{flag} = true cannot be represented; only plain clipping "
                         "(clip_sample, clip_sample_range) is")
    keep = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        # DDPMScheduler computes betas exactly as every diffusers scheduler with these keys
        with _quiet(diffusers):  # keys of other schedulers (DDIM's) are ignored
            sched = diffusers.DDPMScheduler.from_config(keep)
    except Exception as exc:  # diffusers raises many types for a malformed config
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise refuse(f"not a usable diffusers scheduler config ({first})") from None
    betas = sched.betas.to(torch.float64)
    T = int(betas.numel())
    if T < 2 or not bool(torch.isfinite(betas).all()) or not bool(
            ((betas > 0) & (betas < 1)).all()):
        raise refuse("its betas must be at least 2 numbers in (0, 1)")
    clip = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", True) \
        else None
    if clip is not None and not (math.isfinite(clip) and clip > 0):
        raise refuse(f"clip_sample_range {clip!r} must be a finite number > 0")
    schedule = NoiseSchedule(f"diffusers:{config.get('beta_schedule', 'trained')}", betas,
                             torch.arange(T), T)
    return Diffusion("gaussian", schedule, PREDICTION_TYPES[pred], clip_sample=clip is not None,
                     clip_sample_range=1.0 if clip is None else clip), pred


class DiffusersDenoiser(nn.Module):
    """A diffusers ``UNet2DModel`` answering ``denoiser(x_t, t)`` in our process's terms
    (ε or x_0; v-prediction converted to ε, Salimans & Ho 2022 §4)."""

    def __init__(self, unet: nn.Module, prediction_type: str, alphas_cumprod: Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.prediction_type = prediction_type
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float64).clone())

    @staticmethod
    def model_timesteps(t: Tensor) -> Tensor:
        """Our training timesteps as the model's: the same indices (module docstring)."""
        return t

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.unet(x, self.model_timesteps(t), return_dict=False)[0]
        if self.prediction_type == "v_prediction":
            ac = self.alphas_cumprod[t].to(x.dtype)[(...,) + (None,) * (x.ndim - 1)]
            out = torch.sqrt(ac) * out + torch.sqrt(1 - ac) * x
        return out


@dataclass
class ExternalModel:
    """A wrapped model with what the samplers and ``sample_from`` need (the fields of
    :class:`~serialrepro.models.training.TrainedModel` they read)."""

    denoiser: DiffusersDenoiser
    process: Diffusion
    data_shape: tuple[int, ...]
    files: ModelFiles
    prediction_type: str  # in diffusers' words
    #: sha256 of the UNet config, the scheduler config and the weights file
    fingerprint: str = ""
    config: dict = field(default_factory=dict)

    @property
    def num_timesteps(self) -> int:
        return self.process.schedule.num_train_timesteps

    def describe(self) -> str:
        return (f"diffusers UNet2DModel {self.files.folder.name} ({self.prediction_type}, "
                f"T = {self.num_timesteps})")


def _check_unet_config(cfg: dict, source: str) -> tuple[int, ...]:
    """The data shape [C, H, W] of a UNet2DModel config, refusing other models."""
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise UserInputError(f"{source} describes a {cls}; only diffusers' unconditional "
                             "UNet2DModel is supported")
    if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
        raise UserInputError(f"{source}: a class-conditional UNet2DModel cannot be sampled "
                             "without labels; only unconditional models are supported")
    if cfg.get("time_embedding_type", "positional") != "positional":
        raise UserInputError(f"{source}: time_embedding_type "
                             f"{cfg.get('time_embedding_type')!r} conditions on σ, not on "
                             "DDPM timesteps; only 'positional' is supported")
    c_in, c_out = cfg.get("in_channels", 3), cfg.get("out_channels", 3)
    if c_in != c_out:
        raise UserInputError(f"{source}: out_channels {c_out} differs from in_channels "
                             f"{c_in} (a learned variance); only ε, x_0 or v outputs are "
                             "supported")
    size = cfg.get("sample_size")
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(
            isinstance(s, int) and s > 0 for s in size)) or not (
            isinstance(c_in, int) and c_in > 0):
        raise UserInputError(f"{source}: sample_size {cfg.get('sample_size')!r} and "
                             f"in_channels {c_in!r} must give the image size")
    return (int(c_in), int(size[0]), int(size[1]))


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_diffusers_model(folder: str | Path, device: torch.device | str = "cpu"
                         ) -> ExternalModel:
    """Load a saved ``UNet2DModel`` and its scheduler from ``folder`` (no network), wrapped
    as our denoiser and process (module docstring), in eval mode on ``device``."""
    files = find_model_files(folder)
    unet_cfg = _read_config(files.unet_dir / UNET_CONFIG, "diffusers model config")
    shape = _check_unet_config(unet_cfg, f"diffusers model config "
                                         f"{str(files.unet_dir / UNET_CONFIG)!r}")
    sched_cfg = _read_config(files.scheduler_config, "diffusers scheduler config")
    process, pred = process_from_scheduler_config(
        sched_cfg, f"scheduler config {str(files.scheduler_config)!r}")
    diffusers = import_diffusers()
    try:
        with _quiet(diffusers):
            unet = diffusers.UNet2DModel.from_pretrained(files.unet_dir, local_files_only=True,
                                                         low_cpu_mem_usage=False)
    except Exception as exc:  # a corrupt or foreign weights file: diffusers raises many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserInputError(f"--diffusers-model {str(files.folder)!r}: the UNet2DModel "
                             f"cannot be loaded ({type(exc).__name__}: {first})") from None
    bad = next((n for n, p in unet.state_dict().items()
                if p.is_floating_point() and not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise UserInputError(f"--diffusers-model {str(files.folder)!r}: weights {bad!r} hold "
                             "non-finite values")
    den = DiffusersDenoiser(unet, pred, process.alphas_cumprod)
    den = den.to(device).eval().requires_grad_(False)
    fingerprint = _sha256([files.unet_dir / UNET_CONFIG, files.scheduler_config,
                           files.weights])
    return ExternalModel(den, process, shape, files, pred, fingerprint,
                         json.loads(json.dumps(unet_cfg)))


def diffusers_data_shape(folder: str | Path) -> tuple[int, ...]:
    """The sample shape [C, H, W] of a saved model, from its config alone (for sizing a
    request before any weights are read)."""
    files = find_model_files(folder)
    path = files.unet_dir / UNET_CONFIG
    return _check_unet_config(_read_config(path, "diffusers model config"),
                              f"diffusers model config {str(path)!r}")
