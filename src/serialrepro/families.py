"""Noise families, defined once and offered in every representation the project needs.

A family says what "perceive x through noise of level σ" means. The same object serves
the exact grid engine (:meth:`NoiseFamily.grid_parts`, used by
:mod:`serialrepro.grid.kernels`), Monte-Carlo chains in continuous space
(:meth:`NoiseFamily.sample`, :meth:`NoiseFamily.log_prob`) and trained models
(:meth:`NoiseFamily.unit_noise`, zero-mean unit-variance noise for variance-preserving
forward processes), so "laplace with standard deviation σ" means the same thing
everywhere and a new family is added in one place.

The paper's five families follow the authors' published simulation code exactly
(docs/design.md §2): ``gaussian``, ``bimodal`` ("stretch"), ``trimodal``, ``fade-uniform`` and
``fade-fixed``. Three more are parameterised so that σ is the per-axis standard
deviation, so that families can be compared at equal variance: ``laplace`` (independent
axes, scale σ/√2), ``uniform`` (a box of half-width σ√3 per axis) and ``student-t``
(isotropic, ν = 3, scale σ/√3).
For circular data, ``von-mises`` (level: the circular standard deviation in turns,
see :func:`von_mises_kappa`).

On a grid, offsets d = y − x are minimum-image offsets (see :mod:`serialrepro.grid.space`);
every column of a kernel is normalised to sum 1 over y.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name

#: The bimodal/trimodal shift per axis, s = (0.05, 0.05) in the paper (docs/design.md §2).
STRETCH_SHIFT = 0.05
#: Width of the "keep" part of the fade kernels, g_0.01 (docs/design.md §2).
FADE_WIDTH = 0.01
#: Degrees of freedom of the student-t family.
STUDENT_NU = 3.0


@dataclass(frozen=True)
class GridParts:
    """An unnormalised kernel on a grid: columns of ``circulant + coef · target 1ᵀ``.

    ``circulant`` holds weights as a function of the offset d = y − x (for the dense
    backend an M×M array, for the FFT backend one array over offsets); ``target`` is a
    distribution over y (grid-shaped) or None. The kernel is this, column-normalised.
    """

    circulant: Tensor
    coef: float = 0.0
    target: Tensor | None = None


def _log_normalise(logw: Tensor, y_dims: tuple[int, ...]) -> Tensor:
    """exp(logw) normalised over y, computed stably (no underflow to an all-zero column)."""
    w = torch.exp(logw - torch.amax(logw, dim=y_dims, keepdim=True))
    return w / w.sum(dim=y_dims, keepdim=True)


def _sq_norm(d: Sequence[Tensor]) -> Tensor:
    out = d[0] * d[0]
    for di in d[1:]:
        out = out + di * di
    return out


def _shifted(d: Sequence[Tensor], shift: float) -> list[Tensor]:
    return [di + shift for di in d]


class NoiseFamily(ABC):
    """A perception-noise family K_σ(y | x); subclasses register themselves by name."""

    name: str = ""
    description: str = ""
    #: the family's limit distribution on a grid: "uniform" or "three-modes"
    limit: str = "uniform"
    #: whether σ is a per-axis standard deviation (families comparable at equal variance)
    sigma_is_std: bool = True
    #: True for families with a translation-invariant (circulant) unit-variance noise
    has_unit_noise: bool = False

    # -- validation -------------------------------------------------------------------
    def check_sigma(self, sigma: float) -> float:
        """Return σ as a float, or raise a one-line error naming it and the valid range."""
        try:
            s = float(sigma)
        except (TypeError, ValueError):
            raise UserInputError(f"noise level {sigma!r} for {self.name} is not a number") from None
        if not math.isfinite(s) or s <= 0:
            raise UserInputError(
                f"noise level σ={sigma!r} is invalid for {self.name}: it needs σ > 0"
            )
        return s

    # -- grid representation ----------------------------------------------------------
    @abstractmethod
    def grid_parts(
        self, d: Sequence[Tensor], sigma: float, y_dims: tuple[int, ...], spacing: float,
        target: Callable[[], Tensor],
    ) -> GridParts:
        """Kernel weights at minimum-image offsets ``d`` (one tensor per axis).

        ``y_dims`` are the dimensions of the offset tensors that index y (the ones a
        column sums over); ``spacing`` is the grid spacing h; ``target`` returns the
        family's fixed target distribution over y when a fade family needs it.
        """

    def grid_axis_terms(
        self, d: Tensor, sigma: float, spacing: float
    ) -> list[tuple[float, Tensor]] | None:
        """The circulant part of :meth:`grid_parts` in separable (Kronecker) form, or None.

        ``d`` holds the minimum-image offsets along one axis, shape [n, n] (rows y,
        columns x), or [n, 1] (the column x = 0 only: the FFT backend builds circulant
        kernels from it); every axis of a grid has the same ones. Work elementwise in
        ``d``, normalise over dim 0, and let σ be a 0-d tensor (for gradients in σ).
        A family whose weights factor over axes returns terms (w_k, f_k) such that the
        circulant part equals Σ_k w_k · f_k ⊗ f_k ⊗ … (one factor per axis), i.e.
        weight(y | x) = Σ_k w_k Π_axis f_k[y_axis, x_axis]. The dense backend then builds
        the M×M matrix with one Kronecker product instead of evaluating the family at
        M² offsets, and column entropies cost O(n²). Families that do not factor
        (student-t's isotropic density) return None.
        """
        return None

    def grid_rank_one_coef(self, sigma: float) -> float:
        """Weight a of the rank-one term a·target 1ᵀ added to the circulant part (fades)."""
        return 0.0

    # -- continuous representation ----------------------------------------------------
    @abstractmethod
    def sample(self, x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
        """y ~ K_σ(· | x) in continuous space; ``x`` has shape [..., D]."""

    @abstractmethod
    def log_prob(self, y: Tensor, x: Tensor, sigma: float) -> Tensor:
        """log K_σ(y | x) (natural log, a proper density in R^D); broadcasts over [..., D]."""

    def gaussian_variance(self, sigma: float) -> float | None:
        """σ² when K_σ(y | x) = N(y; x, σ² I), else None.

        Gaussian noise is conjugate to Gaussian(-mixture) priors: posteriors are closed-form
        mixtures and Gaussian chains are the AR(1) of docs/design.md §1. Code that can use that
        asks the family here instead of testing its name.
        """
        return None

    def unit_noise(
        self, shape: Sequence[int], generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """Zero-mean noise with unit variance per coordinate (for VP forward processes)."""
        raise UserInputError(
            f"noise family {self.name!r} has no additive unit-variance form; families that do: "
            + ", ".join(n for n, f in FAMILIES.items() if f.has_unit_noise)
        )


def _gauss_log(d: Sequence[Tensor], sigma: float) -> Tensor:
    return -_sq_norm(d) / (2.0 * sigma * sigma)


def _randn(like_shape, generator, dtype, device) -> Tensor:
    return torch.randn(like_shape, generator=generator, dtype=dtype, device=device)


def _rand(like_shape, generator, dtype, device) -> Tensor:
    return torch.rand(like_shape, generator=generator, dtype=dtype, device=device)


def _gauss_logpdf(y: Tensor, mean: Tensor, sigma: float) -> Tensor:
    dim = y.shape[-1]
    return (-((y - mean) ** 2).sum(-1) / (2 * sigma**2)
            - dim * (math.log(sigma) + 0.5 * math.log(2 * math.pi)))


class Gaussian(NoiseFamily):
    name = "gaussian"
    description = "isotropic Gaussian, g_σ(d) = exp(−|d|²/2σ²); σ is the per-axis std"
    has_unit_noise = True

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        return GridParts(_log_normalise(_gauss_log(d, sigma), y_dims))

    def grid_axis_terms(self, d, sigma, spacing):
        # exp(−|d|²/2σ²) = Π_axis exp(−d_i²/2σ²); the product of column-normalised
        # factors is the column-normalised product.
        return [(1.0, _log_normalise(_gauss_log([d], sigma), (0,)))]

    def sample(self, x, sigma, generator=None):
        return x + sigma * _randn(x.shape, generator, x.dtype, x.device)

    def log_prob(self, y, x, sigma):
        return _gauss_logpdf(y, x, sigma)

    def gaussian_variance(self, sigma):
        return float(sigma) ** 2

    def unit_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


class _Stretch(NoiseFamily):
    """Mixtures of shifted Gaussians: components (weight, shift) around x."""

    sigma_is_std = False
    components: tuple[tuple[float, float], ...] = ()

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        # Each component is normalised over y on its own, then the sum is (docs/design.md §2);
        # a component centred at x + c has offset d − c.
        total = sum(w for w, _ in self.components)
        out = None
        for w, c in self.components:
            comp = (w / total) * _log_normalise(_gauss_log(_shifted(d, -c), sigma), y_dims)
            out = comp if out is None else out + comp
        return GridParts(out)

    def grid_axis_terms(self, d, sigma, spacing):
        # each component is an isotropic Gaussian centred at x + (c, c, …): it factors
        total = sum(w for w, _ in self.components)
        return [(w / total, _log_normalise(_gauss_log([d - c], sigma), (0,)))
                for w, c in self.components]

    def _probs_shifts(self):
        total = sum(w for w, _ in self.components)
        return [w / total for w, _ in self.components], [c for _, c in self.components]

    def sample(self, x, sigma, generator=None):
        probs, shifts = self._probs_shifts()
        idx = torch.multinomial(
            torch.tensor(probs, dtype=torch.float64), x[..., 0].numel(), replacement=True,
            generator=generator,
        ).reshape(x.shape[:-1]).to(x.device)
        shift = torch.tensor(shifts, dtype=x.dtype, device=x.device)[idx].unsqueeze(-1)
        return x + shift + sigma * _randn(x.shape, generator, x.dtype, x.device)

    def log_prob(self, y, x, sigma):
        probs, shifts = self._probs_shifts()
        terms = [math.log(p) + _gauss_logpdf(y, x + c, sigma)
                 for p, c in zip(probs, shifts, strict=True)]
        return torch.logsumexp(torch.stack(terms), dim=0)


class Bimodal(_Stretch):
    name = "bimodal"
    description = "two Gaussians at x ± s, s = 0.05 per axis (the paper's 'stretch' noise)"
    components = ((1.0, -STRETCH_SHIFT), (1.0, STRETCH_SHIFT))


class Trimodal(_Stretch):
    name = "trimodal"
    description = "Gaussians at x − s, x, x + s with weights ¼, ½, ¼ (s = 0.05 per axis)"
    components = ((0.5, STRETCH_SHIFT), (0.5, -STRETCH_SHIFT), (1.0, 0.0))


class Laplace(NoiseFamily):
    name = "laplace"
    description = "independent Laplace per axis, scale σ/√2 (σ is the per-axis std)"
    has_unit_noise = True

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        b = sigma / math.sqrt(2.0)
        logw = -sum(di.abs() for di in d) / b
        return GridParts(_log_normalise(logw, y_dims))

    def grid_axis_terms(self, d, sigma, spacing):
        b = sigma / math.sqrt(2.0)
        return [(1.0, _log_normalise(-d.abs() / b, (0,)))]

    def sample(self, x, sigma, generator=None):
        return x + sigma * self.unit_noise(x.shape, generator, x.dtype, x.device)

    def log_prob(self, y, x, sigma):
        b = sigma / math.sqrt(2.0)
        return (-(y - x).abs().sum(-1) / b) - y.shape[-1] * math.log(2 * b)

    def unit_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        u = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=device) - 0.5
        # Inverse CDF of Laplace(0, 1/√2), which has unit variance, on the open interval:
        # rand() can return 0, so u = −0.5 and log1p(−1) = −inf; 2|u| is clamped to the
        # largest value below 1 in ``dtype`` (the draw is then finite by construction).
        m = (2 * u.abs()).clamp(max=1.0 - torch.finfo(u.dtype).eps / 2)
        return -torch.sign(u) * torch.log1p(-m) / math.sqrt(2.0)


class Uniform(NoiseFamily):
    name = "uniform"
    description = "uniform box of half-width σ√3 per axis (σ is the per-axis std)"
    has_unit_noise = True

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        # Cell-averaged box: the mass of [−a, a] falling in each grid cell, so that a
        # box narrower than a cell still has the right mean and a smooth σ dependence.
        a = sigma * math.sqrt(3.0)
        w = None
        for di in d:
            lo = torch.clamp(di - spacing / 2, min=-a)
            hi = torch.clamp(di + spacing / 2, max=a)
            axis = torch.clamp(hi - lo, min=0.0)
            w = axis if w is None else w * axis
        return GridParts(w / w.sum(dim=y_dims, keepdim=True))

    def grid_axis_terms(self, d, sigma, spacing):
        a = sigma * math.sqrt(3.0)
        lo = torch.clamp(d - spacing / 2, min=-a)
        hi = torch.clamp(d + spacing / 2, max=a)
        axis = torch.clamp(hi - lo, min=0.0)
        return [(1.0, axis / axis.sum(dim=0, keepdim=True))]

    def sample(self, x, sigma, generator=None):
        return x + sigma * self.unit_noise(x.shape, generator, x.dtype, x.device)

    def log_prob(self, y, x, sigma):
        a = sigma * math.sqrt(3.0)
        inside = ((y - x).abs() <= a).all(-1)
        val = -y.shape[-1] * math.log(2 * a)
        return torch.where(inside, torch.full_like(inside, val, dtype=y.dtype),
                           torch.full_like(inside, -math.inf, dtype=y.dtype))

    def unit_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        u = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=device)
        return (2 * u - 1) * math.sqrt(3.0)


class StudentT(NoiseFamily):
    name = "student-t"
    description = "isotropic multivariate Student-t, ν = 3, scale σ/√3 (σ is the per-axis std)"
    has_unit_noise = True

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        nu = STUDENT_NU
        s2 = sigma * sigma * (nu - 2) / nu
        logw = -(nu + len(d)) / 2 * torch.log1p(_sq_norm(d) / (nu * s2))
        return GridParts(_log_normalise(logw, y_dims))

    def _chi_scale(self, shape, generator, dtype, device):
        nu = STUDENT_NU
        g = torch.randn((*shape, int(nu)), generator=generator, dtype=dtype, device=device)
        # χ_ν/√ν is 0 only if all ν normals are exactly 0; bounded below so z / w is finite
        return torch.sqrt((g * g).sum(-1) / nu).clamp(min=torch.finfo(dtype).eps)

    def sample(self, x, sigma, generator=None):
        nu = STUDENT_NU
        scale = sigma * math.sqrt((nu - 2) / nu)
        z = _randn(x.shape, generator, x.dtype, x.device)
        w = self._chi_scale(x.shape[:-1], generator, x.dtype, x.device).unsqueeze(-1)
        return x + scale * z / w

    def log_prob(self, y, x, sigma):
        nu = STUDENT_NU
        dim = y.shape[-1]
        s2 = sigma * sigma * (nu - 2) / nu
        q = ((y - x) ** 2).sum(-1) / s2
        return (math.lgamma((nu + dim) / 2) - math.lgamma(nu / 2)
                - dim / 2 * math.log(nu * math.pi * s2) - (nu + dim) / 2 * torch.log1p(q / nu))

    def unit_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        # per-coordinate independent t_ν, rescaled to unit variance
        nu = STUDENT_NU
        shape = tuple(shape)
        z = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        w = self._chi_scale(shape, generator, dtype, device)
        return z / w * math.sqrt((nu - 2) / nu)


#: below this concentration a von Mises offset is drawn uniformly (error O(κ))
_VM_KAPPA_UNIFORM = 1e-8
#: above this concentration a von Mises offset is drawn as a wrapped normal (error O(1/κ))
_VM_KAPPA_NORMAL = 1e7


def von_mises_kappa(level: float) -> float:
    """Concentration κ of the von Mises whose circular standard deviation is ``level`` turns.

    The circular std of a distribution of angles θ with mean resultant length
    R = |E e^{iθ}| is √(−2 ln R) (Mardia & Jupp 2000, §2.3.4); in turns (θ = 2π d)
    ``level`` = √(−2 ln R)/(2π), so R = exp(−2π² level²). For the von Mises
    R = A(κ) = I₁(κ)/I₀(κ), solved for κ by Brent's method on the exponentially scaled
    Bessel functions; for R → 0 the series A(κ) = κ/2 + O(κ³) gives κ = 2R, for
    1 − R < 10⁻¹² the expansion A(κ) = 1 − 1/(2κ) + O(κ⁻²) gives κ = 1/(2(1 − R)).
    Small levels: κ ≈ 1/(2π level)², the Gaussian of std ``level``; level → ∞: κ → 0
    (uniform on the circle).
    """
    from scipy.optimize import brentq
    from scipy.special import i0e, i1e

    s = float(level)
    one_minus_r = -math.expm1(-2.0 * math.pi**2 * s * s)
    r = 1.0 - one_minus_r
    if r < 1e-6:
        return 2.0 * r
    if one_minus_r < 1e-12:
        return 0.5 / one_minus_r
    hi = 1.0 / one_minus_r + 1.0
    return float(brentq(lambda k: i1e(k) / i0e(k) - r, 0.0, hi, xtol=1e-300, rtol=1e-15))


class VonMises(NoiseFamily):
    """Von Mises noise on the circle: K(y | x) ∝ exp(κ cos 2π(y − x)), y − x in turns.

    The level σ is the *circular* standard deviation in turns (one turn = 1, the unit
    circle [−½, ½) of circular chain data), κ = :func:`von_mises_kappa`(σ). Every σ > 0 is
    valid: σ → 0 is a point mass (κ ≈ 1/(2πσ)², the Gaussian of std σ), σ → ∞ the uniform
    distribution on the circle (κ → 0). On D-dimensional tori the axes are independent
    von Mises. The continuous representation is x plus an offset in [−½, ½) per axis:
    :meth:`sample` returns x + offset (wrap it for circular values) and :meth:`log_prob` is
    the density of y − x on [−½, ½)^D, i.e. e^{κ cos 2π d}/I₀(κ) per axis; for wrapped data
    evaluate it at y = x + wrap(y − x), as the particle posterior does on circles.
    """

    name = "von-mises"
    description = ("von Mises on the circle, exp(κ cos 2πd); σ is the circular std in turns "
                   "(κ from σ)")
    sigma_is_std = False

    def _log_weights(self, d: Sequence[Tensor], sigma: float) -> Tensor:
        kappa = von_mises_kappa(float(sigma.detach() if isinstance(sigma, Tensor) else sigma))
        if isinstance(sigma, Tensor) and sigma.requires_grad and kappa > 0:
            # dκ/dσ by the implicit-function theorem on A(κ) = R(σ) = exp(−2π²σ²), with
            # A'(κ) = 1 − A/κ − A² (Mardia & Jupp 2000, §3.5.4): first-order exact in σ
            from scipy.special import i0e, i1e

            a = float(i1e(kappa) / i0e(kappa))
            r = torch.exp(-2.0 * math.pi**2 * sigma * sigma)
            kappa = kappa + (r - r.detach()) / (1.0 - a / kappa - a * a)
        return kappa * sum(torch.cos(2 * math.pi * di) for di in d)

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        return GridParts(_log_normalise(self._log_weights(d, sigma), y_dims))

    def grid_axis_terms(self, d, sigma, spacing):
        # exp(κ Σ cos 2π d_i) = Π_axis exp(κ cos 2π d_i)
        return [(1.0, _log_normalise(self._log_weights([d], sigma), (0,)))]

    def sample(self, x, sigma, generator=None):
        kappa = von_mises_kappa(sigma)
        shape, dev = x.shape, x.device
        if kappa < _VM_KAPPA_UNIFORM:
            off = _rand(shape, generator, torch.float64, dev) - 0.5
        elif kappa > _VM_KAPPA_NORMAL:
            z = _randn(shape, generator, torch.float64, dev)
            off = torch.remainder(z / (2 * math.pi * math.sqrt(kappa)) + 0.5, 1.0) - 0.5
        else:
            off = _best_fisher_turns(kappa, shape, generator, dev)
        return x + off.to(x.dtype)

    def log_prob(self, y, x, sigma):
        from scipy.special import i0e

        kappa = von_mises_kappa(sigma)
        d = y - x
        inside = ((d >= -0.5) & (d < 0.5)).all(-1)
        # log(e^{κ cos 2πd}/I₀(κ)) = κ(cos 2πd − 1) − log(e^{−κ} I₀(κ)), without overflow
        lp = (kappa * (torch.cos(2 * math.pi * d) - 1.0)).sum(-1) - y.shape[-1] * math.log(
            float(i0e(kappa)))
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))


def _best_fisher_turns(kappa: float, shape, generator, device) -> Tensor:
    """Von Mises(0, κ) offsets in turns by Best & Fisher's (1979) wrapped-Cauchy rejection
    sampler (acceptance ≥ 0.66 for every κ); rounds of full-shape draws keep it seeded
    and vectorised."""
    tau = 1.0 + math.sqrt(1.0 + 4.0 * kappa * kappa)
    rho = (tau - math.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho * rho) / (2.0 * rho) if kappa >= 1e-5 else 1.0 / kappa + kappa
    theta = torch.zeros(shape, dtype=torch.float64, device=device)
    done = torch.zeros(shape, dtype=torch.bool, device=device)
    while not bool(done.all()):
        u1, u2, u3 = (_rand(shape, generator, torch.float64, device) for _ in range(3))
        z = torch.cos(math.pi * u1)
        f = (1.0 + r * z) / (r + z)
        c = kappa * (r - f)
        accept = ~done & (((c * (2.0 - c) - u2) > 0) | (torch.log(c / u2) + 1.0 - c >= 0))
        theta = torch.where(accept, torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1.0, 1.0)),
                            theta)
        done = done | accept
    return torch.remainder(theta / (2 * math.pi) + 0.5, 1.0) - 0.5


class _Fade(NoiseFamily):
    """(1 − σ)·g_0.01(d) + σ·target(y), column-normalised (docs/design.md §2); σ ∈ [0, 1]."""

    sigma_is_std = False

    def check_sigma(self, sigma):
        try:
            s = float(sigma)
        except (TypeError, ValueError):
            raise UserInputError(f"noise level {sigma!r} for {self.name} is not a number") from None
        if not (0.0 <= s <= 1.0):
            raise UserInputError(
                f"noise level σ={sigma!r} is invalid for {self.name}: "
                "a fade level must lie in [0, 1]"
            )
        return s

    def grid_parts(self, d, sigma, y_dims, spacing, target):
        keep = (1.0 - sigma) * torch.exp(_gauss_log(d, FADE_WIDTH))
        coef = self.grid_rank_one_coef(sigma)
        return GridParts(keep, coef=coef, target=target() if coef > 0 else None)

    def grid_axis_terms(self, d, sigma, spacing):
        # the unnormalised keep part (1 − σ)·g_0.01(d) factors over axes
        return [(1.0 - sigma, torch.exp(_gauss_log([d], FADE_WIDTH)))]

    def grid_rank_one_coef(self, sigma):
        # σ as given (a tensor level stays one, so fade kernels are differentiable in it)
        return sigma

    @abstractmethod
    def _sample_target(self, shape, generator, dtype, device) -> Tensor: ...

    @abstractmethod
    def _target_log_prob(self, y: Tensor) -> Tensor: ...

    def sample(self, x, sigma, generator=None):
        keep = x + FADE_WIDTH * _randn(x.shape, generator, x.dtype, x.device)
        fresh = self._sample_target(x.shape, generator, x.dtype, x.device)
        swap = _rand(x.shape[:-1], generator, x.dtype, x.device) < sigma
        return torch.where(swap.unsqueeze(-1), fresh, keep)

    def log_prob(self, y, x, sigma):
        keep = _gauss_logpdf(y, x, FADE_WIDTH)
        fresh = self._target_log_prob(y)
        terms = []
        if sigma < 1:
            terms.append(math.log1p(-sigma) + keep)
        if sigma > 0:
            terms.append(math.log(sigma) + fresh)
        return torch.logsumexp(torch.stack(terms), dim=0)


class FadeUniform(_Fade):
    name = "fade-uniform"
    description = "fade to uniform: keep (jitter 0.01) with weight 1 − σ, else uniform; σ ∈ [0, 1]"
    limit = "uniform"

    def _sample_target(self, shape, generator, dtype, device):
        return _rand(shape, generator, dtype, device) - 0.5

    def _target_log_prob(self, y):
        inside = ((y >= -0.5) & (y < 0.5)).all(-1)
        return torch.where(inside, torch.zeros_like(y[..., 0]),
                           torch.full_like(y[..., 0], -math.inf))


class FadeFixed(_Fade):
    name = "fade-fixed"
    description = "fade to a fixed distribution (the three-mode density); σ ∈ [0, 1]"
    limit = "three-modes"

    def _mixture(self, dim, dtype, device):
        from serialrepro.grid.priors import three_mode_components

        return three_mode_components(dim, dtype=dtype, device=device)

    def _sample_target(self, shape, generator, dtype, device):
        weights, means, covs = self._mixture(shape[-1], dtype, device)
        n = math.prod(shape[:-1])
        idx = torch.multinomial(weights.double().cpu(), n, replacement=True,
                                generator=generator).to(device)
        chol = torch.linalg.cholesky(covs)[idx]
        z = torch.randn((n, shape[-1]), generator=generator, dtype=dtype, device=device)
        pts = means[idx] + (chol @ z.unsqueeze(-1)).squeeze(-1)
        return pts.reshape(shape)

    def _target_log_prob(self, y):
        weights, means, covs = self._mixture(y.shape[-1], y.dtype, y.device)
        mvn = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
        lp = mvn.log_prob(y.unsqueeze(-2)) + torch.log(weights)
        return torch.logsumexp(lp, dim=-1)


FAMILIES: dict[str, NoiseFamily] = {
    f.name: f
    for f in (Gaussian(), Bimodal(), Trimodal(), FadeUniform(), FadeFixed(), Laplace(),
              Uniform(), StudentT(), VonMises())
}


#: other spellings of a registered name, accepted wherever a family is looked up
FAMILY_ALIASES = {"vonmises": "von-mises", "von_mises": "von-mises"}


def get_family(name: str | NoiseFamily) -> NoiseFamily:
    """Look a family up by name or an alias of it (an instance passes through)."""
    if isinstance(name, NoiseFamily):
        return name
    try:
        return FAMILIES[FAMILY_ALIASES.get(name, name)]
    except KeyError:
        raise unknown_name("noise family", name, FAMILIES) from None
