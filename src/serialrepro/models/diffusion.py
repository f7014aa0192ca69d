"""The diffusion process: a noise family on a (possibly respaced) schedule.

:class:`Diffusion` is called the way diffusers' ``DDPMScheduler`` is, and
:class:`DDIMDiffusion` the way ``DDIMScheduler`` is (docs/diffusers.md maps each call):

- ``add_noise(original_samples, noise, timesteps)`` (DDPM eq. 4 for the Gaussian family,
  the family's degradation otherwise); ``add_noise_from(original_samples, timesteps,
  generator)`` draws the noise itself; ``get_velocity(sample, noise, timesteps)``.
- ``set_timesteps(num_inference_steps)`` keeps the training timesteps of diffusers'
  ``timestep_spacing`` (``leading``, ``trailing``, ``linspace``; ``steps_offset``), in
  place, with ``timesteps`` descending; :meth:`Diffusion.respace` is our stride
  (0, k, 2k, …, ⌊T/k⌋ steps), returning a new process.
- ``step(model_output, timestep, sample, generator=None, return_dict=True)`` returns a
  :class:`SchedulerOutput` (``prev_sample``, ``pred_original_sample``; a plain tuple with
  ``return_dict=False``).
- ``prediction_type`` ``epsilon``, ``sample`` or ``v_prediction`` (Salimans & Ho 2022,
  v = √ᾱ ε − √(1−ᾱ) x_0); the old names ``eps`` and ``x0`` still work with a
  DeprecationWarning. ``clip_sample`` (bool) and ``clip_sample_range``; the old
  ``clip_sample=<float>`` still works with a DeprecationWarning. Unlike diffusers,
  ``clip_sample`` defaults to False (our 2-D toys are unbounded).
- ``betas``, ``alphas``, ``alphas_cumprod``: the training schedule's tables (length T),
  as in diffusers, whatever the respacing.

Timesteps ``t`` are always training timesteps (what the network is conditioned on); a
respaced process steps only from its kept timesteps. The reverse steps (the maths) are
methods here; the samplers of :mod:`serialrepro.models.samplers` are loops over them,
unpacking ``(x_{t−1}, x̂_0)``:

- :meth:`Diffusion.ddpm_step`: DDPM ancestral step (Ho et al. 2020, eqs. 6–7 with x̂_0
  plugged in, Algorithm 2); ``step`` is this step for diffusers' callers.
- :meth:`Diffusion.ddim_step`: DDIM (Song et al. 2021, eq. 12) with η, to the previous
  kept timestep, ε re-derived from the clipped x̂_0. :meth:`DDIMDiffusion.step` is
  ``DDIMScheduler.step`` exactly (its previous timestep t − T // n, ``eta``,
  ``use_clipped_model_output``, ``variance_noise``).
- :meth:`Diffusion.reproduction_step`: x̂_0 from the net, then re-noise to the previous
  level with the family, x_{t−1} = D(x̂_0, t−1) (cold diffusion Algorithm 1, a
  posterior-mean agent; docs/design.md §1).
- :meth:`Diffusion.cold_step`: cold diffusion Algorithm 2,
  x_{t−1} = x_t − D(x̂_0, t) + D(x̂_0, t−1), both degradations with the same noise draw.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.models.noise import GeneratorLike, TensorFamily, append_dims, make_family
from serialrepro.models.schedules import (
    TIMESTEP_SPACINGS,
    NoiseSchedule,
    diffusers_schedule,
    make_schedule,
    spaced_timesteps,
)


def check_eta(eta: float) -> float:
    """DDIM's η (Song et al. 2021, eq. 16) as a float: finite and ≥ 0 (η = 0 is
    deterministic, η = 1 has DDPM's variance; above 1 the deterministic part is clamped
    at 0). NaN or infinity would make every sample NaN."""
    try:
        value = float(eta)
    except (TypeError, ValueError):
        raise UserInputError(f"eta {eta!r} is not a number; use a value ≥ 0 (0 = DDIM, "
                             "1 = DDPM-like)") from None
    if not (math.isfinite(value) and value >= 0):
        raise UserInputError(f"eta {eta!r} is invalid; it must be a finite number ≥ 0 "
                             "(0 = DDIM, 1 = DDPM-like)")
    return value


#: What the network predicts, with diffusers' names.
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
#: Old names, still accepted (with a DeprecationWarning where a caller gives them).
PREDICTION_ALIASES = {"eps": "epsilon", "x0": "sample"}
#: The posterior variances of diffusers' ``variance_type`` that :meth:`Diffusion.step`
#: supports: σ² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (``fixed_small``; ``fixed_small_log``
#: is the same σ computed as exp(½ log β̃_t)), or σ² = β_t (``fixed_large``); Ho et al.
#: 2020, §3.2.
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large")


def check_prediction_type(name: str, warn: bool = True) -> str:
    """The diffusers name of a prediction type; an old name (``eps``, ``x0``) maps to its
    new one with a DeprecationWarning (none with ``warn=False``, for saved files), an
    unknown one is a one-line error listing the valid ones."""
    if name in PREDICTION_TYPES:
        return name
    if isinstance(name, str) and name in PREDICTION_ALIASES:
        new = PREDICTION_ALIASES[name]
        if warn:
            warnings.warn(f"prediction_type {name!r} is deprecated; use {new!r}",
                          DeprecationWarning, stacklevel=3)
        return new
    raise unknown_name("prediction type", name, PREDICTION_TYPES)


def _check_choice(what: str, name: str, valid: Sequence[str]) -> str:
    if name not in valid:
        raise unknown_name(what, name, valid)
    return name


class SchedulerOutput(NamedTuple):
    """What ``step`` returns: diffusers' ``DDPMSchedulerOutput`` fields. A named tuple, so
    ``out.prev_sample``, ``out[0]`` and ``x_prev, x0 = out`` all work."""

    prev_sample: Tensor
    pred_original_sample: Tensor

    def to_tuple(self) -> tuple[Tensor, Tensor]:
        return tuple(self)


class SchedulerConfig(dict):
    """A scheduler's settings: a dict whose keys also read as attributes."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Diffusion:
    """Forward process q(x_t | x_0) and single reverse steps for one family and schedule.

    ``schedule`` is a :class:`~serialrepro.models.schedules.NoiseSchedule` (the training
    schedule of :func:`~serialrepro.models.schedules.make_schedule`, or one cut from it).
    ``timestep_spacing`` and ``steps_offset`` are what :meth:`set_timesteps` uses when not
    given there; ``variance_type`` is the DDPM step's σ² (:data:`VARIANCE_TYPES`).
    """

    def __init__(
        self, family: TensorFamily | str, schedule: NoiseSchedule,
        prediction_type: str | None = None, clip_sample: bool | float | None = False,
        clip_sample_range: float = 1.0, *, variance_type: str = "fixed_small",
        timestep_spacing: str = "leading", steps_offset: int = 0,
    ) -> None:
        self.family = make_family(family) if isinstance(family, str) else family
        if prediction_type is None:
            pred = check_prediction_type(self.family.default_prediction, warn=False)
        else:
            pred = check_prediction_type(prediction_type)
        if pred in ("epsilon", "v_prediction"):
            self.family._need_vp(f"{pred} prediction")
        self.prediction_type = pred
        self.clip_sample, self.clip_sample_range = _check_clip(clip_sample, clip_sample_range)
        self.variance_type = _check_choice("variance type", variance_type, VARIANCE_TYPES)
        self.timestep_spacing = _check_choice("timestep spacing", timestep_spacing,
                                              TIMESTEP_SPACINGS)
        spaced_timesteps(schedule.num_train_timesteps, 1, self.timestep_spacing, steps_offset)
        self.steps_offset = int(steps_offset)
        self.num_train_timesteps = schedule.num_train_timesteps
        self.init_noise_sigma = 1.0
        self.betas = schedule.training_betas
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = schedule.training_alphas_cumprod
        self.num_inference_steps: int | None = None
        self._use(schedule)

    def _use(self, schedule: NoiseSchedule) -> None:
        """Step on ``schedule`` from now on (its tables, kept timesteps and lookups)."""
        self.schedule = schedule
        if schedule.num_steps != self.num_train_timesteps:
            self.num_inference_steps = schedule.num_steps
        self.timesteps = schedule.timesteps.flip(0)  # descending, as diffusers
        self._index = torch.full((schedule.num_train_timesteps,), -1, dtype=torch.long)
        self._index[schedule.timesteps] = torch.arange(schedule.num_steps)
        self._index_list = self._index.tolist()  # fast path for the samplers' int timesteps
        self._cache: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}

    def _settings(self) -> dict:
        return dict(prediction_type=self.prediction_type, clip_sample=self.clip_sample,
                    clip_sample_range=self.clip_sample_range, variance_type=self.variance_type,
                    timestep_spacing=self.timestep_spacing, steps_offset=self.steps_offset)

    @classmethod
    def create(cls, family: str, schedule: str = "linear", num_timesteps: int = 1000,
               prediction_type: str | None = None, clip_sample: bool | float | None = False,
               **kwargs) -> Diffusion:
        """The process of a family on the named schedule (keyword options as the class)."""
        return cls(family, make_schedule(schedule, num_timesteps), prediction_type,
                   clip_sample, **kwargs)

    @classmethod
    def from_config(cls, config: dict, family: TensorFamily | str = "gaussian") -> Diffusion:
        """The process of a diffusers scheduler config (``scheduler_config.json`` as a
        mapping; DDPMScheduler's and DDIMScheduler's keys), on ``family``.

        Betas by :func:`~serialrepro.models.schedules.diffusers_schedule`; clipping,
        prediction type, variance type, spacing and offset as configured. Settings we do
        not reproduce (``thresholding``, ``rescale_betas_zero_snr``, learned variances)
        are refused in one line when turned on; other keys (``_class_name``, PNDM's
        ``skip_prk_steps``, …) do not change the process and are ignored.
        """
        if not isinstance(config, dict):
            raise UserInputError("a scheduler config must be a mapping of option names to "
                                 "values")
        c = {k: v for k, v in config.items() if not k.startswith("_")}
        for key in ("thresholding", "rescale_betas_zero_snr"):
            if c.get(key):
                raise UserInputError(f"scheduler config: {key}=true is not supported; only "
                                     "plain clipping (clip_sample) is")
        variance = c.get("variance_type") or "fixed_small"
        schedule = diffusers_schedule(c.get("num_train_timesteps", 1000),
                                      c.get("beta_start", 0.0001), c.get("beta_end", 0.02),
                                      c.get("beta_schedule", "linear"), c.get("trained_betas"))
        extra = {"set_alpha_to_one": bool(c.get("set_alpha_to_one", True))} \
            if issubclass(cls, DDIMDiffusion) else {}
        return cls(family, schedule, c.get("prediction_type", "epsilon"),
                   bool(c.get("clip_sample", True)), c.get("clip_sample_range", 1.0),
                   variance_type=variance,
                   timestep_spacing=c.get("timestep_spacing", "leading"),
                   steps_offset=c.get("steps_offset", 0), **extra)

    @property
    def config(self) -> SchedulerConfig:
        """This process's settings under diffusers' config names (``from_config`` reads
        them back), as a mapping with attribute access like diffusers' ``config``."""
        return SchedulerConfig(num_train_timesteps=self.num_train_timesteps,
                               trained_betas=self.betas.tolist(), **self._settings())

    @property
    def num_steps(self) -> int:
        """How many reverse steps a sampler takes (the kept timesteps)."""
        return self.schedule.num_steps

    def __len__(self) -> int:
        return self.num_train_timesteps

    def respace(self, stride: int, respacing: str = "recompute") -> Diffusion:
        """The same process on the strided schedule (⌊T/k⌋ steps): betas recomputed for the
        jumps, or with ``respacing="naive"`` the original one-step tables kept
        (:mod:`serialrepro.models.schedules`). A new process; this one is unchanged."""
        return type(self)(self.family, self.schedule.respace(stride, respacing),
                          **self._settings())

    def set_timesteps(self, num_inference_steps: int | None = None,
                      device: torch.device | str | None = None,
                      timesteps: Sequence[int] | None = None, *,
                      timestep_spacing: str | None = None,
                      steps_offset: int | None = None) -> None:
        """Step on ``num_inference_steps`` training timesteps from now on, in place, as
        diffusers' ``set_timesteps``: spaced by ``timestep_spacing`` (default: this
        process's; :func:`~serialrepro.models.schedules.spaced_timesteps`), or the
        descending custom ``timesteps``. Betas are recomputed for the jumps, so each step
        is the exact posterior between consecutive kept timesteps (diffusers' DDPM step)."""
        if (num_inference_steps is None) == (timesteps is None):
            raise UserInputError("set_timesteps needs exactly one of num_inference_steps "
                                 "and timesteps")
        if timesteps is not None:
            ts = [int(t) for t in timesteps]
            if any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
                raise UserInputError("custom timesteps must be in descending order")
        else:
            spacing = _check_choice("timestep spacing", timestep_spacing or
                                    self.timestep_spacing, TIMESTEP_SPACINGS)
            offset = self.steps_offset if steps_offset is None else steps_offset
            ts = spaced_timesteps(self.num_train_timesteps, num_inference_steps, spacing, offset)
            self.timestep_spacing, self.steps_offset = spacing, int(offset)
        self._use(self.schedule.at_timesteps(ts))
        self.num_inference_steps = len(ts)
        if device is not None:
            self.timesteps = self.timesteps.to(device)

    def previous_timestep(self, timestep: int | Tensor) -> int:
        """The next timestep of ``timesteps`` after ``timestep`` (−1 after the last)."""
        i = int(self.index_of(int(timestep)))
        return int(self.schedule.timesteps[i - 1]) if i > 0 else -1

    def scale_model_input(self, sample: Tensor, timestep: int | Tensor | None = None) -> Tensor:
        """The network's input at ``timestep``: ``sample`` itself (as for diffusers' DDPM)."""
        return sample

    # -- lookups ----------------------------------------------------------------------
    def _tables(self, like: Tensor) -> dict[str, Tensor]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            s = self.schedule
            self._cache[key] = {
                name: value.to(dtype=like.dtype, device=like.device) for name, value in (
                    ("betas", s.betas), ("alphas", s.alphas),
                    ("alphas_cumprod", s.alphas_cumprod),
                    ("alphas_cumprod_prev", s.alphas_cumprod_prev),
                    ("train_alphas_cumprod", self.alphas_cumprod))
            }
        return self._cache[key]

    def index_of(self, t: Tensor | int) -> Tensor:
        """Positions of training timesteps ``t`` in this (respaced) schedule."""
        t_cpu = self._check_timesteps(t)
        idx = self._index[t_cpu]
        if (idx < 0).any():
            raise UserInputError(f"timestep {t} is not one of this respaced schedule's steps")
        return idx

    def _check_timesteps(self, t: Tensor | int) -> Tensor:
        t_cpu = torch.as_tensor(t).cpu()
        if t_cpu.is_floating_point() or t_cpu.is_complex() or t_cpu.dtype == torch.bool:
            raise UserInputError(f"timesteps must be integers in 0..{self._index.numel() - 1};"
                                 f" got a {t_cpu.dtype} tensor")
        t_cpu = t_cpu.long()
        if ((t_cpu < 0) | (t_cpu >= self._index.numel())).any():
            raise UserInputError(f"timestep {t} outside 0..{self._index.numel() - 1}")
        return t_cpu

    def _at(self, name: str, t: Tensor | int, like: Tensor) -> Tensor:
        table = self._tables(like)[name]
        if isinstance(t, int) and 0 <= t < len(self._index_list) and self._index_list[t] >= 0:
            return table[self._index_list[t]]  # one timestep for the batch (sampling)
        return table[self.index_of(t).to(like.device)]

    def _abar(self, t: Tensor | int, like: Tensor) -> Tensor:
        """ᾱ_t of the training schedule, for any training timestep, flattened (diffusers'
        ``alphas_cumprod[timesteps]``)."""
        table = self._tables(like)["train_alphas_cumprod"]
        return table[self._check_timesteps(t).to(like.device)].flatten()

    # -- forward process --------------------------------------------------------------
    def add_noise(self, original_samples: Tensor, noise: Tensor,
                  timesteps: Tensor | int | None = None) -> Tensor:
        """x_t for explicit ``noise`` (a draw of :meth:`sample_noise`), as diffusers'
        ``add_noise``: √ᾱ_t x_0 + √(1−ᾱ_t) ε (DDPM eq. 4) for variance-preserving families,
        the family's degradation D(x_0, ᾱ_t; noise) otherwise. Any training timestep."""
        if not isinstance(noise, Tensor) or not noise.is_floating_point() or timesteps is None \
                or _is_generator(timesteps):
            raise UserInputError(
                "add_noise takes (original_samples, noise, timesteps), as diffusers; to draw "
                "the noise from a generator call add_noise_from(original_samples, timesteps, "
                "generator)")
        return self.family.degrade(original_samples, self._abar(timesteps, original_samples),
                                   noise)

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """:meth:`add_noise` with DDPM's argument order (x_0, t, ε)."""
        return self.add_noise(x0, noise, t)

    def sample_noise(self, original_samples: Tensor, generator: GeneratorLike = None) -> Tensor:
        """A draw of the family's noise shaped like ``original_samples`` (``randn`` for
        the Gaussian family), from ``generator`` (or a list, one per sample)."""
        return self.family.sample_noise(original_samples.shape, generator,
                                        original_samples.dtype, original_samples.device)

    def add_noise_from(self, original_samples: Tensor, timesteps: Tensor | int,
                       generator: GeneratorLike = None) -> Tensor:
        """x_t ~ q(x_t | x_0), drawing the noise from ``generator``:
        ``add_noise(x0, sample_noise(x0, generator), timesteps)``."""
        return self.add_noise(original_samples, self.sample_noise(original_samples, generator),
                              timesteps)

    def get_velocity(self, sample: Tensor, noise: Tensor, timesteps: Tensor | int) -> Tensor:
        """v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (Salimans & Ho 2022, §4; diffusers' ``get_velocity``)."""
        self.family._need_vp("v-prediction")
        a = append_dims(self._abar(timesteps, sample), sample.ndim)
        return torch.sqrt(a) * noise - torch.sqrt(1 - a) * sample

    def training_target(self, x0: Tensor, noise: Tensor,
                        timesteps: Tensor | int | None = None) -> Tensor:
        """What the network regresses: ε (``epsilon``), x_0 (``sample``) or v
        (``v_prediction``, which needs the ``timesteps``)."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        if timesteps is None:
            raise UserInputError("the v-prediction target needs the timesteps")
        return self.get_velocity(x0, noise, timesteps)

    # -- reverse-step building blocks -------------------------------------------------
    def _predict(self, model_output: Tensor, t: Tensor | int,
                 x_t: Tensor) -> tuple[Tensor, Tensor | None]:
        """(x̂_0 clipped to ±clip_sample_range when clip_sample, ε̂ from the unclipped
        output or None for non-variance-preserving families); the formulas of diffusers'
        DDIM step 3 (DDPM eq. 15 for ε, Salimans & Ho 2022 eq. 10 for v)."""
        ac = self._at("alphas_cumprod", t, x_t)
        if self.prediction_type == "epsilon":
            x0 = self.family.x0_from_eps(x_t, model_output, ac)
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (self.family.eps_from_x0(x_t, x0, ac)
                   if self.family.variance_preserving else None)
        else:
            a = append_dims(ac, x_t.ndim)
            x0 = torch.sqrt(a) * x_t - torch.sqrt(1 - a) * model_output
            eps = torch.sqrt(a) * model_output + torch.sqrt(1 - a) * x_t
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0, eps

    def predict_x0(self, model_output: Tensor, t: Tensor | int, x_t: Tensor) -> Tensor:
        """x̂_0 from the network output, clipped to ±clip_sample_range when clip_sample."""
        return self._predict(model_output, t, x_t)[0]

    def posterior_mean_variance(
        self, x0: Tensor, x_t: Tensor, t: Tensor | int
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance β̃ of q(x_{t−1} | x_t, x_0) (DDPM eqs. 6–7) on this schedule."""
        self.family._need_vp("the DDPM posterior")
        n = x_t.ndim
        beta = append_dims(self._at("betas", t, x_t), n)
        alpha = append_dims(self._at("alphas", t, x_t), n)
        ac = append_dims(self._at("alphas_cumprod", t, x_t), n)
        ac_prev = append_dims(self._at("alphas_cumprod_prev", t, x_t), n)
        mean = (torch.sqrt(ac_prev) * beta / (1 - ac)) * x0 \
            + (torch.sqrt(alpha) * (1 - ac_prev) / (1 - ac)) * x_t
        var = beta * (1 - ac_prev) / (1 - ac)
        return mean, var

    # -- reverse steps: (model_output, t, x_t, generator) -> (x_{t-1}, x̂_0) ---------------
    def _ddpm(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
              generator: GeneratorLike, draw_at_zero: bool) -> SchedulerOutput:
        x0 = self.predict_x0(model_output, t, x_t)
        mean, var = self.posterior_mean_variance(x0, x_t, t)
        if self.variance_type == "fixed_large":
            var = append_dims(self._at("betas", t, x_t), x_t.ndim)
        t_cpu = torch.as_tensor(t)
        if t_cpu.ndim == 0 and int(t_cpu) == 0 and not draw_at_zero:
            return SchedulerOutput(mean, x0)  # diffusers: no noise (and no draw) at t = 0
        if t_cpu.ndim == 0:
            var = var * float(int(t_cpu) > 0)
        else:
            var = var * append_dims((t_cpu > 0).to(var.device, var.dtype), x_t.ndim)
        z = self.family.posterior_noise(x_t.shape, generator, x_t.dtype, x_t.device)
        return SchedulerOutput(mean + torch.sqrt(var) * z, x0)

    def ddpm_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                  generator: GeneratorLike = None) -> SchedulerOutput:
        """DDPM ancestral step: x_{t−1} = μ̃(x_t, x̂_0) + σ z (Ho et al. 2020, Alg. 2),
        σ² from ``variance_type``, no noise at t = 0. What the ``ddpm`` sampler runs; it
        draws z at t = 0 too (zero-weighted), so a generator shared by batches advances
        the same at every step."""
        return self._ddpm(model_output, t, x_t, generator, draw_at_zero=True)

    def step(self, model_output: Tensor, timestep: Tensor | int, sample: Tensor,
             generator: GeneratorLike = None, return_dict: bool = True
             ) -> SchedulerOutput | tuple[Tensor, Tensor]:
        """diffusers' ``DDPMScheduler.step``: the DDPM ancestral step from ``timestep`` to
        the next of ``timesteps``; no noise is drawn at t = 0, as there."""
        out = self._ddpm(model_output, _scalar(timestep), sample, generator, draw_at_zero=False)
        return out if return_dict else tuple(out)

    def ddim_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                  generator: GeneratorLike = None, eta: float = 0.0) -> SchedulerOutput:
        """DDIM (Song et al. 2021, eq. 12) to the previous kept timestep: η = 0
        deterministic, η = 1 DDPM-like; ε̂ re-derived from the clipped x̂_0 (diffusers'
        ``use_clipped_model_output=True``)."""
        eta = check_eta(eta)
        x0 = self.predict_x0(model_output, t, x_t)
        ac = self._at("alphas_cumprod", t, x_t)
        eps = self.family.eps_from_x0(x_t, x0, ac)
        ac_prev = append_dims(self._at("alphas_cumprod_prev", t, x_t), x_t.ndim)
        return SchedulerOutput(self._ddim(x0, eps, append_dims(ac, x_t.ndim), ac_prev, eta,
                                          generator, None), x0)

    def _ddim(self, x0: Tensor, eps: Tensor, ac: Tensor, ac_prev: Tensor, eta: float,
              generator: GeneratorLike, variance_noise: Tensor | None) -> Tensor:
        """DDIM eq. 12 with σ_t(η) of eq. 16: √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z."""
        sigma = eta * torch.sqrt((1 - ac_prev) / (1 - ac) * (1 - ac / ac_prev))
        x_prev = torch.sqrt(ac_prev) * x0 + torch.sqrt((1 - ac_prev - sigma**2).clamp(min=0)) * eps
        if eta > 0:
            if variance_noise is None:
                variance_noise = self.family.posterior_noise(eps.shape, generator, eps.dtype,
                                                             eps.device)
            x_prev = x_prev + sigma * variance_noise
        return x_prev

    def reproduction_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                          generator: GeneratorLike = None) -> SchedulerOutput:
        """Cold diffusion's Algorithm 1: reconstruct x̂_0, degrade it again to level t−1.

        x_{t−1} = D(x̂_0, t−1) with fresh family noise; at the last step ᾱ_prev = 1 and D is
        the identity, so the output is x̂_0.
        """
        x0 = self.predict_x0(model_output, t, x_t)
        noise = self.family.sample_noise(x_t.shape, generator, x_t.dtype, x_t.device)
        return SchedulerOutput(
            self.family.degrade(x0, self._at("alphas_cumprod_prev", t, x_t), noise), x0)

    def cold_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                  generator: GeneratorLike = None) -> SchedulerOutput:
        """Cold diffusion Algorithm 2: x_{t−1} = x_t − D(x̂_0, t) + D(x̂_0, t−1).

        Both degradations share one noise draw, inferred from x_t where the family can
        (for VP families ε̂, which makes this step DDIM with η = 0, as Bansal et al. note).
        """
        x0 = self.predict_x0(model_output, t, x_t)
        abar = self._at("alphas_cumprod", t, x_t)
        noise = self.family.infer_noise(x_t, x0, abar, generator)
        d_t = self.family.degrade(x0, abar, noise)
        d_prev = self.family.degrade(x0, self._at("alphas_cumprod_prev", t, x_t), noise)
        return SchedulerOutput(x_t - d_t + d_prev, x0)


class DDIMDiffusion(Diffusion):
    """The process called as diffusers' ``DDIMScheduler``: :meth:`step` is DDIM's, with
    its signature (``eta`` fourth). Everything else, the internal samplers included, is
    :class:`Diffusion`'s; ``set_alpha_to_one=False`` makes ᾱ after the last step ᾱ_0, as
    there."""

    def __init__(self, *args, set_alpha_to_one: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.set_alpha_to_one = bool(set_alpha_to_one)

    def _settings(self) -> dict:
        return {**super()._settings(), "set_alpha_to_one": self.set_alpha_to_one}

    def step(self, model_output: Tensor, timestep: Tensor | int, sample: Tensor,
             eta: float = 0.0, use_clipped_model_output: bool = False,
             generator: GeneratorLike = None, variance_noise: Tensor | None = None,
             return_dict: bool = True) -> SchedulerOutput | tuple[Tensor, Tensor]:
        """diffusers' ``DDIMScheduler.step`` (Song et al. 2021, eqs. 12 and 16).

        As there, the step goes from t to t − T // n (n = ``num_inference_steps``), read
        from the training ᾱ: with ``leading`` spacing that is the next entry of
        ``timesteps``; with ``linspace``, or ``trailing`` where n does not divide T, it
        lands between entries, as in diffusers. :meth:`ddim_step` (our ``ddim`` sampler)
        always steps to the next kept timestep. ε̂ is the network's own (ε-prediction) or
        derived from the unclipped x̂_0, unless ``use_clipped_model_output``.
        """
        eta = check_eta(eta)
        if variance_noise is not None and generator is not None:
            raise UserInputError("pass either generator or variance_noise to step, not both")
        t = int(_scalar(timestep))
        n = self.num_inference_steps or self.num_train_timesteps
        prev_t = t - self.num_train_timesteps // n
        train = self._tables(sample)["train_alphas_cumprod"]
        ac = train[self._check_timesteps(t)]
        ac_prev = train[prev_t] if prev_t >= 0 else (
            train.new_ones(()) if self.set_alpha_to_one else train[0])
        x0, eps = self._predict(model_output, t, sample)
        if eps is None or use_clipped_model_output:
            eps = self.family.eps_from_x0(sample, x0, ac)
        prev = self._ddim(x0, eps, ac, ac_prev, eta, generator, variance_noise)
        return SchedulerOutput(prev, x0) if return_dict else (prev, x0)


def _is_generator(value) -> bool:
    return isinstance(value, torch.Generator) or (
        isinstance(value, list | tuple) and bool(value)
        and all(isinstance(g, torch.Generator) for g in value))


def _scalar(timestep: Tensor | int) -> Tensor | int:
    """diffusers' steps take one timestep for the batch: a Python int or 0-d tensor."""
    if isinstance(timestep, Tensor) and timestep.ndim == 0:
        return int(timestep)
    return timestep


def _check_clip(clip_sample: bool | float | None, clip_range: float) -> tuple[bool, float]:
    """(clip_sample, clip_sample_range), accepting the old ``clip_sample=<range>``."""
    if clip_sample is None:
        clip_sample = False
    if not isinstance(clip_sample, bool):
        try:
            value = float(clip_sample)
        except (TypeError, ValueError):
            raise UserInputError(f"clip_sample {clip_sample!r} must be True or False") from None
        warnings.warn(f"clip_sample={clip_sample!r} (a number) is deprecated; use "
                      f"clip_sample=True, clip_sample_range={value!r}", DeprecationWarning,
                      stacklevel=3)
        clip_sample, clip_range = True, value
    try:
        clip_range = float(clip_range)
    except (TypeError, ValueError):
        clip_range = math.nan
    if clip_sample and not (math.isfinite(clip_range) and clip_range > 0):
        raise UserInputError(f"clip_sample_range {clip_range!r} must be a finite number > 0")
    return clip_sample, clip_range
