"""Noise schedules (betas and alphas_cumprod, named as in DDPM) and timestep respacing.

- ``linear``: Ho et al. 2020 (DDPM), β_t linearly spaced from 1e-4 to 0.02 for T = 1000
  (scaled by 1000/T for other T, as improved-diffusion does, so the total noise is kept).
- ``cosine``: Nichol & Dhariwal 2021 (improved DDPM) eq. 17,
  ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2), s = 0.008, with
  β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped at 0.999.

Respacing (strided sampling) keeps a subset of timesteps and recomputes the betas from
alphas_cumprod, β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} (improved-diffusion ``respace.py``), so the
respaced forward process has exactly the marginals q(x_τ | x_0) of the original one. For a
stride k the kept timesteps are τ = 0, k, 2k, …, k(⌊T/k⌋ − 1): ⌊T/k⌋ steps, the count
the paper's Figure 4 reports (DDIM's "uniform" skip).

``respace(k, "naive")`` instead reproduces *naive striding*: visiting only τ_i but keeping
every table of the original T-step process at those rows (:class:`NaiveStridedSchedule`):
β_{τ_i}, ᾱ_{τ_i} and ᾱ_{τ_i − 1}, the level one original step below. The DDPM step at
t = τ_i then computes the 1-step posterior of the T-step process,

    x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t                        (correct: the net's level t)
    μ = √ᾱ_{t−1} β_t/(1 − ᾱ_t) · x̂_0 + √(1 − β_t)(1 − ᾱ_{t−1})/(1 − ᾱ_t) · x_t
    σ² = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t)

i.e. x_{t−1} ~ q(x_{t−1} | x_t, x̂_0), and the sampler then treats that draw as x_{t−k}: each
step removes one original step's worth of noise, not k steps' worth, so with k > 1 the
sample ends with noise left in it. The kept ᾱ_{τ_i} are not products of the kept betas
(∏_{j≤i}(1 − β_{τ_j}) ≠ ᾱ_{τ_i}) and ᾱ_prev[i] = ᾱ_{τ_i − 1} ≠ ᾱ_{τ_{i−1}}: the tables no
longer describe one consistent forward process over the kept steps. This is what striding
a T-step DDPM sampler without recomputing the betas does; diffusers' ``DDPMScheduler``
did exactly this when ``num_inference_steps`` < T (it used t − 1 for the alphas, betas and
variance, and the images came out as noise) until huggingface/diffusers PR #2076 (January
2023). With k = 1 naive and recomputed respacing are both the original schedule.

:func:`spaced_timesteps` gives diffusers' ``timestep_spacing`` choices for
``set_timesteps(n)`` (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps
are Flawed", Table 2), with ``r = T // n`` (leading) or ``r = T / n`` (trailing):

- ``leading``: τ = 0, r, 2r, …, (n−1)r, plus ``steps_offset``;
- ``trailing``: τ = round(T − i·T/n) − 1 for i = 0..n−1 (always ends at T − 1);
- ``linspace``: τ = round(linspace(0, T − 1, n)).

:meth:`NoiseSchedule.at_timesteps` turns any such set into a schedule with recomputed
betas, which is what diffusers' ``DDPMScheduler.step`` computes on the fly (its
``previous_timestep`` is the next entry of ``timesteps``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name


def linear_betas(num_timesteps: int) -> Tensor:
    """DDPM linear schedule, β from 1e-4 to 0.02 at T = 1000 (float64).

    Other T scale both ends by 1000/T (improved-diffusion's convention, so the total noise
    stays comparable); β_T = 20/T then reaches 1 at T = 20, where ᾱ hits 0 and sampling
    divides by zero, so shorter linear schedules are refused.
    """
    if num_timesteps <= 20:
        raise UserInputError(
            f"the linear schedule needs more than 20 timesteps (its last β is 20/T = "
            f"{20 / max(num_timesteps, 1):g} at T={num_timesteps}); use more timesteps or "
            "the cosine schedule")
    scale = 1000.0 / num_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal (2021) eq. 17 cosine schedule, β capped at ``max_beta`` (float64)."""
    t = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return torch.clamp(betas, max=max_beta)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}

#: How :meth:`NoiseSchedule.respace` treats the jump τ_i → τ_{i−1} (module docstring).
RESPACINGS = ("recompute", "naive")

#: diffusers' ``timestep_spacing`` choices for ``set_timesteps`` (module docstring).
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def spaced_timesteps(num_train_timesteps: int, num_inference_steps: int,
                     spacing: str = "leading", steps_offset: int = 0) -> list[int]:
    """The ``n`` training timesteps of diffusers' ``set_timesteps(n)``, descending.

    The formulas of diffusers' ``DDPMScheduler``/``DDIMScheduler.set_timesteps`` (module
    docstring), in numpy float64 as there. One difference: for ``trailing`` diffusers
    computes ``np.arange(T, 0, -T/n)``, which for some n (61 of T = 1000, for one)
    yields an (n+1)-th value just above 0 that becomes timestep −1; the values here are
    arange's own for exactly i = 0..n−1.
    """
    if spacing not in TIMESTEP_SPACINGS:
        raise unknown_name("timestep spacing", spacing, TIMESTEP_SPACINGS)
    T, n = int(num_train_timesteps), num_inference_steps
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= T:
        raise UserInputError(f"num_inference_steps {n!r} is invalid: it must be an integer in "
                             f"1..{T} (the number of training timesteps)")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, int | np.integer) \
            or steps_offset < 0:
        raise UserInputError(f"steps_offset {steps_offset!r} is invalid: it must be an "
                             "integer ≥ 0")
    n = int(n)
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        ts = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + int(steps_offset)
    else:
        # np.arange(T, 0, -T/n)'s values, T + i·d with d = (T − T/n) − T as numpy fills them
        step = (T + -(T / n)) - T
        ts = np.round(T + np.arange(n) * step).astype(np.int64) - 1
    out = ts.tolist()
    if out[0] > T - 1:
        raise UserInputError(f"steps_offset {steps_offset} with {n} leading steps reaches "
                             f"timestep {out[0]}, beyond the last one, {T - 1}; lower it")
    return out


def check_respacing(name: str) -> str:
    """``name`` if it is a respacing mode; otherwise a one-line error listing the valid ones."""
    if name not in RESPACINGS:
        raise unknown_name("respacing", name, RESPACINGS)
    return name


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete schedule: ``betas[i]`` for the kept timesteps ``timesteps[i]`` (float64).

    ``timesteps`` are indices into the *original* schedule (what the network is
    conditioned on); for an unrespaced schedule they are 0..T−1. ``alphas_cumprod[i]``
    is ᾱ at ``timesteps[i]`` and ``alphas_cumprod_prev[i]`` is ᾱ at the previous kept
    step (1 before the first: the clean data). ``train_betas`` are the betas of the
    T-step schedule it was cut from (``None``: this is that schedule).
    """

    name: str
    betas: Tensor
    timesteps: Tensor
    num_train_timesteps: int
    train_betas: Tensor | None = field(default=None, kw_only=True, repr=False, compare=False)

    @property
    def training_betas(self) -> Tensor:
        """β_t of the training schedule for every t = 0..T−1."""
        if self.train_betas is not None:
            return self.train_betas
        if self.num_steps != self.num_train_timesteps:
            raise UserInputError("this respaced schedule does not know the training schedule "
                                 "it was cut from; respace the schedule of make_schedule")
        return self.betas

    @property
    def training_alphas_cumprod(self) -> Tensor:
        """ᾱ_t of the training schedule for every t = 0..T−1 (the forward marginals)."""
        return torch.cumprod(1.0 - self.training_betas, dim=0)

    def at_timesteps(self, timesteps: Sequence[int] | Tensor) -> NoiseSchedule:
        """The schedule visiting only ``timesteps`` (training timesteps, any order, no
        repeats), betas recomputed for the jumps: β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}."""
        ts = torch.as_tensor(timesteps, dtype=torch.long).flatten().sort().values
        T = self.num_train_timesteps
        if ts.numel() == 0 or int(ts[0]) < 0 or int(ts[-1]) >= T or \
                bool((ts[1:] == ts[:-1]).any()):
            raise UserInputError(f"timesteps must be distinct integers in 0..{T - 1}; got "
                                 f"{ts.tolist()[:8]}{'…' if ts.numel() > 8 else ''}")
        ac = self.training_alphas_cumprod[ts]
        prev = torch.cat([ac.new_ones(1), ac[:-1]])
        return NoiseSchedule(self.name, 1.0 - ac / prev, ts, T, train_betas=self.training_betas)

    @property
    def alphas(self) -> Tensor:
        return 1.0 - self.betas

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alphas_cumprod_prev(self) -> Tensor:
        ac = self.alphas_cumprod
        return torch.cat([ac.new_ones(1), ac[:-1]])

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    def respace(self, stride: int, respacing: str = "recompute") -> NoiseSchedule:
        """Keep timesteps 0, k, 2k, … (⌊T/k⌋ of them).

        ``"recompute"`` (default) implements improved-diffusion's ``SpacedDiffusion``:
        β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}. ``"naive"`` keeps the original rows of every
        table (β_{τ_i}, ᾱ_{τ_i}, ᾱ_prev) unchanged: :class:`NaiveStridedSchedule`.
        """
        check_respacing(respacing)
        k = int(stride)
        if k < 1 or k > self.num_steps:
            raise UserInputError(
                f"stride {stride!r} is invalid: it must lie in 1..{self.num_steps}"
            )
        n = self.num_steps // k
        keep = torch.arange(n) * k
        if respacing == "naive":
            return NaiveStridedSchedule(self.name, self.betas[keep], self.timesteps[keep],
                                        self.num_train_timesteps,
                                        self.alphas_cumprod[keep],
                                        self.alphas_cumprod_prev[keep],
                                        train_betas=self.training_betas)
        ac = self.alphas_cumprod[keep]
        prev = torch.cat([ac.new_ones(1), ac[:-1]])
        return NoiseSchedule(self.name, 1.0 - ac / prev, self.timesteps[keep],
                             self.num_train_timesteps, train_betas=self.training_betas)


@dataclass(frozen=True)
class NaiveStridedSchedule(NoiseSchedule):
    """Naive striding: the kept rows of the original tables, none recomputed.

    ``betas[i]`` = β_{τ_i}, ``alphas_cumprod[i]`` = ᾱ_{τ_i} and ``alphas_cumprod_prev[i]``
    = ᾱ_{τ_i − 1} of the schedule it was cut from, so each reverse step is that schedule's
    one-step posterior although the sampler jumps k steps (module docstring).
    """

    kept_alphas_cumprod: Tensor
    kept_alphas_cumprod_prev: Tensor

    @property
    def alphas_cumprod(self) -> Tensor:
        return self.kept_alphas_cumprod

    @property
    def alphas_cumprod_prev(self) -> Tensor:
        return self.kept_alphas_cumprod_prev


#: diffusers' ``beta_schedule`` names that :func:`diffusers_schedule` reproduces.
DIFFUSERS_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def diffusers_schedule(num_train_timesteps: int = 1000, beta_start: float = 0.0001,
                       beta_end: float = 0.02, beta_schedule: str = "linear",
                       trained_betas: Sequence[float] | None = None) -> NoiseSchedule:
    """The training schedule of a diffusers scheduler config, in float64.

    diffusers' formulas: ``linear`` β = linspace(β_start, β_end, T) (not rescaled by
    1000/T, unlike :func:`linear_betas`); ``scaled_linear`` β = linspace(√β_start,
    √β_end, T)² (latent diffusion); ``squaredcos_cap_v2`` :func:`cosine_betas` (Nichol &
    Dhariwal eq. 17, the same formula); ``sigmoid`` β_start + (β_end − β_start)·
    sigmoid(linspace(−6, 6, T)) (GeoDiff); or the given ``trained_betas``. The schedule is
    named ``linear``/``cosine`` where it equals ours.
    """
    T = int(num_train_timesteps)
    if T < 1:
        raise UserInputError(f"num_train_timesteps {num_train_timesteps!r} must be at least 1")
    if trained_betas is not None:
        betas, name = torch.as_tensor(trained_betas, dtype=torch.float64).flatten(), "trained"
        T = int(betas.numel())
    elif beta_schedule == "squaredcos_cap_v2":
        betas, name = cosine_betas(T), "cosine"
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        ours = (T, beta_start, beta_end) == (1000, 0.0001, 0.02)
        name = "linear" if ours else "diffusers-linear"
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
        name = "scaled_linear"
    elif beta_schedule == "sigmoid":
        x = torch.linspace(-6, 6, T, dtype=torch.float64)
        betas, name = torch.sigmoid(x) * (beta_end - beta_start) + beta_start, "sigmoid"
    else:
        raise unknown_name("diffusers beta_schedule", beta_schedule, DIFFUSERS_BETA_SCHEDULES)
    if not (bool(torch.isfinite(betas).all()) and bool((betas > 0).all())
            and bool((betas < 1).all())):
        raise UserInputError(f"the {name} betas must all lie in (0, 1)")
    return NoiseSchedule(name, betas, torch.arange(T), T)


def make_schedule(name: str, num_timesteps: int = 1000) -> NoiseSchedule:
    """The named schedule with ``num_timesteps`` steps; unknown names list the valid ones."""
    try:
        fn = SCHEDULES[name]
    except KeyError:
        raise unknown_name("schedule", name, SCHEDULES) from None
    if int(num_timesteps) < 1:
        raise UserInputError(f"number of timesteps {num_timesteps!r} must be at least 1")
    T = int(num_timesteps)
    return NoiseSchedule(name, fn(T), torch.arange(T), T)
