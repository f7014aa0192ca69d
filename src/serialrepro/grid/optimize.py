"""Optimal noise schedules for the exact engine, under an explicit constraint.

With exact posteriors the sampler's only error is that it starts from p_F instead of q_T
(docs/design.md §6). With free levels the optimum is trivial (one huge step reaches p_F
and the exact posterior returns the data), so every optimisation here states its
constraint, one of

* ``ends:A:B`` — σ_1 = A and σ_T = B (the paper's schedules fix both ends);
* ``total-variance:V`` — Σ_t σ_t² = V (equal total noise);
* ``max-level:S`` — every σ_t ≤ S;
* ``final-kl:D`` — KL(q_T‖p_F) = D bits: the forward process ends equally far from p_F
  (as an upper bound it would not bind: more noise only lowers KL(q_T‖p_F)).

Levels are monotone (the forward noise grows) and stay within the family's level bounds
(fade levels in [0, 1]). Each constraint has a smooth parameterisation by an
unconstrained vector z: increments w = softmax(z) > 0 give a monotone shape
x = cumsum(w) in (0, 1], which the constraint maps to levels (affinely between the ends;
scaled by the closed-form or root-found factor that meets Σσ² = V or KL(q_T‖p_F) = D,
the latter differentiated by the implicit-function theorem; times S under max-level).
The objective kl or jsd of r_0 against the data (docs/design.md §2) is differentiated by
torch autograd through the engine's own operations (:func:`~serialrepro.grid.process.
forward_marginals` and the reverse samplers, dense or FFT) and minimised by L-BFGS with a
strong-Wolfe line search from several starts: every baseline's own shape (so the optimum
is never worse than a baseline) and seeded random shapes.

Baselines, all meeting the same constraint: linear, cosine and geometric spacing, EDM's
ρ = 7 spacing (Karras et al. 2022, eq. 5), and the equal-complexity schedule
(:func:`equal_complexity_levels`): levels such that KL(q_t‖q_{t+1}) is the same at every
step, solved level by level by Brent's method inside an outer root search for the common
value that meets the constraint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import NoiseFamily, get_family
from serialrepro.grid import scores
from serialrepro.grid.kernels import KernelSchedule, make_kernel
from serialrepro.grid.priors import limit_distribution
from serialrepro.grid.space import GridSpace
from serialrepro.schedules import ScheduleContext, register_resolver

CONSTRAINTS = {
    "ends": "ends:A:B — first level A, last level B",
    "total-variance": "total-variance:V — Σσ² = V",
    "max-level": "max-level:S — every level ≤ S",
    "final-kl": "final-kl:D — KL(q_T‖p_F) = D bits",
}
CONSTRAINT_CHOICES = "ends:A:B, total-variance:V, max-level:S, final-kl:D"
OBJECTIVES = ("kl", "jsd")


def check_objective(name: str) -> str:
    """``name`` if it is one of :data:`OBJECTIVES`, else the standard unknown-name error."""
    if name not in OBJECTIVES:
        raise unknown_name("objective", name, OBJECTIVES)
    return name
BASELINES = ("linear", "cosine", "geometric", "edm", "equal-complexity")
#: EDM's spacing exponent (Karras et al. 2022, eq. 5)
EDM_RHO = 7.0

#: end levels of the paper's schedules per family (docs/design.md §2: Figure 3 for gaussian,
#: S5 for bimodal, 2D–E for the fades); other families use the gaussian ends
PAPER_ENDS = {
    "gaussian": (0.01, 0.05),
    "bimodal": (0.02, 0.07),
    "trimodal": (0.02, 0.07),
    "fade-uniform": (0.01, 1.0),
    "fade-fixed": (0.01, 1.0),
}
DEFAULT_ENDS = (0.01, 0.05)

#: levels of unbounded families are searched up to this value (on the unit torus every
#: family is uniform long before it)
LEVEL_CAP = 1e3
#: and down to this one (a kernel far narrower than any grid spacing is the identity, and
#: σ² must not underflow)
LEVEL_FLOOR = 1e-8


def paper_ends(family: str | NoiseFamily) -> tuple[float, float]:
    """(A, B) of the paper's schedule for ``family`` (the default ``ends`` constraint)."""
    return PAPER_ENDS.get(get_family(family).name, DEFAULT_ENDS)


def level_bounds(family: str | NoiseFamily) -> tuple[float, float]:
    """(lowest, highest) valid level of ``family``, from its declared bounds
    (``min_level``, ``max_level``, ``zero_level_valid``): (0, 1) for the fades; for the
    others the smallest positive float (σ > 0) and inf."""
    fam = get_family(family)
    lo = fam.min_level if fam.zero_level_valid else math.nextafter(fam.min_level, math.inf)
    return lo, fam.max_level


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: ``kind`` (a key of :data:`CONSTRAINTS`) and its values."""

    kind: str
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return ":".join([self.kind, *(repr(float(v)) for v in self.values)])


def parse_constraint(text: str | None, family: str | NoiseFamily, T: int) -> Constraint:
    """Parse and check ``text`` for ``family`` and T steps (None: the paper's ends).

    Infeasible constraints are one-line :class:`UserInputError`\\ s: ends outside the
    family's bounds or decreasing, a total variance the bounds cannot reach (V > T·max²),
    a maximum level outside the bounds, a final KL that is not positive.
    """
    fam = get_family(family)
    lo, hi = level_bounds(fam)
    if T < 1:
        raise UserInputError(f"the number of steps T={T} must be ≥ 1")
    if text is None or not str(text).strip():
        return Constraint("ends", paper_ends(fam))
    raw = str(text).strip()
    kind, _, rest = raw.partition(":")
    if kind not in CONSTRAINTS:
        raise UserInputError(f"constraint {raw!r} is invalid; valid choices: {CONSTRAINT_CHOICES}")
    parts = rest.split(":") if rest else []
    want = 2 if kind == "ends" else 1
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != want or not all(math.isfinite(v) for v in vals):
        raise UserInputError(f"constraint {raw!r} is invalid: {CONSTRAINTS[kind]} with finite "
                             "numbers")
    bounds = f"[{lo:g}, {hi:g}]" if hi < math.inf else f"σ > {lo:g}" if lo > 0 else "σ ≥ 0"
    if kind == "ends":
        a, b = vals
        for v in (a, b):
            if not (v >= lo and v <= hi) or (lo > 0 and v <= 0):
                raise UserInputError(f"constraint {raw!r} is infeasible: level {v:g} is outside "
                                     f"the {fam.name} level range {bounds}")
        if a > b:
            raise UserInputError(f"constraint {raw!r} is infeasible: levels must not decrease, "
                                 f"but A={a:g} > B={b:g}")
        if T == 1 and a != b:
            raise UserInputError(f"constraint {raw!r} is infeasible for T=1: one level cannot "
                                 "be both A and B (use ends:B:B)")
    elif kind == "total-variance":
        (v,) = vals
        if v <= 0:
            raise UserInputError(f"constraint {raw!r} is infeasible: the total variance must "
                                 "be > 0")
        if v > T * hi * hi:
            raise UserInputError(f"constraint {raw!r} is infeasible: {T} {fam.name} levels of "
                                 f"at most {hi:g} reach Σσ² ≤ {T * hi * hi:g}")
    elif kind == "max-level":
        (s,) = vals
        if not (s > 0 and s <= hi):
            raise UserInputError(f"constraint {raw!r} is infeasible: the maximum level must lie "
                                 f"in (0, {hi:g}] for {fam.name}")
    else:
        (d,) = vals
        if d <= 0:
            raise UserInputError(f"constraint {raw!r} is infeasible: the final KL must be > 0 "
                                 "bits (p_F itself is reached only in the limit)")
    return Constraint(kind, vals)


# -- the problem: data, family, grid, step, objective ---------------------------------


@dataclass
class Problem:
    """One schedule problem: minimise ``objective`` of r_0 vs ``data`` over T levels."""

    data: Tensor
    family: NoiseFamily
    space: GridSpace
    T: int
    constraint: Constraint
    step: str = "serial"
    objective: str = "kl"
    backend: str = "auto"
    start: Tensor = field(init=False)
    bounds: tuple[float, float] = field(init=False)

    def __post_init__(self) -> None:
        from serialrepro.grid.process import get_step

        self.family = get_family(self.family)
        get_step(self.step)
        check_objective(self.objective)
        self.start = limit_distribution(self.family, self.space).to(self.data)
        self.bounds = level_bounds(self.family)

    # the engine, differentiable in the levels ------------------------------------
    def kernels(self, levels) -> KernelSchedule:
        return KernelSchedule(self.space, self.family, levels, self.backend,
                              device=self.data.device, dtype=self.data.dtype)

    def final_marginal(self, levels) -> Tensor:
        """q_T for ``levels`` (a list or a tensor, differentiable in it)."""
        q = self.data
        for k in self.kernels(levels):
            q = k.apply(q).clamp_min(0.0)
        return q

    def final_kl(self, levels) -> Tensor:
        """KL(q_T‖p_F) in bits."""
        return scores.kl_bits(self.final_marginal(levels), self.start, self.space.dims)

    def loss(self, levels: Tensor) -> Tensor:
        """kl or jsd (bits) of r_0 against the data: the forward marginals, then the reverse
        steps r_{t−1} = Post_t [K_t] r_t from p_F (:mod:`serialrepro.grid.process`)."""
        from serialrepro.grid.process import forward_marginals, get_step

        ks = self.kernels(levels)
        q = forward_marginals(self.data, ks)
        r0 = get_step(self.step)(ks, q, self.start).final
        fn = scores.kl_bits if self.objective == "kl" else scores.jsd_bits
        return fn(r0, self.data, self.space.dims)

    # constraint maps: shape x (monotone, in (0, 1]) -> levels ----------------------
    def _scale_total_variance(self, x: Tensor) -> Tensor:
        """min(c·x, U) with c such that Σ min(c x_i, U)² = V: the top k levels sit at the
        bound U, the rest are scaled (x increasing, x_T = 1)."""
        (V,) = self.constraint.values
        U = self.bounds[1]
        T = x.numel()
        if U == math.inf:
            return x * torch.sqrt(V / (x * x).sum())
        xs = x.detach().tolist()
        for k in range(T + 1):
            if k == T:
                return torch.full_like(x, U)
            rest = V - k * U * U
            ss = sum(v * v for v in xs[:T - k])
            if rest <= 0:
                continue
            c = math.sqrt(rest / ss)
            if c * xs[T - k - 1] <= U * (1 + 1e-15) and (k == 0 or c * xs[T - k] >= U):
                c_t = torch.sqrt(rest / (x[:T - k] * x[:T - k]).sum())
                return torch.cat([c_t * x[:T - k], x.new_full((k,), U)])
        return torch.full_like(x, U)

    def _final_kl_scale(self, x: Tensor, guess: float | None) -> float:
        """c with KL(q_T(min(c·x, U))‖p_F) = D (Brent's method on log c)."""
        from scipy.optimize import brentq

        (D,) = self.constraint.values
        U = self.bounds[1]
        xd = x.detach()

        def g(logc: float) -> float:
            lv = torch.clamp(math.exp(logc) * xd, max=U).clamp_min(self.floor)
            return float(self.final_kl(lv)) - D

        hi_c = math.log(U / float(xd.max())) if U < math.inf else math.log(LEVEL_CAP)
        lo_c = hi_c - 60.0
        if guess is not None:
            a, b = math.log(guess) - 0.2, min(math.log(guess) + 0.2, hi_c)
            if a < b and g(a) > 0 > g(b):
                return math.exp(brentq(g, a, b, xtol=1e-14, rtol=1e-13))
        ga, gb = g(lo_c), g(hi_c)
        if not (ga > 0 > gb):
            raise UserInputError(
                f"constraint {self.constraint.label} is infeasible for this data and family: "
                f"KL(q_T‖p_F) ranges over [{gb + D:.4g}, {ga + D:.4g}] bits")
        return math.exp(brentq(g, lo_c, hi_c, xtol=1e-14, rtol=1e-13))

    def levels_from_shape(self, x: Tensor, state: dict | None = None) -> Tensor:
        """Levels meeting the constraint from a monotone shape ``x`` (x_T = 1 except under
        max-level, where x_T ≤ 1 is the fraction of S)."""
        kind, vals = self.constraint.kind, self.constraint.values
        if kind == "ends":
            a, b = vals
            return a + (b - a) * x
        if kind == "max-level":
            return vals[0] * x
        if kind == "total-variance":
            return self._scale_total_variance(x)
        # final-kl: c(x) from a root search, its gradient by the implicit-function
        # theorem, dc/dx = −(∂F/∂x)/(∂F/∂c) for F(c, x) = KL(q_T‖p_F) − D
        U = self.bounds[1]
        guess = None if state is None else state.get("c")
        c = self._final_kl_scale(x, guess)
        if state is not None:
            state["c"] = c
        if x.requires_grad:
            c_t = torch.tensor(c, dtype=x.dtype, device=x.device, requires_grad=True)
            f_c = self.final_kl(torch.clamp(c_t * x.detach(), max=U).clamp_min(self.floor))
            (dfdc,) = torch.autograd.grad(f_c, c_t)
            f_x = self.final_kl(torch.clamp(c * x, max=U).clamp_min(self.floor))
            if float(dfdc) != 0.0:
                c_eff = c - (f_x - f_x.detach()) / dfdc.detach()
                return torch.clamp(c_eff * x, max=U).clamp_min(self.floor)
        return torch.clamp(c * x, max=U).clamp_min(self.floor)

    # parameterisation z -> levels -----------------------------------------------
    @property
    def free(self) -> int:
        """Length of z (0: the constraint fixes every level)."""
        kind = self.constraint.kind
        if kind == "ends":
            return 0 if self.T <= 2 or self.constraint.values[0] == self.constraint.values[1] \
                else self.T - 1
        if kind == "max-level":
            return self.T + 1
        return 0 if self.T == 1 else self.T

    def shape_from_z(self, z: Tensor) -> Tensor:
        w = torch.softmax(z, dim=0)
        c = torch.cumsum(w, dim=0)
        kind = self.constraint.kind
        if kind == "ends":
            return torch.cat([c.new_zeros(1), c[:-1], c.new_ones(1)])
        if kind == "max-level":
            return c[:-1]  # the last increment is slack: x_T ≤ 1
        return torch.cat([c[:-1], c.new_ones(1)])

    @property
    def floor(self) -> float:
        """The lowest level used: the family's bound, or :data:`LEVEL_FLOOR` where the
        bound is an open σ > 0."""
        return self.bounds[0] if self.bounds[0] == 0 else max(self.bounds[0], LEVEL_FLOOR)

    def levels_from_z(self, z: Tensor, state: dict | None = None) -> Tensor:
        return self.levels_from_shape(self.shape_from_z(z), state).clamp_min(self.floor)

    def z_from_levels(self, levels: list[float]) -> Tensor:
        """A z whose levels have the same shape as ``levels`` (an optimiser start)."""
        lv = torch.tensor(levels, dtype=torch.float64)
        kind, vals = self.constraint.kind, self.constraint.values
        if kind == "ends":
            a, b = vals
            w = torch.diff(lv) / (b - a)
        elif kind == "max-level":
            x = lv / vals[0]
            w = torch.cat([x[:1], torch.diff(x), (1 - x[-1:])])
        else:
            x = lv / lv[-1]
            w = torch.cat([x[:1], torch.diff(x)])
        return torch.log(w.clamp_min(1e-12)).to(self.data.dtype)

    def fixed_levels(self) -> list[float]:
        """The only schedule when :attr:`free` is 0."""
        kind, vals = self.constraint.kind, self.constraint.values
        if kind == "ends":
            if self.T == 1:
                return [vals[1]]
            if vals[0] == vals[1]:
                return [vals[0]] * self.T
            return [vals[0], vals[1]]
        one = self.data.new_ones(1)
        return [float(v) for v in self.levels_from_shape(one)]


# -- baselines ------------------------------------------------------------------------


def _shape(kind: str, T: int, a: float, b: float) -> list[float] | None:
    """The levels of a named spacing from a to b (None where it is undefined: geometric
    and EDM spacing from a = 0)."""
    if T == 1:
        return [b]
    f = [i / (T - 1) for i in range(T)]
    if kind == "linear":
        return [a + (b - a) * t for t in f]
    if kind == "cosine":
        return [a + (b - a) * (1.0 - math.cos(math.pi * t)) / 2.0 for t in f]
    if a <= 0:
        return None
    if kind == "geometric":
        return [a * (b / a) ** t for t in f]
    if kind == "edm":
        ra, rb = a ** (1 / EDM_RHO), b ** (1 / EDM_RHO)
        return [(ra + t * (rb - ra)) ** EDM_RHO for t in f]
    raise UserInputError(f"unknown spacing {kind!r}; valid choices: {', '.join(BASELINES)}")


def baseline_levels(problem: Problem, kind: str) -> list[float] | None:
    """The ``kind`` baseline under the problem's constraint: between the ends for ``ends``;
    otherwise the spacing with the paper's end ratio for the family, mapped by the
    constraint (scaled to Σσ² = V or KL(q_T‖p_F) = D, or to end at S)."""
    if kind == "equal-complexity":
        try:
            return equal_complexity_levels(problem)
        except UserInputError:
            # e.g. bimodal noise under a free first level: its fixed shift makes even the
            # narrowest step cost more KL than the constraint leaves (undefined here)
            return None
    T, c = problem.T, problem.constraint
    if c.kind == "ends":
        out = _shape(kind, T, *c.values)
        if out is not None:
            out[-1] = c.values[1]
        return out
    a, b = paper_ends(problem.family)
    s = _shape(kind, T, a, b)
    if s is None:
        return None
    x = torch.tensor([v / s[-1] for v in s], dtype=problem.data.dtype,
                     device=problem.data.device)
    with torch.no_grad():
        return [float(v) for v in problem.levels_from_shape(x)]


def _step_kl(problem: Problem, q: Tensor, level: float) -> tuple[float, Tensor]:
    """KL(q‖K_level q) in bits, and K_level q."""
    k = make_kernel(problem.space, problem.family, level, problem.backend,
                    device=q.device, dtype=q.dtype)
    nxt = k.apply(q).clamp_min(0.0)
    return float(scores.kl_bits(q, nxt, problem.space.dims)), nxt


def _march(problem: Problem, q: Tensor, level: float, c: float, steps: int,
           cap: float) -> tuple[list[float], Tensor]:
    """From q (noised last at ``level``), ``steps`` more levels with KL(q_t‖q_{t+1}) = c
    each, every level in [previous, cap] (clipped at an end when c is out of reach)."""
    from scipy.optimize import brentq

    levels = []
    floor = problem.floor
    for _ in range(steps):
        # (a zero level is searched from LEVEL_FLOOR: the bracket needs a log)
        lo = max(level, floor, LEVEL_FLOOR if level <= 0 else 0.0)
        f_lo, q_lo = _step_kl(problem, q, lo)
        if f_lo >= c:
            level, q = lo, q_lo
        else:
            f_hi, q_hi = _step_kl(problem, q, cap)
            if f_hi <= c:
                level, q = cap, q_hi
            else:
                # log-levels: the KL grows like a power of the level at small levels
                a = math.log(lo)
                root = brentq(lambda u, q=q: _step_kl(problem, q, math.exp(u))[0] - c, a,
                              math.log(cap), xtol=1e-13, rtol=1e-12)
                level = math.exp(root)
                q = _step_kl(problem, q, level)[1]
        levels.append(level)
    return levels, q


def equal_complexity_levels(problem: Problem) -> list[float]:
    """Levels with the same KL(q_t‖q_{t+1}) at every step, meeting the constraint.

    Under ``ends:A:B`` σ_1 = A and σ_2..σ_T follow from q_1 by KL(q_t‖q_{t+1}) = c for
    t = 1..T−1 (the complexity of docs/design.md §2 is then c at every step), each level
    found by Brent's method; the common c is the root of σ_T(c) = B. Under the other
    constraints σ_1 is free too and the first step joins: KL(q_{t−1}‖q_t) = c for
    t = 1..T, with c the root of the constraint (Σσ² = V, σ_T = S, KL(q_T‖p_F) = D).
    σ_T(c) grows with c, so each outer root is bracketed. Levels must not decrease: where
    a step at the previous level already exceeds c (bimodal noise, whose fixed shift moves
    a sharp q_t by much even at a small width), the level stays at the previous one and
    that step's KL exceeds c; the later steps share c.
    """
    from scipy.optimize import brentq

    T, con = problem.T, problem.constraint
    cap = min(problem.bounds[1], LEVEL_CAP)
    data = problem.data
    if problem.free == 0:
        return problem.fixed_levels()
    if con.kind == "ends":
        a, b = con.values
        q1 = _step_kl(problem, data, a)[1]
        cap = b

        def run(c: float) -> list[float]:
            return [a] + _march(problem, q1, a, c, T - 1, cap)[0]

        def resid(logc: float) -> float:
            return run(math.exp(logc))[-1] - b * (1 - 1e-12)

        hi = math.log(max(_step_kl(problem, q1, b)[0], 1e-300)) + 1e-9
    else:
        if con.kind == "max-level":
            cap = con.values[0]

        def run(c: float) -> list[float]:
            return _march(problem, data, 0.0, c, T, cap)[0]

        def measure(levels: list[float]) -> float:
            if con.kind == "total-variance":
                return sum(v * v for v in levels) - con.values[0]
            if con.kind == "max-level":
                return levels[-1] - con.values[0] * (1 - 1e-12)
            return con.values[0] - float(problem.final_kl(levels))

        def resid(logc: float) -> float:
            return measure(run(math.exp(logc)))

        hi = math.log(max(_step_kl(problem, data, cap)[0], 1e-300)) + 1e-9
        if resid(hi) < 0:
            raise UserInputError(f"constraint {con.label} is infeasible for this data and "
                                 f"family: even {T} levels at {cap:g} do not meet it")
    lo = hi - 80.0
    if resid(lo) >= 0:
        return run(math.exp(lo))
    if resid(hi) < 0:
        # the march cannot reach the end level B at any common per-step KL (bimodal noise:
        # its fixed shift makes the steps cost more than the ends allow)
        raise UserInputError(f"no equal-complexity schedule meets {con.label} for this data "
                             f"and family with T={T}: no common per-step KL reaches the end "
                             "level")
    logc = brentq(resid, lo, hi, xtol=1e-12, rtol=1e-12)
    levels = run(math.exp(logc))
    if con.kind == "ends":
        levels[-1] = con.values[1]
    elif con.kind == "max-level":
        levels[-1] = min(levels[-1], con.values[0])
    return levels


@register_resolver("equal-complexity")
def equal_complexity_shape(T: int, params: dict[str, float],
                           context: ScheduleContext) -> list[float]:
    """The ``equal-complexity`` schedule shape of :mod:`serialrepro.schedules`:
    :func:`equal_complexity_levels` under ``ends:start:end`` for the context's prior, grid
    (and dims) and family, with its kernel backend on its device."""
    from serialrepro.devices import resolve_device
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.space import parse_grid

    a, b = float(params["start"]), float(params["end"])
    label = f"the equal-complexity schedule {a:g}→{b:g}"
    if T == 1 and a != b:
        raise UserInputError(f"{label} at T=1 has one level, which cannot be both start={a:g} "
                             f"and end={b:g}; give start = end")
    fam = get_family(context.family)
    space = parse_grid(context.grid, context.dims)
    try:
        con = parse_constraint(f"ends:{a!r}:{b!r}", fam, T)
    except UserInputError as exc:
        raise UserInputError(f"{label}: {exc}") from None
    data = make_prior(context.prior, space).to(resolve_device(context.device))
    return equal_complexity_levels(Problem(data, fam, space, T, con, backend=context.backend))


# -- the optimiser ----------------------------------------------------------------------


@dataclass
class OptimizeResult:
    sigmas: list[float]
    loss_bits: float
    iterations: int
    evaluations: int
    seconds: float
    starts: int


def optimize_levels(problem: Problem, restarts: int = 2, max_iter: int = 100, seed: int = 0,
                    keep_best: int = 2, inits: list[list[float]] | None = None,
                    progress: Callable[[str], None] | None = None) -> OptimizeResult:
    """Minimise the problem's objective over its constrained levels by L-BFGS.

    Starts: ``inits`` (e.g. the baselines' levels, mapped to their shape), a linear shape
    (z = 0), the collapsed shapes of :func:`collapsed_starts` and ``restarts`` seeded random
    shapes (z ~ N(0, 1)); the ``keep_best`` best starts are optimised, and the best point
    ever evaluated is returned, so the result is never worse than any start.
    """
    t0 = time.perf_counter()
    n = problem.free
    if n == 0:
        lv = problem.fixed_levels()
        with torch.no_grad():
            val = float(problem.loss(torch.tensor(lv, dtype=problem.data.dtype,
                                                  device=problem.data.device)))
        return OptimizeResult(lv, val, 0, 1, time.perf_counter() - t0, 0)
    dtype, dev = problem.data.dtype, problem.data.device
    gen = torch.Generator().manual_seed(seed)
    starts = [torch.zeros(n, dtype=dtype)]
    for lv in list(inits or []) + collapsed_starts(problem):
        if lv is not None and len(lv) == problem.T:
            starts.append(problem.z_from_levels(lv))
    starts += [torch.randn(n, generator=gen, dtype=dtype) for _ in range(restarts)]
    starts = [s.to(dev) for s in starts]
    best = {"val": math.inf, "z": None, "evals": 0}
    state: dict = {}

    def value(z: Tensor, grad: bool) -> Tensor:
        best["evals"] += 1
        lv = problem.levels_from_z(z, state)
        val = problem.loss(lv)
        v = float(val.detach())
        if math.isfinite(v) and v < best["val"]:
            best["val"], best["z"] = v, z.detach().clone()
        return val

    with torch.no_grad():
        first = [float(value(s, False)) for s in starts]
    order = sorted(range(len(starts)), key=lambda i: first[i])[:keep_best]
    iterations = 0
    for rank, i in enumerate(order):
        iterations += _lbfgs(starts[i].clone(), value, max_iter)
        if progress is not None:
            progress(f"start {rank + 1}/{len(order)}: {problem.objective} "
                     f"{best['val']:.6f} bits")
    with torch.no_grad():
        lv = problem.levels_from_z(best["z"], state)
    levels = [float(v) for v in lv]
    # the constraint's values exactly where the map meets them up to round-off
    if problem.constraint.kind == "ends":
        levels[0], levels[-1] = problem.constraint.values
    for i, v in enumerate(levels):
        levels[i] = max(v, problem.floor if i == 0 else levels[i - 1])
    return OptimizeResult(levels, best["val"], iterations, best["evals"],
                          time.perf_counter() - t0, len(order))


def collapsed_starts(problem: Problem) -> list[list[float]]:
    """Schedules that do all their work in the last m steps, m = 1, 2, 3 and T/2: the
    first T − m levels at the lowest level (the start level A under ``ends``), the last m
    linearly spaced and mapped by the constraint.

    A level at the floor is (numerically) an identity kernel, and a reverse step with it
    changes nothing, so a T-step schedule can do what any m-step one does; L-BFGS from a
    spread-out start need not find that (the landscape has a local optimum with every step
    used), so these starts let the optimum at T be at least as good as the best m-step
    schedule it contains."""
    T, con = problem.T, problem.constraint
    out = []
    for m in sorted({1, 2, 3, T // 2}):
        if not 1 <= m < T:
            continue
        if con.kind == "ends":
            a, b = con.values
            if m < 2:
                continue
            tail = [a + (b - a) * i / (m - 1) for i in range(m)]
            out.append([a] * (T - m) + tail)
            continue
        frac = [(i + 1) / m for i in range(m)]
        x = torch.tensor([1e-9] * (T - m) + frac, dtype=problem.data.dtype,
                         device=problem.data.device)
        try:
            with torch.no_grad():
                out.append([float(v) for v in problem.levels_from_shape(x).clamp_min(
                    problem.floor)])
        except UserInputError:
            continue
    return out


def _lbfgs(z: Tensor, value: Callable[[Tensor, bool], Tensor], max_iter: int) -> int:
    """Run L-BFGS (strong-Wolfe line search) on ``value`` from ``z``; its iterations."""
    z.requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-10, tolerance_change=1e-13,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        val = value(z, True)
        if val.requires_grad:
            val.backward()
        if z.grad is not None and not torch.isfinite(z.grad).all():
            z.grad.zero_()
        return val

    opt.step(closure)
    return int(opt.state[z].get("n_iter", 0))


def constraint_residual(problem: Problem, levels: list[float]) -> float:
    """How far ``levels`` miss the constraint (0 when met), in the constraint's units."""
    kind, vals = problem.constraint.kind, problem.constraint.values
    if kind == "ends":
        return max(abs(levels[0] - vals[0]) if problem.T > 1 else 0.0, abs(levels[-1] - vals[1]))
    if kind == "total-variance":
        return abs(sum(v * v for v in levels) - vals[0])
    if kind == "max-level":
        return max(0.0, max(levels) - vals[0])
    return abs(float(problem.final_kl(levels)) - vals[0])


# -- one call: optimum, baselines, and their scores ------------------------------------


def schedule_scores(problem: Problem, levels: list[float]) -> dict:
    """kl, jsd, complexity and stationarity of ``levels`` from :func:`~serialrepro.grid.
    process.simulate`, called as ``serialrepro simulate --sigmas`` calls it (so the
    command reproduces these numbers exactly)."""
    from serialrepro.grid.process import simulate

    res = simulate(problem.data, problem.family, levels, problem.space, step=problem.step,
                   backend=problem.backend, keep="auto")
    return {"sigmas": list(res.sigmas), "kl_bits": res.kl_bits, "jsd_bits": res.jsd_bits,
            "complexity_bits": res.complexity_bits, "stationarity": res.stationarity}


def optimize_schedule(problem: Problem, restarts: int = 2, max_iter: int = 100, seed: int = 0,
                      progress: Callable[[str], None] | None = None,
                      keep_best: int = 1) -> dict:
    """The optimal schedule and every baseline under the problem's constraint, scored.

    Returns the fields of ``serialrepro schedule optimize --json``: ``sigmas``,
    ``kl_bits``, ``jsd_bits``, ``complexity_bits``, ``stationarity``, ``constraint``,
    ``iterations``, ``seconds`` and ``baselines`` (name → the same scores and levels; a
    spacing undefined under the constraint, e.g. geometric from a zero level, is null).
    """
    t0 = time.perf_counter()
    base: dict[str, list[float] | None] = {}
    for kind in BASELINES:
        base[kind] = baseline_levels(problem, kind)
        if progress is not None:
            progress(f"baseline {kind} built")
    opt = optimize_levels(problem, restarts=restarts, max_iter=max_iter, seed=seed,
                          keep_best=keep_best, inits=list(base.values()), progress=progress)
    out = schedule_scores(problem, opt.sigmas)
    baselines = {k: None if v is None else schedule_scores(problem, v) for k, v in base.items()}
    # the optimiser's own objective is the engine's; keep the best of optimum and baselines
    # (a baseline can only win by round-off of the parameterisation)
    name = "kl_bits" if problem.objective == "kl" else "jsd_bits"
    for b in baselines.values():
        if b is not None and b[name] < out[name]:
            out = dict(b)
    out.update(constraint=problem.constraint.label, iterations=opt.iterations,
               seconds=time.perf_counter() - t0, baselines=baselines)
    return out
