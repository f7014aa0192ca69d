"""The optimal diffusion process on a grid, built from one operation: a reproduction.

One **reproduction** (DESIGN §1) perceives through a kernel K and reconstructs with a
prior q by Bayes' rule: Post(x | y) ∝ K(y | x) q(x). Acting on a distribution v over y,

    Post v = q ⊙ Kᵀ (v ⊘ K q).

A serial-reproduction chain repeats ``reproduce`` with a fixed kernel and prior; the
diffusion sampler repeats it with K_t and the forward marginal q_{t−1} as prior:

* serial-reproduction step (the paper's default): r_{t−1} = Post_t K_t r_t;
* ancestral step ("denoise only"): r_{t−1} = Post_t r_t.

Both start from the family's limit distribution p_F, not from q_T.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from serialrepro.errors import UserInputError
from serialrepro.families import NoiseFamily, get_family
from serialrepro.grid import scores
from serialrepro.grid.kernels import GridKernel, KernelSchedule
from serialrepro.grid.priors import limit_distribution
from serialrepro.grid.space import GridSpace

STEPS = ("serial", "ancestral")
Callback = Callable[[int, Tensor], None]


def _safe_ratio(v: Tensor, w: Tensor, floor: Tensor | float = 0.0) -> Tensor:
    """v ⊘ w with 0 where w ≤ ``floor``: an observation y the prior predicts with
    probability (numerically) zero carries no posterior mass, so Post is sub-stochastic
    where the input has mass the prior cannot explain (the paper's priors, mixed with
    uniform, never do). ``floor`` is the kernel's round-off level (0 for dense)."""
    ok = w > floor
    return torch.where(ok, v / torch.where(ok, w, 1.0), 0.0)


def posterior(v: Tensor, kernel: GridKernel, prior: Tensor, pushed: Tensor | None = None) -> Tensor:
    """Post v = q ⊙ Kᵀ(v ⊘ K q): reconstruct a distribution over y with prior q.

    ``pushed`` = K q may be passed when known (the next forward marginal).
    """
    if pushed is None:
        pushed = kernel.apply(prior)
    # clamp: FFT round-off can leave −1e−17 where the exact value is 0 (a no-op for dense)
    ratio = _safe_ratio(v, pushed, kernel.noise_floor(pushed))
    return (prior * kernel.apply_t(ratio)).clamp_min_(0.0)


def reproduce(
    p: Tensor, kernel: GridKernel, prior: Tensor, pushed: Tensor | None = None,
    renoise: bool = True,
) -> Tensor:
    """One reproduction: perceive ``p`` through K (if ``renoise``), reconstruct with ``prior``.

    With ``renoise`` this is one serial-reproduction iteration S = Post ∘ K, whose
    stationary distribution is ``prior`` whatever the family (a Gibbs sweep on
    prior(x) K(y|x)); without, it is the ancestral "denoise only" step.
    """
    v = kernel.apply(p) if renoise else p
    return posterior(v, kernel, prior, pushed)


def reproduce_transpose(
    v: Tensor, kernel: GridKernel, prior: Tensor, pushed: Tensor | None = None,
    renoise: bool = True,
) -> Tensor:
    """Sᵀ v for the reproduction S of :func:`reproduce` (S = diag(q) Kᵀ diag(1/Kq) [K])."""
    if pushed is None:
        pushed = kernel.apply(prior)
    w = _safe_ratio(kernel.apply(prior * v), pushed, kernel.noise_floor(pushed))
    return kernel.apply_t(w) if renoise else w


def forward_marginals(
    data: Tensor, kernels: Sequence[GridKernel],
    callback: Callable[[int, GridKernel, Tensor, Tensor], None] | None = None,
) -> Tensor:
    """q_0 = data, q_t = K_t q_{t−1}; returns the stack [q_0, …, q_T].

    ``callback(t, K_t, q_{t−1}, q_t)`` sees each step while its kernel is at hand (so
    per-step quantities need no second pass over kernels that are rebuilt on use)."""
    out = [data]
    for t, k in enumerate(kernels, start=1):
        # clamp as in posterior(): distributions stay non-negative on the FFT path too
        out.append(k.apply(out[-1]).clamp_min_(0.0))
        if callback is not None:
            callback(t, k, out[-2], out[-1])
    return torch.stack(out)


@dataclass
class Trajectory:
    """States of a reverse sampler: ``states[t]`` is r_t, t = 0..T (r_T is the start)."""

    states: Tensor
    levels: list[float]
    step: str

    @property
    def final(self) -> Tensor:
        return self.states[0]


def _sampler(kernels, marginals, start, renoise, step, callback) -> Trajectory:
    T = len(kernels)
    if marginals.shape[0] != T + 1:
        raise UserInputError(f"need {T + 1} marginals q_0..q_T for {T} kernels, "
                             f"got {marginals.shape[0]}")
    states = [None] * (T + 1)
    states[T] = start
    r = start
    for t in range(T, 0, -1):
        r = reproduce(r, kernels[t - 1], marginals[t - 1], marginals[t], renoise=renoise)
        states[t - 1] = r
        if callback is not None:
            callback(t - 1, r)
    # a KernelSchedule knows its levels without building (or rebuilding) a kernel
    levels = getattr(kernels, "sigmas", None)
    levels = list(levels) if levels is not None else [k.sigma for k in kernels]
    return Trajectory(torch.stack(states), levels, step)


def serial_reproduction_sampler(
    kernels: Sequence[GridKernel], marginals: Tensor, start: Tensor,
    callback: Callback | None = None,
) -> Trajectory:
    """r_{t−1} = Post_t K_t r_t from r_T = ``start`` (DESIGN §1, the paper's sampler)."""
    return _sampler(kernels, marginals, start, True, "serial", callback)


def ancestral_sampler(
    kernels: Sequence[GridKernel], marginals: Tensor, start: Tensor,
    callback: Callback | None = None,
) -> Trajectory:
    """r_{t−1} = Post_t r_t from r_T = ``start`` ("denoise only", as DDPM without noise)."""
    return _sampler(kernels, marginals, start, False, "ancestral", callback)


SAMPLERS = {"serial": serial_reproduction_sampler, "ancestral": ancestral_sampler}


def get_sampler(step: str):
    if step not in SAMPLERS:
        raise UserInputError(f"unknown step {step!r}; valid choices: {', '.join(SAMPLERS)}")
    return SAMPLERS[step]


@dataclass
class SimulationResult:
    """Everything one optimal-diffusion simulation produced."""

    space: GridSpace
    family: str
    sigmas: list[float]
    step: str
    backend: str
    data: Tensor
    marginals: Tensor  # q_0..q_T
    reverse: Tensor  # r_0..r_T (index t is r_t)
    kl_bits: float
    jsd_bits: float
    complexity_bits: float | None
    stationarity: float | None
    seconds: float
    conditional_entropy_bits: list[float | None] = field(default_factory=list)
    mutual_information_bits: list[float | None] = field(default_factory=list)

    @property
    def T(self) -> int:
        return len(self.sigmas)

    def scores(self) -> dict:
        """The scalar results as a JSON-ready dict."""
        return {
            "kl_bits": self.kl_bits,
            "jsd_bits": self.jsd_bits,
            "complexity_bits": self.complexity_bits,
            "stationarity": self.stationarity,
            "T": self.T,
            "grid": self.space.label,
            "grid_points": self.space.size,
            "dims": self.space.dims,
            "noise": self.family,
            "step": self.step,
            "backend": self.backend,
            "sigmas": self.sigmas,
            "seconds": self.seconds,
            "conditional_entropy_bits": self.conditional_entropy_bits,
            "mutual_information_bits": self.mutual_information_bits,
        }


#: grids up to this size get the per-step channel information even when the kernel's
#: columns differ (fade kernels on the FFT path cost O(M²) for it)
INFO_MAX_POINTS = 4096


def simulate(
    data: Tensor,
    family: str | NoiseFamily,
    sigmas: Sequence[float],
    space: GridSpace,
    step: str = "serial",
    backend: str = "auto",
    start: Tensor | None = None,
    info: bool = True,
    callback: Callback | None = None,
) -> SimulationResult:
    """Run the paper's optimal-diffusion simulation and score it (DESIGN §2).

    ``data`` is q_0 on ``space`` (device and dtype follow it). ``start`` defaults to the
    family's limit distribution p_F. ``info`` adds per-step H(Y|X) and I(X;Y) of the
    perception channel (X ~ q_{t−1}); on large grids with fade kernels they are None.
    """
    t0 = time.perf_counter()
    fam = get_family(family)
    sampler = get_sampler(step)
    if tuple(data.shape) != space.shape:
        raise UserInputError(f"data shape {tuple(data.shape)} does not match grid {space.shape}")
    kernels = KernelSchedule(space, fam, sigmas, backend, device=data.device, dtype=data.dtype)
    nd = space.dims
    cond_entropy: list[float | None] = []
    mutual_info: list[float | None] = []

    def channel_information(t: int, k: GridKernel, prior: Tensor, pushed: Tensor) -> None:
        # computed in the forward pass, while K_t is built anyway
        if k.backend == "fft" and k.target is not None and space.size > INFO_MAX_POINTS:
            cond_entropy.append(None)
            mutual_info.append(None)
            return
        h, mi = scores.channel_information_bits(prior, pushed, k.column_entropy_bits(), nd)
        cond_entropy.append(h)
        mutual_info.append(mi)

    marginals = forward_marginals(data, kernels, channel_information if info else None)
    if start is None:
        start = limit_distribution(fam.limit, space).to(data)
    traj = sampler(kernels, marginals, start, callback)
    T = len(kernels)
    renoise = step == "serial"

    def pullback(v, t):
        return reproduce_transpose(v, kernels[t - 1], marginals[t - 1], marginals[t], renoise)

    r0 = traj.states[0]
    result = SimulationResult(
        space=space, family=fam.name, sigmas=list(kernels.sigmas), step=step,
        backend=kernels.backend, data=data, marginals=marginals, reverse=traj.states,
        kl_bits=float(scores.kl_bits(r0, data, nd)),
        jsd_bits=float(scores.jsd_bits(r0, data, nd)),
        complexity_bits=scores.complexity_bits(marginals, nd),
        stationarity=scores.stationarity_score(traj.states, pullback, T),
        seconds=0.0,
        conditional_entropy_bits=cond_entropy,
        mutual_information_bits=mutual_info,
    )
    result.seconds = time.perf_counter() - t0
    return result
