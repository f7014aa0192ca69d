"""Sampling timesteps for a trained DDPM chosen by rules, the grid engine's among them.

A trained DDPM on T training steps is sampled on k ≪ T of them. Four rules pick the k
timesteps τ_1 < … < τ_k (τ_k = T − 1 for all four, so they differ only in allocation):

* ``uniform``: evenly spaced indices, τ_j = round((j − 1)(T − 1)/(k − 1)) (DDIM's
  "linspace" spacing; :meth:`NoiseSchedule.respace` keeps 0, s, 2s, … instead);
* ``edm``: EDM's ρ = 7 spacing (Karras et al. 2022, eq. 5) in the DDPM's own noise
  level ς_t = √((1 − ᾱ_t)/ᾱ_t) (the std of the noise in x_t/√ᾱ_t, the variance-exploding
  view), from ς_max = ς_{T−1} down to ς_min = ς_0, each level rounded to the timestep of
  nearest log ς;
* ``grid-optimal`` and ``equal-complexity``: the grid engine's optimal schedule
  (:func:`serialrepro.grid.optimize.optimize_schedule`) or its equal-complexity schedule
  (:func:`serialrepro.grid.optimize.equal_complexity_levels`) for the same k steps, carried
  over by the mapping below.

**The mapping** (grid levels → DDPM timesteps). The grid process adds variance σ_j² at step
j, so after j steps it has added s_j = Σ_{i≤j} σ_i²; a DDPM step adds variance β_t to a
state it shrinks by √(1 − β_t), and the variance it has added by step t, relative to the
state, is u_t = −log ᾱ_t = Σ_{s≤t} −log(1 − β_s) (≈ Σ β_s, the integral ∫β of the
continuous-time VP process). The two ranges are incomparable (the grid's Σσ² is a few
hundredths of the data's spread, the DDPM's u_{T−1} is ≈ 10), so what carries over is the
*allocation*: the fraction of the total added at each step. Grid step j becomes the
timestep at which the DDPM has added the same fraction of its own total,

    u_{τ_j} / u_{T−1} = c_j = s_j / s_k,

solved by linear interpolation of u in t and rounded (:func:`timestep_of_fraction`;
c = 1 gives T − 1 and every c ≤ u_0/u_{T−1} gives 0). Equal grid levels give equal
increments of u, not of t. Collisions after rounding are resolved by moving the lower one
down (:func:`distinct_descending`).

An explicit timestep list is sampled by the standard respacing (improved-diffusion's
``SpacedDiffusion``, diffusers' custom ``set_timesteps``): β'_j = 1 − ᾱ_{τ_j}/ᾱ_{τ_{j−1}}
with ᾱ_{τ_0} = 1 (:func:`respace_to`), which for τ = 0, s, 2s, … equals
:meth:`Diffusion.respace` (s).

Scores of samples against held-out data: the energy distance
(:func:`serialrepro.metrics.sample.energy_distance`) and a histogram KL in bits
(:func:`histogram_kl_bits`) with additive smoothing ε per cell.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.metrics.sample import check_finite, histogram2d
from serialrepro.models.diffusion import Diffusion

RULES = ("uniform", "edm", "equal-complexity", "grid-optimal")
#: EDM's spacing exponent (Karras et al. 2022, eq. 5)
EDM_RHO = 7.0
#: histogram KL: cells, square bounds (the Swiss roll of serialrepro.data.toys lies in ±1.4)
#: and the probability ε added to every cell of both histograms before normalising
HIST_BINS = 32
HIST_BOUNDS = (-1.6, 1.6)
HIST_EPS = 1e-4


def _check_k(k: int, T: int) -> int:
    k = int(k)
    if not 2 <= k <= T:
        raise UserInputError(f"number of sampling steps k={k} is invalid; it must lie in 2..{T}")
    return k


def _full(process: Diffusion) -> Diffusion:
    if process.num_steps != process.num_train_timesteps:
        raise UserInputError("timesteps are chosen on the training schedule; pass the "
                             "un-respaced process")
    return process


def distinct_descending(ts, T: int) -> list[int]:
    """``ts`` (k integers in 0..T−1, any order) made distinct and returned descending: from
    the top, each one is lowered to at most one below the previous (then raised from the
    bottom where that would leave the range), so the highest stays where it is."""
    t = sorted((int(min(max(v, 0), T - 1)) for v in ts), reverse=True)
    if len(t) > T:
        raise UserInputError(f"{len(t)} distinct timesteps do not fit in 0..{T - 1}")
    for i in range(1, len(t)):
        t[i] = min(t[i], t[i - 1] - 1)
    for i in range(len(t) - 1, -1, -1):  # raise from the bottom if pushed below 0
        t[i] = max(t[i], 0 if i == len(t) - 1 else t[i + 1] + 1)
    return t


def noise_levels(process: Diffusion) -> Tensor:
    """ς_t = √((1 − ᾱ_t)/ᾱ_t) for t = 0..T−1 (float64)."""
    ac = _full(process).schedule.training_alphas_cumprod
    return torch.sqrt((1 - ac) / ac)


def added_variance(process: Diffusion) -> Tensor:
    """u_t = −log ᾱ_t for t = 0..T−1 (float64): the mapping's DDPM-side coordinate."""
    return -torch.log(_full(process).schedule.training_alphas_cumprod)


def timestep_of_fraction(process: Diffusion, c) -> Tensor:
    """The continuous timestep where u_t/u_{T−1} = c (linear interpolation of u in t), for
    c in [0, 1]; clamped to [0, T−1]."""
    u = added_variance(process)
    frac = u / u[-1]
    c = torch.as_tensor(c, dtype=torch.float64).clamp(0, 1)
    i = torch.searchsorted(frac, c).clamp(1, frac.numel() - 1)
    lo, hi = frac[i - 1], frac[i]
    w = ((c - lo) / (hi - lo)).clamp(0, 1)
    return (i - 1 + w).to(torch.float64)


def level_fractions(levels) -> Tensor:
    """c_j = Σ_{i≤j} σ_i² / Σ_i σ_i² of grid levels σ_1..σ_k (float64, c_k = 1)."""
    s = torch.cumsum(torch.as_tensor(levels, dtype=torch.float64) ** 2, 0)
    if s.numel() == 0 or not bool(torch.isfinite(s).all()) or not float(s[-1]) > 0:
        raise UserInputError("grid levels must be finite, not all zero, and at least one")
    return s / s[-1]


def timesteps_from_levels(process: Diffusion, levels) -> list[int]:
    """Grid levels σ_1..σ_k → k distinct descending DDPM timesteps by the module's mapping."""
    T = _full(process).num_steps
    _check_k(len(levels), T)
    t = timestep_of_fraction(process, level_fractions(levels))
    return distinct_descending(torch.round(t).long().tolist(), T)


def uniform_timesteps(T: int, k: int) -> list[int]:
    """k evenly spaced indices from T−1 down to 0, descending."""
    k = _check_k(k, T)
    t = torch.round(torch.linspace(0, T - 1, k, dtype=torch.float64)).long().tolist()
    return distinct_descending(t, T)


def edm_levels(sigma_min: float, sigma_max: float, k: int, rho: float = EDM_RHO) -> Tensor:
    """Karras et al. (2022) eq. 5: ς_i = (ς_max^{1/ρ} + i/(k−1)(ς_min^{1/ρ} − ς_max^{1/ρ}))^ρ,
    i = 0..k−1 (descending, float64)."""
    i = torch.arange(k, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + i / (k - 1) * (b - a)) ** rho


def edm_timesteps(process: Diffusion, k: int, rho: float = EDM_RHO) -> list[int]:
    """EDM's ρ spacing in the DDPM's ς, each level rounded to the nearest log ς (descending)."""
    sig = noise_levels(process)
    T = sig.numel()
    k = _check_k(k, T)
    want = edm_levels(float(sig[0]), float(sig[-1]), k, rho)
    t = (torch.log(want)[:, None] - torch.log(sig)[None, :]).abs().argmin(dim=1)
    return distinct_descending(t.tolist(), T)


def grid_levels(kind: str, k: int, grid: str = "paper:0.04", prior: str = "swiss-roll",
                noise: str = "gaussian", constraint: str = "final-kl",
                step: str = "serial") -> dict:
    """The grid engine's ``kind`` schedule ("grid-optimal" or "equal-complexity") for k steps
    under ``constraint``: ``final-kl`` (KL(q_k‖p_F) = half of KL(data‖p_F), as the
    optimal-schedule experiment sets it), ``ends`` (the family's paper ends) or a full spec
    such as ``final-kl:0.8``; returns {"sigmas", "kl_bits", "constraint"}."""
    from serialrepro.families import get_family
    from serialrepro.grid import scores
    from serialrepro.grid.optimize import (
        Problem,
        equal_complexity_levels,
        optimize_schedule,
        paper_ends,
        parse_constraint,
        schedule_scores,
    )
    from serialrepro.grid.priors import limit_distribution, make_prior
    from serialrepro.grid.space import parse_grid

    space = parse_grid(grid, 2)
    data = make_prior(prior, space)
    if ":" in constraint:
        spec = constraint
    elif constraint == "final-kl":
        start = limit_distribution(noise, space).to(data)
        spec = f"final-kl:{0.5 * float(scores.kl_bits(data, start, space.dims))!r}"
    elif constraint == "ends":
        a, b = paper_ends(noise)
        spec = f"ends:{a!r}:{b!r}"
    else:
        raise unknown_name("constraint", constraint, ("final-kl", "ends", "a full spec"))
    pb = Problem(data, get_family(noise), space, int(k), parse_constraint(spec, noise, int(k)),
                 step=step)
    if kind == "grid-optimal":
        res = optimize_schedule(pb)
    elif kind == "equal-complexity":
        res = schedule_scores(pb, equal_complexity_levels(pb))
    else:
        raise unknown_name("grid schedule", kind, ("grid-optimal", "equal-complexity"))
    return {"sigmas": list(res["sigmas"]), "kl_bits": float(res["kl_bits"]), "constraint": spec}


def select_timesteps(rule: str, process: Diffusion, k: int, levels=None) -> list[int]:
    """k distinct descending timesteps of ``process`` by ``rule`` (:data:`RULES`); the grid
    rules take their grid ``levels`` (σ_1..σ_k)."""
    T = _full(process).num_steps
    if rule == "uniform":
        return uniform_timesteps(T, k)
    if rule == "edm":
        return edm_timesteps(process, k)
    if rule in ("equal-complexity", "grid-optimal"):
        if levels is None or len(levels) != int(k):
            raise UserInputError(f"rule {rule!r} needs its {k} grid levels")
        return timesteps_from_levels(process, levels)
    raise unknown_name("timestep rule", rule, RULES)


def respace_to(process: Diffusion, timesteps) -> Diffusion:
    """A new process stepping on the explicit training timesteps ``timesteps`` (any order,
    distinct): β'_j = 1 − ᾱ_{τ_j}/ᾱ_{τ_{j−1}}, ᾱ_{τ_0} = 1 (the module docstring), through
    :meth:`Diffusion.set_timesteps` on a copy; ``process`` itself is unchanged."""
    T = _full(process).num_steps
    ts = sorted((int(t) for t in timesteps), reverse=True)
    if not ts or len(set(ts)) != len(ts) or ts[-1] < 0 or ts[0] >= T:
        raise UserInputError(f"timesteps must be distinct integers in 0..{T - 1}, "
                             f"got {list(timesteps)[:8]}")
    out = process.respace(1)
    out.set_timesteps(timesteps=ts)
    return out


def histogram_kl_bits(samples: Tensor, data: Tensor, bins: int = HIST_BINS,
                      bounds: tuple[float, float] = HIST_BOUNDS, eps: float = HIST_EPS) -> float:
    """KL(p̂_samples ‖ p̂_data) in bits between 2-D histograms on [lo, hi]², each cell's
    probability raised by ``eps`` before renormalising (points outside are dropped)."""
    check_finite(samples, "the samples")
    check_finite(data, "the reference points")
    if not (eps > 0 and math.isfinite(eps)):
        raise UserInputError(f"histogram smoothing eps={eps!r} must be a finite number > 0")
    p = histogram2d(samples, bins, *bounds).flatten() + eps
    q = histogram2d(data, bins, *bounds).flatten() + eps
    p, q = p / p.sum(), q / q.sum()
    return float((p * torch.log2(p / q)).sum())
