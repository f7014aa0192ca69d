"""The optimal diffusion process on a grid, built from one operation: a reproduction.

One **reproduction** (docs/design.md §1) perceives through a kernel K and reconstructs with a
prior q by Bayes' rule: Post(x | y) ∝ K(y | x) q(x). Acting on a distribution v over y,

    Post v = q ⊙ Kᵀ (v ⊘ K q).

A serial-reproduction chain repeats ``reproduce`` with a fixed kernel and prior; the
diffusion sampler repeats it with K_t and the forward marginal q_{t−1} as prior:

* serial-reproduction step (the paper's default): r_{t−1} = Post_t K_t r_t;
* ancestral step ("denoise only"): r_{t−1} = Post_t r_t.

Both start from the family's limit distribution p_F, not from q_T.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from serialrepro.errors import UserInputError
from serialrepro.families import NoiseFamily, get_family
from serialrepro.grid import scores
from serialrepro.grid.kernels import GridKernel, KernelSchedule
from serialrepro.grid.space import GridSpace
from serialrepro.reconstruction import STEPS as RECONSTRUCTION_STEPS

#: the reverse steps by name ("serial": the paper's Post_t K_t; "ancestral": Post_t)
STEPS = tuple(RECONSTRUCTION_STEPS)
#: called as ``callback(t − 1, r_{t−1})`` after each reverse step of the grid engine
GridCallback = Callable[[int, Tensor], None]


def safe_ratio(v: Tensor, w: Tensor, floor: Tensor | float = 0.0) -> Tensor:
    """v ⊘ w with 0 where w ≤ ``floor``: an observation y the prior predicts with
    probability (numerically) zero carries no posterior mass, so Post is sub-stochastic
    where the input has mass the prior cannot explain (the paper's priors, mixed with
    uniform, never do). ``floor`` is the kernel's round-off level (0 for dense). The one
    safe division of Bayes' rule in the project: chains and fits use it too."""
    return v * inverse_above(w, floor)


def inverse_above(w: Tensor, floor: Tensor | float = 0.0) -> Tensor:
    """1/w where w > ``floor``, 0 elsewhere (also where w is subnormal): the factor
    v ↦ v ⊘ K q of Bayes' rule, computed once per prior and shared by the sampler step and
    the stationarity pull-back. Differentiable in w. ``floor`` may be a tensor (one per
    distribution of a batch)."""
    tiny = torch.finfo(w.dtype).tiny
    if isinstance(floor, Tensor) and (floor.numel() > 1 or floor.device.type != "cpu"):
        # one floor per distribution of a batch, or on an accelerator (no host sync)
        lo = floor.detach().clamp_min(tiny)  # a threshold: no gradient through it
        return (w > lo) / w.clamp_min(lo)
    lo = max(float(floor.detach() if isinstance(floor, Tensor) else floor), tiny)
    # entries ≤ lo become +inf, whose reciprocal is 0: two passes, no mask array
    return torch.nn.functional.threshold(w, lo, math.inf).reciprocal()


def _clamped(x: Tensor) -> Tensor:
    # FFT round-off can leave −1e−17 where the exact value is 0 (a no-op for dense);
    # in place unless autograd tracks x
    return x.clamp_min(0.0) if x.requires_grad else x.clamp_min_(0.0)



def _inverse_of(kernel: GridKernel, prior: Tensor, pushed: Tensor | None) -> Tensor:
    if pushed is None:
        pushed = kernel.apply(prior)
    return inverse_above(pushed, kernel.noise_floor(pushed))


def _reconstruct(v: Tensor, owned: bool, kernel: GridKernel, prior: Tensor, inverse: Tensor,
                 out: Tensor | None) -> Tensor:
    """q ⊙ Kᵀ(v ⊙ inverse), clamped at 0; ``owned``: v may be scaled in place."""
    tracked = v.requires_grad or inverse.requires_grad or prior.requires_grad
    if owned and not tracked and v.shape == inverse.shape:
        ratio = v.mul_(inverse)
    else:
        ratio = v * inverse
    back = kernel.apply_t(ratio)
    if tracked or back.requires_grad:
        return (prior * back).clamp_min(0.0)
    return torch.mul(prior, back, out=back if out is None else out).clamp_min_(0.0)


def posterior(v: Tensor, kernel: GridKernel, prior: Tensor, pushed: Tensor | None = None,
              inverse: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """Post v = q ⊙ Kᵀ(v ⊘ K q): reconstruct a distribution over y with prior q.

    ``pushed`` = K q may be passed when known (the next forward marginal), or directly
    ``inverse`` = :func:`inverse_above`(K q, floor); ``out`` receives the result.
    """
    if inverse is None:
        inverse = _inverse_of(kernel, prior, pushed)
    return _reconstruct(v, False, kernel, prior, inverse, out)


def reproduce(
    p: Tensor, kernel: GridKernel, prior: Tensor, pushed: Tensor | None = None,
    renoise: bool = True, inverse: Tensor | None = None, out: Tensor | None = None,
) -> Tensor:
    """One reproduction: perceive ``p`` through K (if ``renoise``), reconstruct with ``prior``.

    With ``renoise`` this is one serial-reproduction iteration S = Post ∘ K, whose
    stationary distribution is ``prior`` whatever the family (a Gibbs sweep on
    prior(x) K(y|x)); without, it is the ancestral "denoise only" step.
    """
    if inverse is None:
        inverse = _inverse_of(kernel, prior, pushed)
    v = kernel.apply(p) if renoise else p
    return _reconstruct(v, renoise, kernel, prior, inverse, out)


def reproduce_transpose(
    v: Tensor, kernel: GridKernel, prior: Tensor, pushed: Tensor | None = None,
    renoise: bool = True, inverse: Tensor | None = None,
) -> Tensor:
    """Sᵀ v for the reproduction S of :func:`reproduce` (S = diag(q) Kᵀ diag(1/Kq) [K])."""
    if inverse is None:
        inverse = _inverse_of(kernel, prior, pushed)
    w = kernel.apply(prior * v)
    tracked = w.requires_grad or inverse.requires_grad
    w = w * inverse if tracked or w.shape != inverse.shape else w.mul_(inverse)
    return kernel.apply_t(w) if renoise else w


def _tracks_grad(*tensors, levels=None) -> bool:
    """Whether autograd records this computation (then levels are kept as separate
    tensors: slices of one buffer written in place would break the backward pass)."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in (*tensors, levels))


_MADV_HUGEPAGE = 14
_HUGE = 1 << 21


def _advise_huge_pages(t: Tensor) -> None:
    """Ask Linux to back a large CPU buffer with transparent huge pages.

    A trajectory buffer is touched for the first time level by level; with 4 KiB pages
    that is one page fault per 4 KiB, which costs more than writing the values.
    ``madvise(MADV_HUGEPAGE)`` is advice only: where it is unavailable nothing changes."""
    nbytes = t.numel() * t.element_size()
    if t.device.type != "cpu" or nbytes < 2 * _HUGE or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        start = (t.data_ptr() + _HUGE - 1) & ~(_HUGE - 1)
        end = (t.data_ptr() + nbytes) & ~(_HUGE - 1)
        if end > start:
            libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)
    except (OSError, AttributeError):
        pass


class _Levels:
    """q_t or r_t for t = 0..T: one preallocated [T + 1, *shape] tensor that steps write
    into (no list to stack, no second copy), or a list of the steps' own tensors (while
    autograd tracks them, or when the levels are not returned as one tensor)."""

    def __init__(self, count: int, like: Tensor, as_list: bool):
        self.as_list = as_list
        if as_list:
            self.items: list[Tensor | None] = [None] * count
        else:
            self.buf = torch.empty((count, *like.shape), dtype=like.dtype, device=like.device)
            _advise_huge_pages(self.buf)

    def slot(self, t: int) -> Tensor | None:
        """Where step t may write its result (None: anywhere)."""
        return None if self.as_list else self.buf[t]

    def set(self, t: int, x: Tensor) -> Tensor:
        if self.as_list:
            self.items[t] = x
            return x
        slot = self.buf[t]
        if x.data_ptr() != slot.data_ptr():
            slot.copy_(x)
        return slot

    def __getitem__(self, t: int) -> Tensor:
        return self.items[t] if self.as_list else self.buf[t]

    def stacked(self) -> Tensor:
        return torch.stack(self.items) if self.as_list else self.buf


def forward_marginals(
    data: Tensor, kernels: Sequence[GridKernel],
    callback: Callable[[int, GridKernel, Tensor, Tensor], None] | None = None,
) -> Tensor:
    """q_0 = data, q_t = K_t q_{t−1}; returns the stack [q_0, …, q_T].

    ``callback(t, K_t, q_{t−1}, q_t)`` sees each step while its kernel is at hand (so
    per-step quantities need no second pass over kernels that are rebuilt on use)."""
    out = _Levels(len(kernels) + 1, data,
                  _tracks_grad(data, levels=getattr(kernels, "levels", None)))
    q = out.set(0, data)
    for t, k in enumerate(kernels, start=1):
        prev, q = q, out.set(t, _clamped(k.apply(q, out=out.slot(t))))
        if callback is not None:
            callback(t, k, prev, q)
    return out.stacked()


class GridReconstructor:
    """The exact engine as a :class:`serialrepro.reconstruction.Reconstructor`: step t
    perceives a distribution through K_t and reconstructs with prior q_{t−1},
    Post_t v = q_{t−1} ⊙ K_tᵀ(v ⊘ q_t) (:func:`posterior`, with q_t = K_t q_{t−1} the next
    forward marginal). Distributions in, distributions out: no generator is used."""

    def __init__(self, kernels: Sequence[GridKernel], marginals: Tensor):
        self.kernels, self.marginals = kernels, marginals

    def perceive(self, p: Tensor, t: int, generator=None) -> Tensor:
        """K_t p."""
        return self.kernels[t - 1].apply(p)

    def reconstruct(self, v: Tensor, t: int, generator=None) -> Tensor:
        """Post_t v."""
        return posterior(v, self.kernels[t - 1], self.marginals[t - 1], self.marginals[t])


@dataclass
class GridTrajectory:
    """States of a grid reverse sampler: ``states[t]`` is r_t, t = 0..T (r_T is the start);
    the trained-model samplers' record is :class:`serialrepro.models.samplers.SampleTrajectory`."""

    states: Tensor
    levels: list[float]
    step: str

    @property
    def final(self) -> Tensor:
        return self.states[0]


def _sampler(kernels, marginals, start, step, callback) -> GridTrajectory:
    T = len(kernels)
    if marginals.shape[0] != T + 1:
        raise UserInputError(f"need {T + 1} marginals q_0..q_T for {T} kernels, "
                             f"got {marginals.shape[0]}")
    states = _Levels(T + 1, start, _tracks_grad(marginals, start,
                                                levels=getattr(kernels, "levels", None)))
    r = states.set(T, start)
    recon, reverse = GridReconstructor(kernels, marginals), RECONSTRUCTION_STEPS[step]
    for t in range(T, 0, -1):
        r = states.set(t - 1, reverse(recon, r, t))
        if callback is not None:
            callback(t - 1, r)
    # a KernelSchedule knows its levels without building (or rebuilding) a kernel
    levels = getattr(kernels, "sigmas", None)
    levels = list(levels) if levels is not None else [float(k.sigma) for k in kernels]
    return GridTrajectory(states.stacked(), levels, step)


def serial_reproduction_sampler(
    kernels: Sequence[GridKernel], marginals: Tensor, start: Tensor,
    callback: GridCallback | None = None,
) -> GridTrajectory:
    """r_{t−1} = Post_t K_t r_t from r_T = ``start`` (docs/design.md §1, the paper's sampler):
    the step ``serial`` of :mod:`serialrepro.reconstruction` over :class:`GridReconstructor`."""
    return _sampler(kernels, marginals, start, "serial", callback)


def ancestral_sampler(
    kernels: Sequence[GridKernel], marginals: Tensor, start: Tensor,
    callback: GridCallback | None = None,
) -> GridTrajectory:
    """r_{t−1} = Post_t r_t from r_T = ``start`` ("denoise only", as DDPM without noise)."""
    return _sampler(kernels, marginals, start, "ancestral", callback)


#: the grid engine's reverse samplers by step name (the trained-model samplers are
#: :data:`serialrepro.models.samplers.SAMPLERS`)
GRID_STEPS = {"serial": serial_reproduction_sampler, "ancestral": ancestral_sampler}


def get_step(step: str):
    """The grid sampler of a reverse step by name; unknown names list the valid ones."""
    if step not in GRID_STEPS:
        raise UserInputError(f"unknown step {step!r}; valid choices: {', '.join(GRID_STEPS)}")
    return GRID_STEPS[step]


@dataclass
class SimulationResult:
    """Everything one optimal-diffusion simulation produced.

    ``marginals`` and ``reverse`` hold q_t and r_t at the steps ``kept_steps`` (None: all
    of t = 0..T, so that index t is step t); see :func:`parse_keep`. ``final`` is r_0.
    ``score_tensors`` holds the four scores as 0-d tensors, differentiable in the levels
    when they were given as a tensor with ``requires_grad``.
    """

    space: GridSpace
    family: str
    sigmas: list[float]
    step: str
    backend: str
    data: Tensor
    marginals: Tensor  # q_t at the kept steps (all: q_0..q_T)
    reverse: Tensor  # r_t at the kept steps (all: r_0..r_T, index t is r_t)
    kl_bits: float
    jsd_bits: float
    complexity_bits: float | None
    stationarity: float | None
    seconds: float
    conditional_entropy_bits: list[float | None] = field(default_factory=list)
    mutual_information_bits: list[float | None] = field(default_factory=list)
    kept_steps: list[int] | None = None
    final: Tensor | None = None
    score_tensors: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.final is None and (self.kept_steps is None or 0 in self.kept_steps) \
                and self.reverse.shape[0] > 0:
            self.final = self.reverse[0]

    @property
    def T(self) -> int:
        return len(self.sigmas)

    def _index(self, t: int) -> int:
        if self.kept_steps is None:
            if not 0 <= t <= self.T:
                raise UserInputError(f"step t={t} is outside 0..{self.T}")
            return t
        if t not in self.kept_steps:
            kept = ", ".join(map(str, self.kept_steps)) or "none"
            raise UserInputError(f"step t={t} was not kept (kept steps: {kept}); "
                                 "run with keep='all' or keep='every:K'")
        return self.kept_steps.index(t)

    def marginal_at(self, t: int) -> Tensor:
        """q_t, if step t was kept."""
        return self.marginals[self._index(t)]

    def reverse_at(self, t: int) -> Tensor:
        """r_t, if step t was kept."""
        return self.reverse[self._index(t)]

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

KEEP_CHOICES = "auto, none, final, every:K (K ≥ 1), all"
#: ``keep="auto"`` returns every step while both trajectories fit in this many bytes
KEEP_ALL_BYTES = 256 << 20
#: work arrays, in grid levels (the reverse workspace of 8, 3 log slots, the step's
#: inverse, FFT transforms and their internal copies): the constant of the memory model
WORK_LEVELS = 16


def parse_keep(keep: str, T: int, space: GridSpace | None = None,
               itemsize: int = 8) -> list[int] | None:
    """The steps t whose q_t and r_t a simulation returns; None means all (t = 0..T).

    ``none``: none (the scores need only r_0, kept as ``final``); ``final``: t = 0 and T
    (the sample r_0 and the start r_T; the data q_0 and the forward end q_T); ``every:K``:
    t = 0, K, 2K, … and T; ``all``: every step; ``auto``: all while both trajectories
    fit in :data:`KEEP_ALL_BYTES`, else ``final``.
    """
    text = str(keep).strip()
    if text == "auto":
        if space is None or 2 * (T + 1) * space.size * itemsize <= KEEP_ALL_BYTES:
            return None
        text = "final"
    if text == "all":
        return None
    if text == "none":
        return []
    if text == "final":
        return sorted({0, T})
    if text.startswith("every:"):
        try:
            k = int(text[len("every:"):])
        except ValueError:
            k = 0
        if k >= 1:
            return sorted(set(range(0, T + 1, k)) | {T})
    raise UserInputError(f"keep {keep!r} is invalid; valid choices: {KEEP_CHOICES}")


def simulation_bytes(space: GridSpace, T: int, keep: str = "auto", backend: str = "auto",
                     itemsize: int = 8) -> int:
    """Peak memory of :func:`simulate` beyond the Python/torch runtime, in bytes.

    The model: bytes ≈ c·M·L with c = ``itemsize`` (8 for float64) and L the grid levels
    held at once: the T + 1 forward marginals (the reverse pass and the stationarity score
    read them all, in reverse order), the reverse states kept (``keep``; a copy of the
    kept marginals too when not all are kept), :data:`WORK_LEVELS` of work arrays; plus
    the kernels held (:func:`~serialrepro.grid.kernels.kernel_bytes` each: all T while
    they fit in the kernel cache, else two at a time). Dense kernels add M² per kernel.
    The CLI's cost check calls this before running.
    """
    from serialrepro.grid.kernels import KERNEL_CACHE_BYTES, kernel_bytes, resolve_backend

    backend = resolve_backend(space, backend)
    steps = parse_keep(keep, T, space, itemsize)
    kept = T + 1 if steps is None else 2 * len(steps)
    levels = (T + 1) + kept + WORK_LEVELS
    per_kernel = kernel_bytes(space, backend)
    kernels = per_kernel * T if per_kernel * T <= KERNEL_CACHE_BYTES else 2 * per_kernel
    if backend == "dense":
        kernels += space.dense_bytes  # the matrix products' temporaries
    return int(itemsize * space.size * levels + kernels)


def check_keep(keep: str, figure: bool = False) -> str:
    """Validate ``keep`` before any work (the CLI); a figure needs every step."""
    parse_keep(keep, 2)
    if figure and str(keep).strip() not in ("auto", "all"):
        raise UserInputError(f"keep {keep!r} cannot draw a figure, which needs every step; "
                             "use --keep all (or auto)")
    return "all" if figure else str(keep).strip()


def _channel_information(k: GridKernel, prior: Tensor, pushed: Tensor, log_pushed: Tensor,
                         nd: int) -> tuple[Tensor, Tensor] | None:
    """(H(Y|X), I(X;Y)) of the perception channel X ~ prior, Y ~ K(·|X), as 0-d tensors,
    or None where the columns' entropies would cost O(M²) (fade to a fixed target on a
    large grid). Circulant kernels share one column entropy h: H(Y|X) = h·Σ prior."""
    h = k.constant_column_entropy_bits()
    if h is not None:
        h_cond = h * scores.sum_grid(prior, nd)
    elif k.backend == "fft" and k.space.size > INFO_MAX_POINTS:
        return None
    else:
        h_cond = scores.sum_grid(prior * k.column_entropy_bits(), nd)
    return h_cond, scores.entropy_from_log_bits(pushed, log_pushed, nd) - h_cond


def _run(data: Tensor, kernels: KernelSchedule, start: Tensor, renoise: bool,
         steps: list[int] | None, info: bool, callback: GridCallback | None) -> dict:
    """The whole simulation in two passes, every score computed as its inputs appear.

    Forward (t = 1..T): q_t = K_t q_{t−1}; log₂(q_t + ε) once per t serves both
    KL(q_{t−1}‖q_t) for the complexity and H(q_t) for the channel information.
    Reverse (t = T..1): one inverse 1 ⊘ K_t q_{t−1} (= 1 ⊘ q_t) per step is shared by the
    sampler step r_{t−1} = Post_t [K_t] r_t and, from t = T−1 on, by the stationarity
    pull-back v ← S_tᵀ v, which runs alongside the sampler instead of after it.
    Per step: one FFT pair forward, two in the sampler, two in the pull-back (serial).
    """
    T, nd = len(kernels), kernels.space.dims
    tracking = _tracks_grad(data, start, levels=kernels.levels)
    keep_all = steps is None
    # one buffer the steps write into: no copies, and no heap fragmentation (a list of
    # per-step tensors interleaved with the steps' temporaries grew the peak by ~2×)
    q = _Levels(T + 1, data, tracking)
    prev = q.set(0, data)
    log_prev = None
    # outside autograd the logs and their difference live in three rotating slots
    logs = None if tracking else _Levels(3, data, False)
    kls: list[Tensor] = []
    cond_entropy: list[Tensor | None] = []
    mutual_info: list[Tensor | None] = []
    for t in range(1, T + 1):
        k = kernels[t - 1]
        cur = q.set(t, _clamped(k.apply(prev, out=q.slot(t))))
        if logs is None:
            log_cur = torch.log2(cur + scores.EPS) if (T >= 2 or info) else None
        else:
            log_cur = torch.add(cur, scores.EPS, out=logs.slot(t % 2)).log2_()
        if t >= 2:
            # Σ q_{t−1}(log q_{t−1} − log q_t): the log difference first (no cancellation
            # between two large cross-entropies)
            diff = (log_prev - log_cur if logs is None
                    else torch.sub(log_prev, log_cur, out=logs.slot(2)))
            kls.append(scores.dot_grid(prev, diff))
        if info:
            ch = _channel_information(k, prev, cur, log_cur, nd)
            cond_entropy.append(None if ch is None else ch[0])
            mutual_info.append(None if ch is None else ch[1])
        prev, log_prev = cur, log_cur
    del log_prev, log_cur, logs

    rev = _Levels(T + 1, start, tracking) if keep_all else None
    kept: dict[int, Tensor] = {}
    r = rev.set(T, start) if keep_all else start
    if not keep_all and T in steps:
        kept[T] = start
    v = None
    # outside autograd every array of a step is written into this workspace (huge pages):
    # fresh step-sized arrays, freed and trimmed by the C allocator each step, page-faulted
    # anew every time; two rotating slots each for r and v, four for the FFT outputs
    work = None if tracking else _Levels(8, data, False)
    for t in range(T, 0, -1):
        k, prior = kernels[t - 1], q[t - 1]
        pushed = q[t]
        inv = inverse_above(pushed, k.noise_floor(pushed, nonnegative=True))
        if work is None:
            r_next = reproduce(r, k, prior, renoise=renoise, inverse=inv,
                               out=rev.slot(t - 1) if keep_all else None)
        else:
            dest = rev.slot(t - 1) if keep_all else work.slot(t % 2)
            a = k.apply(r, out=work.slot(4)) if renoise else torch.mul(r, 1.0, out=work.slot(4))
            back = k.apply_t(a.mul_(inv), out=work.slot(5))
            r_next = torch.mul(prior, back, out=dest).clamp_min_(0.0)
        if t == T - 1:
            v = r / (r_next + scores.EPS)  # r_{T−1} / (r_{T−2} + ε)
        if v is not None:
            if work is None:
                v = reproduce_transpose(v, k, prior, renoise=renoise, inverse=inv)
            else:
                w = k.apply(torch.mul(prior, v, out=work.slot(6)), out=work.slot(7)).mul_(inv)
                v = k.apply_t(w, out=work.slot(2 + t % 2)) if renoise else \
                    torch.mul(w, 1.0, out=work.slot(2 + t % 2))
        r = rev.set(t - 1, r_next) if keep_all else r_next
        if not keep_all and (t - 1) in steps:
            kept[t - 1] = r if work is None else r.clone()  # work slots are reused
        if callback is not None:
            callback(t - 1, r)

    if work is not None and not keep_all:
        r = r.clone()  # r_0 outlives the workspace
    out = {"final": r, "cond_entropy": cond_entropy, "mutual_info": mutual_info}
    out["kl_bits"] = scores.kl_bits(r, data, nd)
    out["jsd_bits"] = scores.jsd_bits(r, data, nd)
    out["complexity_bits"] = torch.stack(kls).amax() if kls else None
    out["stationarity"] = (torch.linalg.vector_norm(v - 1.0) / math.sqrt(v.numel())
                           if v is not None else None)
    if keep_all:
        out["marginals"], out["reverse"] = q.stacked(), rev.stacked()
    else:
        empty = data.new_empty((0, *data.shape))
        out["marginals"] = torch.stack([q[t] for t in steps]) if steps else empty
        out["reverse"] = torch.stack([kept[t] for t in steps]) if steps else empty
    return out


def _floats(values: list[Tensor | None]) -> list[float | None]:
    """0-d tensors to floats with one device synchronisation for the whole list."""
    idx = [i for i, x in enumerate(values) if x is not None]
    got = torch.stack([values[i].detach() for i in idx]).tolist() if idx else []
    out: list[float | None] = [None] * len(values)
    for i, x in zip(idx, got, strict=True):
        out[i] = x
    return out


def simulate(
    data: Tensor,
    family: str | NoiseFamily,
    sigmas: Sequence[float] | Tensor,
    space: GridSpace,
    step: str = "serial",
    backend: str = "auto",
    start: Tensor | None = None,
    info: bool = True,
    callback: GridCallback | None = None,
    keep: str = "auto",
) -> SimulationResult:
    """Run the paper's optimal-diffusion simulation and score it (docs/design.md §2).

    ``data`` is q_0 on ``space`` (device and dtype follow it). ``start`` defaults to the
    family's limit distribution p_F. ``info`` adds per-step H(Y|X) and I(X;Y) of the
    perception channel (X ~ q_{t−1}); on large grids with fade kernels they are None.
    ``keep`` says which steps of the two trajectories to return (:func:`parse_keep`);
    memory is :func:`simulation_bytes`. ``sigmas`` may be a 1-D tensor with
    ``requires_grad``: ``score_tensors`` are then differentiable in it.
    """
    t0 = time.perf_counter()
    fam = get_family(family)
    get_step(step)
    if tuple(data.shape) != space.shape:
        raise UserInputError(f"data shape {tuple(data.shape)} does not match grid {space.shape}")
    kernels = KernelSchedule(space, fam, sigmas, backend, device=data.device, dtype=data.dtype)
    T = len(kernels)
    steps = parse_keep(keep, T, space, data.element_size())
    if start is None:
        start = fam.limit_density(space).to(data)
    out = _run(data, kernels, start, step == "serial", steps, info, callback)
    names = ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")
    values = _floats([out[n] for n in names])
    result = SimulationResult(
        space=space, family=fam.name, sigmas=list(kernels.sigmas), step=step,
        backend=kernels.backend, data=data, marginals=out["marginals"], reverse=out["reverse"],
        kl_bits=values[0], jsd_bits=values[1], complexity_bits=values[2],
        stationarity=values[3], seconds=0.0,
        conditional_entropy_bits=_floats(out["cond_entropy"]),
        mutual_information_bits=_floats(out["mutual_info"]),
        kept_steps=steps, final=out["final"],
        score_tensors={n: out[n] for n in names if out[n] is not None},
    )
    result.seconds = time.perf_counter() - t0
    return result
