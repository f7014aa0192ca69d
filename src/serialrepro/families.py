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

Three families exist for trained models only (the tensor representation): ``resample-uniform``
(each coordinate kept with probability ᾱ, else redrawn from U(−1, 1)), ``mask`` (else set
to 0) and ``blur`` (the heat equation, images only). ``fade-uniform`` is the paper's grid
process (the whole point redrawn from the torus with probability σ, else jittered by
N(0, 0.01²)); ``resample-uniform`` is a different process and has a different name.

Everything code needs to know about a family is an attribute or method here: the
representations it offers (:data:`REPRESENTATIONS`; a method of a representation the
family does not offer refuses with one line naming the families that do), its level
bounds (:meth:`NoiseFamily.check_sigma`), level ↔ per-step displacement std
(:meth:`NoiseFamily.displacement_std`, :meth:`NoiseFamily.level_for_std`), its limit
distribution on a grid (:meth:`NoiseFamily.limit_density`), whether its continuous form is
defined on a circle (:attr:`NoiseFamily.on_circle`) and its tensor forward process
(:meth:`NoiseFamily.degrade`). A subclass with a ``name`` registers itself in
:data:`FAMILIES`, so adding a family is one class in this module.

On a grid, offsets d = y − x are minimum-image offsets (see :mod:`serialrepro.grid.space`);
every column of a kernel is normalised to sum 1 over y.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from serialrepro.circular import wrap_tensor
from serialrepro.densities import three_mode_components
from serialrepro.errors import UserInputError, unknown_name

if TYPE_CHECKING:
    from serialrepro.grid.space import GridSpace

#: The bimodal/trimodal shift per axis, s = (0.05, 0.05) in the paper (docs/design.md §2).
STRETCH_SHIFT = 0.05
#: Width of the "keep" part of the fade kernels, g_0.01 (docs/design.md §2).
FADE_WIDTH = 0.01
#: Degrees of freedom of the student-t family.
STUDENT_NU = 3.0
#: Per-axis variance of the minimum-image displacement to a uniform draw on the unit torus.
UNIFORM_DISPLACEMENT_VARIANCE = 1.0 / 12.0
#: Standard deviation of the blur family's jitter at the limit (data in [−1, 1]).
BLUR_JITTER = 0.01
#: Smallest ᾱ used where a logarithm or a division by √ᾱ needs it.
MIN_ABAR = 1e-12

#: The representations a family can offer, and what each serves.
GRID, PARTICLES, TENSOR = "grid", "particles", "tensor"
REPRESENTATIONS: dict[str, str] = {
    GRID: "a Markov kernel on grids (simulate, run, chains in grid mode)",
    PARTICLES: "sample and log-density in continuous space (chains in particle mode)",
    TENSOR: "a forward process q(x_t | x_0) for trained models (train, sample)",
}

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class GridParts:
    """An unnormalised kernel on a grid: columns of ``offset_weights + coef · target 1ᵀ``.

    ``offset_weights`` holds the weights at the offsets d = y − x the family was given, in
    their shape (for the dense backend an M×M array, for the FFT backend one array over
    the offsets from x = 0); ``target`` is a distribution over y (grid-shaped) or None.
    The kernel is this, column-normalised.
    """

    offset_weights: Tensor
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


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dimensions so ``v`` broadcasts against an ``ndim`` tensor."""
    return v[(...,) + (None,) * (ndim - v.ndim)]


def draw(
    fn: Callable[[tuple[int, ...], torch.Generator | None], Tensor],
    shape: Sequence[int], generator: GeneratorLike, device: torch.device | str | None,
) -> Tensor:
    """Call ``fn(shape, generator)`` on the generator's device, per sample for a list.

    With a list of generators, row i of the result comes from generator i alone (per-sample
    seeds); draws happen on each generator's device and are then moved to ``device``.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
        if len(generator) != shape[0]:
            raise UserInputError(
                f"{len(generator)} generators given for a batch of {shape[0]} samples"
            )
        return torch.stack([fn(shape[1:], g).to(device) for g in generator])
    return fn(shape, generator).to(device)


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


#: every registered family by name, in the order their classes are defined
FAMILIES: dict[str, NoiseFamily] = {}


class NoiseFamily:
    """A noise family K_σ(y | x); a subclass with a ``name`` registers itself in
    :data:`FAMILIES` (one instance), so it is found by :func:`get_family` everywhere."""

    name: str = ""
    description: str = ""
    #: the representations this family offers (keys of :data:`REPRESENTATIONS`)
    representations: frozenset[str] = frozenset({GRID, PARTICLES})
    #: whether σ is a per-axis standard deviation (families comparable at equal variance)
    sigma_is_std: bool = True
    #: True for families with a translation-invariant (circulant) unit-variance noise; in
    #: the tensor representation they are variance preserving (DDPM eq. 4)
    has_unit_noise: bool = False
    #: smallest and largest valid level; the smallest is valid only if ``zero_level_valid``
    min_level: float = 0.0
    max_level: float = math.inf
    zero_level_valid: bool = False
    #: what a level is called in errors about its bounds
    level_name: str = "noise level"
    #: whether the continuous representation is defined on circles and tori [−½, ½)^D
    #: (the offset y − x taken as a minimum image)
    on_circle: bool = True
    #: whether :meth:`level_for_std` reaches every requested displacement std exactly
    matches_displacement_std: bool = True
    #: tensor representation: whether inputs must be images [..., C, H, W]
    images_only: bool = False

    def __init_subclass__(cls, register: bool = True, **kwargs) -> None:
        # Only a class that names itself registers (a subclass inheriting its parent's name
        # is a variant, not a new family); ``register=False`` keeps a named variant out (a
        # test's private family). Two families cannot share a name.
        super().__init_subclass__(**kwargs)
        if not (register and cls.__dict__.get("name")):
            return
        if cls.name in FAMILIES:
            raise TypeError(f"two noise families are named {cls.name!r}: "
                            f"{type(FAMILIES[cls.name]).__qualname__} and {cls.__qualname__}")
        FAMILIES[cls.name] = cls()

    # -- what the family offers ---------------------------------------------------------
    def offers(self, representation: str) -> bool:
        """Whether the family has the ``representation`` (a key of :data:`REPRESENTATIONS`)."""
        if representation not in REPRESENTATIONS:
            raise unknown_name("representation", representation, REPRESENTATIONS)
        return representation in self.representations

    def require(self, representation: str) -> NoiseFamily:
        """The family itself, or a one-line error naming the families that offer it."""
        if not self.offers(representation):
            raise UserInputError(
                f"noise family {self.name!r} has no {representation} representation "
                f"({REPRESENTATIONS[representation]}); families that do: "
                + ", ".join(family_names(representation)))
        return self

    @property
    def variance_preserving(self) -> bool:
        """Whether the tensor forward process is x_t = √ᾱ x_0 + √(1−ᾱ) ε (DDPM eq. 4)."""
        return self.has_unit_noise and TENSOR in self.representations

    # -- levels -------------------------------------------------------------------------
    def check_sigma(self, sigma: float) -> float:
        """Return σ as a float, or raise a one-line error naming it and the valid range
        (``min_level`` < σ ≤ ``max_level``, or ``min_level`` ≤ σ if ``zero_level_valid``)."""
        try:
            s = float(sigma)
        except (TypeError, ValueError):
            raise UserInputError(f"noise level {sigma!r} for {self.name} is not a number") from None
        lo, hi = self.min_level, self.max_level
        above = s >= lo if self.zero_level_valid else s > lo
        if not (math.isfinite(s) and above and s <= hi):
            rule = (f"it needs σ > {lo:g}" if math.isinf(hi) and not self.zero_level_valid
                    else f"a {self.level_name} must lie in [{lo:g}, {hi:g}]")
            raise UserInputError(f"noise level σ={sigma!r} is invalid for {self.name}: {rule}")
        return s

    def displacement_std(self, level: float) -> float | None:
        """Per-axis std of one step's displacement y − x at ``level`` (continuous torus
        approximation); None where the family alone does not define it."""
        return float(level) if self.sigma_is_std else None

    def level_for_std(self, std: float) -> float:
        """The level whose displacement has per-axis std ``std``, the inverse of
        :meth:`displacement_std` where ``matches_displacement_std`` (families whose σ is
        the std: σ = std)."""
        return float(std)

    # -- the limit distribution -----------------------------------------------------------
    def limit_density(self, space: GridSpace) -> Tensor:
        """p_F on a grid, the distribution the forward process ends in: uniform unless the
        family fades to a fixed target (a fresh float64 copy: callers may modify it)."""
        return _limit_density(self, space).clone()

    def _limit_density(self, space: GridSpace) -> Tensor:
        return space.uniform()

    # -- grid representation ----------------------------------------------------------
    def grid_parts(
        self, d: Sequence[Tensor], sigma: float, y_dims: tuple[int, ...], spacing: float,
        target: Callable[[], Tensor],
    ) -> GridParts:
        """Kernel weights at minimum-image offsets ``d`` (one tensor per axis).

        ``y_dims`` are the dimensions of the offset tensors that index y (the ones a
        column sums over); ``spacing`` is the grid spacing h; ``target`` returns the
        family's fixed target distribution over y when a fade family needs it.
        """
        self.require(GRID)
        raise NotImplementedError(f"{self.name} declares the {GRID} representation "
                                  "but does not define grid_parts")

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
    def sample(self, x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
        """y ~ K_σ(· | x) in continuous space; ``x`` has shape [..., D]."""
        self.require(PARTICLES)
        raise NotImplementedError(f"{self.name} declares the {PARTICLES} representation "
                                  "but does not define sample")

    def log_prob(self, y: Tensor, x: Tensor, sigma: float) -> Tensor:
        """log K_σ(y | x) (natural log, a proper density in R^D); broadcasts over [..., D]."""
        self.require(PARTICLES)
        raise NotImplementedError(f"{self.name} declares the {PARTICLES} representation "
                                  "but does not define log_prob")

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

    # -- tensor representation: the forward process of a trained model ------------------
    # ᾱ ∈ (0, 1] is alphas_cumprod (1 = clean); ``abar`` has shape [batch] or is a scalar.
    # Noise draws take a generator or a list of generators, one per sample (row i of a
    # draw then comes from generator i alone: EDM's per-sample seeds). The defaults are
    # the variance-preserving process of families with unit noise (DDPM eq. 4).
    def check_input(self, shape: Sequence[int]) -> None:
        """Refuse data shapes the tensor forward process does not handle."""
        if self.images_only and len(shape) < 4:
            raise UserInputError(
                f"noise family {self.name!r} needs images of shape [batch, channels, height,"
                f" width]; got shape {tuple(shape)}"
            )

    def fit_state(self, x0: Tensor) -> dict[str, Tensor]:
        """What the limit distribution needs from the training data (default: nothing)."""
        return {}

    def tensor_noise(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """The randomness of one forward draw for data of ``shape`` (ε for VP families)."""
        self._need_vp_tensor()
        return draw(lambda s, g: self.unit_noise(s, g, dtype, _gen_device(g)),
                    shape, generator, device)

    def degrade(self, x0: Tensor, abar: Tensor, noise: Tensor) -> Tensor:
        """x_t given x_0, ᾱ and a draw of :meth:`tensor_noise`; ᾱ = 1 returns x_0 exactly
        (cold diffusion's D(x, 0) = x). VP: x_t = √ᾱ x_0 + √(1−ᾱ) ε (DDPM eq. 4)."""
        self._need_vp_tensor()
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * noise

    def limit_sample(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
        state: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """A draw from the limit p_F (ᾱ → 0), where sampling starts; ``state`` is what
        :meth:`fit_state` returned. VP: the unit noise itself."""
        return self.tensor_noise(shape, generator, dtype, device)

    def infer_noise(self, x_t: Tensor, x0: Tensor, abar: Tensor,
                    generator: GeneratorLike = None) -> Tensor:
        """A noise draw consistent with x_t = D(x0, ᾱ; noise) where the family can tell
        (cold diffusion's Algorithm 2); the default is a fresh draw. VP families invert
        DDPM eq. 4 instead (:class:`serialrepro.models.noise.TensorFamily`)."""
        return self.tensor_noise(x_t.shape, generator, x_t.dtype, x_t.device)

    def _need_vp_tensor(self) -> None:
        self.require(TENSOR)
        if not self.variance_preserving:
            raise NotImplementedError(f"{self.name} declares the {TENSOR} representation but "
                                      "does not define its forward process")


@lru_cache(maxsize=8)
def _limit_density(family: NoiseFamily, space: GridSpace) -> Tensor:
    # every kernel of a fade-to-fixed schedule needs p_F: computed once per grid
    return family._limit_density(space)


def family_names(representation: str | None = None) -> list[str]:
    """The registered names, or those of the families offering ``representation``."""
    return [n for n, f in FAMILIES.items() if representation is None or f.offers(representation)]


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
    representations = frozenset({GRID, PARTICLES, TENSOR})
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
    """Mixtures of shifted Gaussians: components (weight, shift) around x.

    The displacement is a shift c_k plus N(0, σ²), per-axis variance σ² + Σ_k p_k c_k²
    (the shifts have mean 0). The shifts alone exceed the small stds of the paper's
    schedules, so no level matches those: :meth:`level_for_std` keeps σ = std as the
    width of each component (the paper's parameterisation), noisier than the others by
    the shift.
    """

    sigma_is_std = False
    matches_displacement_std = False
    components: tuple[tuple[float, float], ...] = ()
    #: Σ_k p_k c_k², the per-axis variance of the shifts
    shift_variance: float = 0.0

    def displacement_std(self, level):
        return math.sqrt(level * level + self.shift_variance)

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
    shift_variance = STRETCH_SHIFT**2


class Trimodal(_Stretch):
    name = "trimodal"
    description = "Gaussians at x − s, x, x + s with weights ¼, ½, ¼ (s = 0.05 per axis)"
    components = ((0.5, STRETCH_SHIFT), (0.5, -STRETCH_SHIFT), (1.0, 0.0))
    shift_variance = STRETCH_SHIFT**2 / 2


class Laplace(NoiseFamily):
    name = "laplace"
    description = "independent Laplace per axis, scale σ/√2 (σ is the per-axis std)"
    representations = frozenset({GRID, PARTICLES, TENSOR})
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
    representations = frozenset({GRID, PARTICLES, TENSOR})
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
    representations = frozenset({GRID, PARTICLES, TENSOR})
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
            off = wrap_tensor(z / (2 * math.pi * math.sqrt(kappa)))
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
    return wrap_tensor(theta / (2 * math.pi))


class _Fade(NoiseFamily, ABC):
    """(1 − σ)·g_0.01(d) + σ·target(y), column-normalised (docs/design.md §2); σ ∈ [0, 1].

    The level is the probability f of replacing x by a fresh draw from the target,
    otherwise jittering it by N(0, w²), w = 0.01; with a uniform draw on the unit torus the
    displacement has per-axis variance (1 − f) w² + f/12, inverted by :meth:`level_for_std`
    and clipped to [0, 1] (fade-fixed uses the same f: its target's displacement variance
    depends on x, so the match is approximate there). The target is not periodic, so the
    continuous form is not defined on a circle.
    """

    sigma_is_std = False
    zero_level_valid = True
    max_level = 1.0
    level_name = "fade level"
    on_circle = False

    def displacement_std(self, level):
        return math.sqrt((1 - level) * FADE_WIDTH**2 + level * UNIFORM_DISPLACEMENT_VARIANCE)

    def level_for_std(self, std):
        w2 = FADE_WIDTH * FADE_WIDTH
        f = (std * std - w2) / (UNIFORM_DISPLACEMENT_VARIANCE - w2)
        return min(1.0, max(0.0, f))

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

    def _sample_target(self, shape, generator, dtype, device):
        return _rand(shape, generator, dtype, device) - 0.5

    def _target_log_prob(self, y):
        inside = ((y >= -0.5) & (y < 0.5)).all(-1)
        return torch.where(inside, torch.zeros_like(y[..., 0]),
                           torch.full_like(y[..., 0], -math.inf))


class FadeFixed(_Fade):
    name = "fade-fixed"
    description = "fade to a fixed distribution (the three-mode density); σ ∈ [0, 1]"

    def _mixture(self, dim, dtype, device):
        return three_mode_components(dim, dtype=dtype, device=device)

    def _limit_density(self, space):
        # the three-mode pdf at the grid points, normalised (no uniform mix)
        p = torch.exp(self._target_log_prob(space.points())).reshape(space.shape)
        return p / p.sum()

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


# -- families of trained models only (the tensor representation) --------------------------


def _uniform(shape, generator, dtype, device, low=-1.0, high=1.0):
    return draw(lambda s, g: torch.rand(s, generator=g, dtype=dtype, device=_gen_device(g)),
                shape, generator, device) * (high - low) + low


class ResampleUniform(NoiseFamily):
    """Each coordinate kept with probability ᾱ, otherwise replaced by a fresh U(−1, 1) value
    (the data range); composed per step this is "resample with probability β_t". Not the
    paper's ``fade-uniform``, which redraws the whole point on the torus and jitters kept
    points by N(0, 0.01²). Limit: U(−1, 1) per coordinate."""

    name = "resample-uniform"
    description = ("keep each coordinate with probability ᾱ, else a fresh U(−1, 1) value "
                   "(trained models)")
    representations = frozenset({TENSOR})
    sigma_is_std = False

    def tensor_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        # last axis: (uniform deciding keep/replace, the replacement value)
        return draw(lambda s, g: torch.rand((*s, 2), generator=g, dtype=dtype,
                                            device=_gen_device(g)), shape, generator, device)

    def degrade(self, x0, abar, noise):
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        fresh = 2 * noise[..., 1] - 1
        return torch.where(noise[..., 0] < a, x0, fresh)

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None, state=None):
        return _uniform(shape, generator, dtype, device)

    def infer_noise(self, x_t, x0, abar, generator=None):
        # Which coordinates were replaced is unknown (fresh keep/replace uniforms), but a
        # replaced coordinate's value is x_t itself, so D(x̂_0, ᾱ; noise) agrees with x_t there.
        noise = self.tensor_noise(x_t.shape, generator, x_t.dtype, x_t.device)
        return torch.stack([noise[..., 0], (x_t + 1) / 2], dim=-1)


class Mask(NoiseFamily):
    """Each coordinate kept with probability ᾱ, otherwise set to 0 (mid grey for data in
    [−1, 1]). Limit: the all-zero tensor (a point mass: sample diversity comes only from
    the random re-masking of the serial-reproduction step)."""

    name = "mask"
    description = "keep each coordinate with probability ᾱ, else set it to 0 (mid grey)"
    representations = frozenset({TENSOR})
    sigma_is_std = False

    def tensor_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        return _uniform(shape, generator, dtype, device, 0.0, 1.0)

    def degrade(self, x0, abar, noise):
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        return torch.where(noise < a, x0, torch.zeros_like(x0))

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None, state=None):
        return torch.zeros(tuple(shape), dtype=dtype, device=device)


def _dct_matrix(n: int, dtype: torch.dtype, device) -> Tensor:
    """Orthonormal DCT-II matrix C (C @ x transforms, Cᵀ inverts)."""
    k = torch.arange(n, dtype=torch.float64)
    c = torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / n) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype=dtype, device=device)


class Blur(NoiseFamily):
    """Cold diffusion's blur (Bansal et al. 2022) as the heat equation (Rissanen et al. 2023).

    A Gaussian blur with reflecting borders of growing width √(2τ), computed exactly in the
    DCT basis, x̃ = DCT⁻¹(e^{−λ τ} DCT x_0), λ_{ij} = π²(i²/H² + j²/W²), with τ chosen so
    that the slowest non-constant mode decays like √ᾱ, τ = −½ log ᾱ / λ_min. A jitter
    ``BLUR_JITTER``·√(1−ᾱ)·N(0, 1) is added (zero at ᾱ = 1). Limit: the per-image mean
    colour (drawn from the training images' means, :meth:`fit_state`) plus that jitter.
    Images only (shape [..., C, H, W]).
    """

    name = "blur"
    description = ("Gaussian blur of growing width (heat equation, DCT); limit: per-image mean"
                   " colour + 0.01 jitter")
    representations = frozenset({TENSOR})
    sigma_is_std = False
    images_only = True

    def fit_state(self, x0):
        self.check_input(x0.shape)
        return {"means": x0.mean(dim=(-2, -1)).reshape(-1, x0.shape[-3]).detach().cpu()}

    def tensor_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        self.check_input(shape)
        return draw(lambda s, g: torch.randn(s, generator=g, dtype=dtype, device=_gen_device(g)),
                    shape, generator, device)

    def blur(self, x0: Tensor, abar: Tensor) -> Tensor:
        """The noiseless blur: heat flow for time τ(ᾱ) = −½ log ᾱ / λ_min (exact in DCT space)."""
        self.check_input(x0.shape)
        h, w = x0.shape[-2], x0.shape[-1]
        ch, cw = _dct_matrix(h, x0.dtype, x0.device), _dct_matrix(w, x0.dtype, x0.device)
        fy = torch.arange(h, dtype=x0.dtype, device=x0.device) / h
        fx = torch.arange(w, dtype=x0.dtype, device=x0.device) / w
        lam = math.pi**2 * (fy[:, None] ** 2 + fx[None, :] ** 2)
        lam_min = math.pi**2 / max(h, w) ** 2
        a = torch.as_tensor(abar, dtype=x0.dtype, device=x0.device).clamp(min=MIN_ABAR)
        tau = append_dims(-0.5 * torch.log(a) / lam_min, x0.ndim)
        coef = ch @ x0 @ cw.T
        return ch.T @ (coef * torch.exp(-lam * tau)) @ cw

    def degrade(self, x0, abar, noise):
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        return self.blur(x0, abar) + BLUR_JITTER * torch.sqrt(1 - a) * noise

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None, state=None):
        self.check_input(shape)
        means = (state or {}).get("means")
        if means is None:
            raise UserInputError("the blur family's limit needs the training images' mean colours;"
                                 " call fit(x_train) or load a checkpoint trained with blur")
        n_means = means.shape[0]
        idx = draw(lambda s, g: torch.randint(n_means, s, generator=g, device=_gen_device(g)),
                   (shape[0],), generator, "cpu")
        mean = means[idx].to(dtype=dtype, device=device)
        jitter = self.tensor_noise(shape, generator, dtype, device)
        return mean[..., None, None] + BLUR_JITTER * jitter


#: other spellings of a registered name, accepted wherever a family is looked up
FAMILY_ALIASES = {"vonmises": "von-mises", "von_mises": "von-mises"}


def get_family(name: str | NoiseFamily, offers: str | Iterable[str] = ()) -> NoiseFamily:
    """Look a family up by name or an alias of it (an instance passes through); with
    ``offers``, refuse a family lacking one of those representations in one line."""
    if isinstance(name, NoiseFamily):
        fam = name
    else:
        try:
            fam = FAMILIES[FAMILY_ALIASES.get(name, name)]
        except KeyError:
            raise unknown_name("noise family", name, FAMILIES) from None
    for rep in (offers,) if isinstance(offers, str) else offers:
        fam.require(rep)
    return fam
