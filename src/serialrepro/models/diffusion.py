"""The diffusion process: a noise family on a (possibly respaced) schedule.

:class:`Diffusion` follows the conventions of diffusers' ``DDPMScheduler``:
``add_noise``, ``step(model_output, t, x_t, generator)``, ``prediction_type`` ("eps" or
"x0"), ``betas`` / ``alphas_cumprod``. Timesteps ``t`` are always indices of the *training*
schedule (what the network is conditioned on); a respaced process only accepts its kept
timesteps. The reverse steps are methods here (the maths), and the samplers in
:mod:`serialrepro.models.samplers` are loops over them:

- :meth:`Diffusion.step`: DDPM ancestral step (Ho et al. 2020, eqs. 6–7 with x̂_0 plugged in).
- :meth:`Diffusion.ddim_step`: DDIM (Song et al. 2021, eq. 12) with η.
- :meth:`Diffusion.reproduction_step`: the serial-reproduction step: x̂_0 from the net, then
  re-noise to the previous level with the family, x_{t−1} = D(x̂_0, t−1) (cold diffusion
  Algorithm 1; docs/design.md §1).
- :meth:`Diffusion.cold_step`: cold diffusion Algorithm 2,
  x_{t−1} = x_t − D(x̂_0, t) + D(x̂_0, t−1), both degradations with the same noise draw.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.models.noise import GeneratorLike, TensorFamily, append_dims, make_family
from serialrepro.models.schedules import NoiseSchedule, make_schedule


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

PREDICTION_TYPES = ("eps", "x0")


class Diffusion:
    """Forward process q(x_t | x_0) and single reverse steps for one family and schedule."""

    def __init__(
        self, family: TensorFamily | str, schedule: NoiseSchedule,
        prediction_type: str | None = None, clip_sample: float | None = None,
    ) -> None:
        self.family = make_family(family) if isinstance(family, str) else family
        self.schedule = schedule
        pred = prediction_type or self.family.default_prediction
        if pred not in PREDICTION_TYPES:
            raise unknown_name("prediction type", pred, PREDICTION_TYPES)
        if pred == "eps":
            self.family._need_vp("ε-prediction")
        self.prediction_type = pred
        self.clip_sample = clip_sample
        self.betas = schedule.betas
        self.alphas = schedule.alphas
        self.alphas_cumprod = schedule.alphas_cumprod
        self.alphas_cumprod_prev = schedule.alphas_cumprod_prev
        self.timesteps = schedule.timesteps  # ascending, training-schedule indices
        self._index = torch.full((schedule.num_train_timesteps,), -1, dtype=torch.long)
        self._index[self.timesteps] = torch.arange(schedule.num_steps)
        self._index_list = self._index.tolist()  # fast path for the samplers' int timesteps
        self._cache: dict[tuple[torch.dtype, torch.device], dict[str, Tensor]] = {}

    @classmethod
    def create(cls, family: str, schedule: str = "linear", num_timesteps: int = 1000,
               prediction_type: str | None = None, clip_sample: float | None = None) -> Diffusion:
        return cls(family, make_schedule(schedule, num_timesteps), prediction_type, clip_sample)

    @property
    def num_steps(self) -> int:
        return self.schedule.num_steps

    def respace(self, stride: int, respacing: str = "recompute") -> Diffusion:
        """The same process on the strided schedule (⌊T/k⌋ steps): betas recomputed for the
        jumps, or with ``respacing="naive"`` the original one-step tables kept
        (:mod:`serialrepro.models.schedules`)."""
        return Diffusion(self.family, self.schedule.respace(stride, respacing),
                         self.prediction_type, self.clip_sample)

    # -- lookups ----------------------------------------------------------------------
    def _tables(self, like: Tensor) -> dict[str, Tensor]:
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = {
                name: getattr(self, name).to(dtype=like.dtype, device=like.device)
                for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev")
            }
        return self._cache[key]

    def index_of(self, t: Tensor | int) -> Tensor:
        """Positions of training timesteps ``t`` in this (respaced) schedule."""
        t_cpu = torch.as_tensor(t, dtype=torch.long).cpu()
        if ((t_cpu < 0) | (t_cpu >= self._index.numel())).any():
            raise UserInputError(f"timestep {t} outside 0..{self._index.numel() - 1}")
        idx = self._index[t_cpu]
        if (idx < 0).any():
            raise UserInputError(f"timestep {t} is not one of this respaced schedule's steps")
        return idx

    def _at(self, name: str, t: Tensor | int, like: Tensor) -> Tensor:
        table = self._tables(like)[name]
        if isinstance(t, int) and 0 <= t < len(self._index_list) and self._index_list[t] >= 0:
            return table[self._index_list[t]]  # one timestep for the batch (sampling)
        return table[self.index_of(t).to(like.device)]

    # -- forward process --------------------------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """x_t for explicit ``noise`` (a draw of ``family.sample_noise``); DDPM eq. 4 for VP."""
        return self.family.degrade(x0, self._at("alphas_cumprod", t, x0), noise)

    def add_noise(self, x0: Tensor, t: Tensor | int, generator: GeneratorLike = None) -> Tensor:
        """x_t ~ q(x_t | x_0), drawing the noise from ``generator``."""
        noise = self.family.sample_noise(x0.shape, generator, x0.dtype, x0.device)
        return self.q_sample(x0, t, noise)

    def training_target(self, x0: Tensor, noise: Tensor) -> Tensor:
        """What the network regresses: ε (the noise) or x_0."""
        return noise if self.prediction_type == "eps" else x0

    # -- reverse-step building blocks -------------------------------------------------
    def predict_x0(self, model_output: Tensor, t: Tensor | int, x_t: Tensor) -> Tensor:
        """x̂_0 from the network output, clipped to ±clip_sample when set."""
        if self.prediction_type == "eps":
            x0 = self.family.x0_from_eps(x_t, model_output, self._at("alphas_cumprod", t, x_t))
        else:
            x0 = model_output
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return x0

    def posterior_mean_variance(
        self, x0: Tensor, x_t: Tensor, t: Tensor | int
    ) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t−1} | x_t, x_0) (DDPM eqs. 6–7) on this schedule."""
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
    def step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
             generator: GeneratorLike = None) -> tuple[Tensor, Tensor]:
        """DDPM ancestral step: x_{t−1} = μ̃(x_t, x̂_0) + σ̃ z (Ho et al. 2020, Alg. 2)."""
        x0 = self.predict_x0(model_output, t, x_t)
        mean, var = self.posterior_mean_variance(x0, x_t, t)
        z = self.family.posterior_noise(x_t.shape, generator, x_t.dtype, x_t.device)
        return mean + torch.sqrt(var) * z, x0

    def ddim_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                  generator: GeneratorLike = None, eta: float = 0.0) -> tuple[Tensor, Tensor]:
        """DDIM (Song et al. 2021, eq. 12): η = 0 deterministic, η = 1 DDPM-like."""
        eta = check_eta(eta)
        x0 = self.predict_x0(model_output, t, x_t)
        n = x_t.ndim
        ac = self._at("alphas_cumprod", t, x_t)
        ac_prev = append_dims(self._at("alphas_cumprod_prev", t, x_t), n)
        eps = self.family.eps_from_x0(x_t, x0, ac)
        ac = append_dims(ac, n)
        sigma = eta * torch.sqrt((1 - ac_prev) / (1 - ac) * (1 - ac / ac_prev))
        x_prev = torch.sqrt(ac_prev) * x0 + torch.sqrt((1 - ac_prev - sigma**2).clamp(min=0)) * eps
        if eta > 0:
            x_prev = x_prev + sigma * self.family.posterior_noise(x_t.shape, generator, x_t.dtype,
                                                                  x_t.device)
        return x_prev, x0

    def reproduction_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                          generator: GeneratorLike = None) -> tuple[Tensor, Tensor]:
        """Serial-reproduction step: reconstruct x̂_0, perceive it again at level t−1.

        x_{t−1} = D(x̂_0, t−1) with fresh family noise (cold diffusion Alg. 1); at the last
        step ᾱ_prev = 1 and D is the identity, so the output is x̂_0.
        """
        x0 = self.predict_x0(model_output, t, x_t)
        noise = self.family.sample_noise(x_t.shape, generator, x_t.dtype, x_t.device)
        return self.family.degrade(x0, self._at("alphas_cumprod_prev", t, x_t), noise), x0

    def cold_step(self, model_output: Tensor, t: Tensor | int, x_t: Tensor,
                  generator: GeneratorLike = None) -> tuple[Tensor, Tensor]:
        """Cold diffusion Algorithm 2: x_{t−1} = x_t − D(x̂_0, t) + D(x̂_0, t−1).

        Both degradations share one noise draw, inferred from x_t where the family can
        (for VP families ε̂, which makes this step DDIM with η = 0, as Bansal et al. note).
        """
        x0 = self.predict_x0(model_output, t, x_t)
        abar = self._at("alphas_cumprod", t, x_t)
        noise = self.family.infer_noise(x_t, x0, abar, generator)
        d_t = self.family.degrade(x0, abar, noise)
        d_prev = self.family.degrade(x0, self._at("alphas_cumprod_prev", t, x_t), noise)
        return x_t - d_t + d_prev, x0
