"""Noise families for tensors of any shape: the forward process q(x_t | x_0) of a trained model.

A family says how data at noise level ᾱ ∈ (0, 1] (alphas_cumprod, 1 = clean) is corrupted,
given an explicit noise draw: ``degrade(x0, abar, noise)``. Everything a sampler needs
(the limit distribution, x̂0 ↔ ε conversions, the posterior's noise) lives here, so the
samplers in :mod:`serialrepro.models.samplers` never branch on the family.

- ``gaussian``, ``laplace``, ``uniform``, ``student-t``: variance preserving (DDPM eq. 4),
  x_t = √ᾱ x_0 + √(1−ᾱ) ε with ε the zero-mean unit-variance noise of
  :func:`serialrepro.families.get_family` (so "laplace" means the same as in the grid engine:
  equal variance to the gaussian at every t). Limit: the unit noise itself.
- ``fade-uniform``: each coordinate is kept with probability ᾱ, otherwise replaced by a
  fresh U(−1, 1) value (the data range). Composed per step this is "resample with
  probability β_t", the tensor analogue of the grid's fade kernel (without its 0.01 jitter:
  kept coordinates are exact). Limit: U(−1, 1).
- ``blur``: cold diffusion's blur (Bansal et al. 2022) as the heat equation (Rissanen et al.
  2023): a Gaussian blur with reflecting borders of growing width √(2τ), computed exactly
  in the DCT basis, x̃ = DCT⁻¹(e^{−λ τ} DCT x_0), λ_{ij} = π²(i²/H² + j²/W²). τ is chosen so
  that the slowest non-constant mode decays like √ᾱ, τ = −½ log ᾱ / λ_min. A jitter
  0.01·√(1−ᾱ)·N(0, 1) is added (zero at ᾱ = 1). Limit: the per-image mean colour (drawn from
  the training images' means, stored by :meth:`TensorFamily.fit`) plus that jitter.
  Images only (shape [..., C, H, W]).
- ``mask``: each coordinate is kept with probability ᾱ, otherwise set to 0 (mid grey for
  data in [−1, 1]). Limit: the all-zero tensor (a point mass: sample diversity comes only
  from the random re-masking of the serial-reproduction step).

Noise draws accept a ``torch.Generator`` or a list of generators, one per sample (the first
dimension), so sample i is the same whatever the batch (EDM's per-sample seeds).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import get_family

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None

#: Standard deviation of the blur family's jitter at the limit (data in [−1, 1]).
BLUR_JITTER = 0.01
#: Smallest ᾱ used where a logarithm or a division by √ᾱ needs it.
MIN_ABAR = 1e-12


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


class TensorFamily(ABC):
    """A forward corruption q(x_t | x_0) indexed by ᾱ; subclasses register by name."""

    name: str = ""
    description: str = ""
    #: whether x_t = √ᾱ x_0 + √(1−ᾱ) ε, so ε-prediction, DDPM and DDIM steps are defined
    variance_preserving: bool = False
    #: whether inputs must be images [..., C, H, W]
    images_only: bool = False

    @property
    def default_prediction(self) -> str:
        """ε regression for variance-preserving families, x0 regression otherwise."""
        return "eps" if self.variance_preserving else "x0"

    # -- state fitted on data (only blur has some) ------------------------------------
    def fit(self, x0: Tensor) -> None:  # noqa: B027 (optional hook)
        """Record what the limit distribution needs from the training data (default: nothing)."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:  # noqa: B027
        """Restore :meth:`fit`'s state."""

    def check_input(self, shape: Sequence[int]) -> None:
        if self.images_only and len(shape) < 4:
            raise UserInputError(
                f"noise family {self.name!r} needs images of shape [batch, channels, height,"
                f" width]; got shape {tuple(shape)}"
            )

    # -- the forward process ----------------------------------------------------------
    @abstractmethod
    def sample_noise(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """The randomness of one forward draw for data of ``shape``."""

    @abstractmethod
    def degrade(self, x0: Tensor, abar: Tensor, noise: Tensor) -> Tensor:
        """x_t given x_0, ᾱ (shape [batch] or scalar) and a draw of :meth:`sample_noise`.

        ᾱ = 1 returns x_0 exactly (cold diffusion's D(x, 0) = x).
        """

    @abstractmethod
    def limit_sample(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """A draw from the limit distribution p_F (ᾱ → 0), where sampling starts."""

    def infer_noise(self, x_t: Tensor, x0: Tensor, abar: Tensor,
                    generator: GeneratorLike = None) -> Tensor:
        """A noise draw consistent with x_t = D(x0, ᾱ; noise) where the family can tell.

        Used by cold diffusion's Algorithm 2 (both degradations share it). The default is a
        fresh draw (the noise is not identifiable from x_t, as for blur's jitter or the mask
        pattern); families whose noise is identifiable override it.
        """
        return self.sample_noise(x_t.shape, generator, x_t.dtype, x_t.device)

    # -- variance-preserving algebra (DDPM eq. 4 inverted) ------------------------------
    def _need_vp(self, what: str) -> None:
        if not self.variance_preserving:
            valid = ", ".join(
                sorted(n for n, f in TENSOR_FAMILIES.items() if f.variance_preserving))
            raise UserInputError(
                f"{what} needs a variance-preserving noise family; {self.name!r} is not"
                f" (valid: {valid}); use x0 prediction with the 'reproduction' or 'cold' sampler"
            )

    def x0_from_eps(self, x_t: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
        """x̂_0 = (x_t − √(1−ᾱ) ε) / √ᾱ (DDPM eq. 15 rearranged)."""
        self._need_vp("ε-prediction")
        a = append_dims(abar.clamp(min=MIN_ABAR), x_t.ndim)
        return (x_t - torch.sqrt(1 - a) * eps) / torch.sqrt(a)

    def eps_from_x0(self, x_t: Tensor, x0: Tensor, abar: Tensor) -> Tensor:
        """ε̂ = (x_t − √ᾱ x̂_0) / √(1−ᾱ) (DDIM eq. 9 rearranged)."""
        self._need_vp("this step")
        a = append_dims(abar, x_t.ndim)
        return (x_t - torch.sqrt(a) * x0) / torch.sqrt((1 - a).clamp(min=MIN_ABAR))

    def posterior_noise(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """Unit-variance noise of the ancestral (DDPM) step.

        Gaussian for ``gaussian`` (exact); for other VP families the family's own unit noise
        with the DDPM posterior's mean and variance (a moment-matched step).
        """
        self._need_vp("the DDPM/DDIM step")
        return self.sample_noise(shape, generator, dtype, device)


class _VariancePreserving(TensorFamily):
    variance_preserving = True

    def __init__(self, name: str) -> None:
        self.name = name
        self._base = get_family(name)
        self.description = (f"variance preserving, x_t = √ᾱ x0 + √(1−ᾱ) ε, ε {name} with unit"
                            " variance")

    def sample_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        return draw(lambda s, g: self._base.unit_noise(s, g, dtype, _gen_device(g)),
                    shape, generator, device)

    def degrade(self, x0, abar, noise):
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * noise

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None):
        return self.sample_noise(shape, generator, dtype, device)

    def infer_noise(self, x_t, x0, abar, generator=None):
        # ε̂ from x_t and x̂_0: cold diffusion's Algorithm 2 then equals DDIM with η = 0
        return self.eps_from_x0(x_t, x0, abar)


def _uniform(shape, generator, dtype, device, low=-1.0, high=1.0):
    return draw(lambda s, g: torch.rand(s, generator=g, dtype=dtype, device=_gen_device(g)),
                shape, generator, device) * (high - low) + low


class FadeUniform(TensorFamily):
    name = "fade-uniform"
    description = "keep each coordinate with probability ᾱ, else a fresh U(−1, 1) value"

    def sample_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        # last axis: (uniform deciding keep/replace, the replacement value)
        return draw(lambda s, g: torch.rand((*s, 2), generator=g, dtype=dtype,
                                            device=_gen_device(g)), shape, generator, device)

    def degrade(self, x0, abar, noise):
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        fresh = 2 * noise[..., 1] - 1
        return torch.where(noise[..., 0] < a, x0, fresh)

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None):
        return _uniform(shape, generator, dtype, device)

    def infer_noise(self, x_t, x0, abar, generator=None):
        # Which coordinates were replaced is unknown (fresh keep/replace uniforms), but a
        # replaced coordinate's value is x_t itself, so D(x̂_0, ᾱ; noise) agrees with x_t there.
        noise = self.sample_noise(x_t.shape, generator, x_t.dtype, x_t.device)
        return torch.stack([noise[..., 0], (x_t + 1) / 2], dim=-1)


class Mask(TensorFamily):
    name = "mask"
    description = "keep each coordinate with probability ᾱ, else set it to 0 (mid grey)"

    def sample_noise(self, shape, generator=None, dtype=torch.float32, device=None):
        return _uniform(shape, generator, dtype, device, 0.0, 1.0)

    def degrade(self, x0, abar, noise):
        a = append_dims(torch.as_tensor(abar, dtype=x0.dtype, device=x0.device), x0.ndim)
        return torch.where(noise < a, x0, torch.zeros_like(x0))

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None):
        return torch.zeros(tuple(shape), dtype=dtype, device=device)


def _dct_matrix(n: int, dtype: torch.dtype, device) -> Tensor:
    """Orthonormal DCT-II matrix C (C @ x transforms, Cᵀ inverts)."""
    k = torch.arange(n, dtype=torch.float64)
    c = torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / n) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype=dtype, device=device)


class Blur(TensorFamily):
    name = "blur"
    description = ("Gaussian blur of growing width (heat equation, DCT); limit: per-image mean"
                   " colour + 0.01 jitter")
    images_only = True

    def __init__(self) -> None:
        self.means: Tensor | None = None  # [N, C] per-image mean colours of the training data

    def fit(self, x0: Tensor) -> None:
        self.check_input(x0.shape)
        self.means = x0.mean(dim=(-2, -1)).reshape(-1, x0.shape[-3]).detach().cpu()

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.means is None else {"means": self.means}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if "means" in state:
            self.means = state["means"].cpu()

    def sample_noise(self, shape, generator=None, dtype=torch.float32, device=None):
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

    def limit_sample(self, shape, generator=None, dtype=torch.float32, device=None):
        self.check_input(shape)
        if self.means is None:
            raise UserInputError("the blur family's limit needs the training images' mean colours;"
                                 " call fit(x_train) or load a checkpoint trained with blur")
        n_means = self.means.shape[0]
        idx = draw(lambda s, g: torch.randint(n_means, s, generator=g, device=_gen_device(g)),
                   (shape[0],), generator, "cpu")
        mean = self.means[idx].to(dtype=dtype, device=device)
        jitter = self.sample_noise(shape, generator, dtype, device)
        return mean[..., None, None] + BLUR_JITTER * jitter


_FAMILY_FACTORIES: dict[str, Callable[[], TensorFamily]] = {
    "gaussian": lambda: _VariancePreserving("gaussian"),
    "laplace": lambda: _VariancePreserving("laplace"),
    "uniform": lambda: _VariancePreserving("uniform"),
    "student-t": lambda: _VariancePreserving("student-t"),
    "fade-uniform": FadeUniform,
    "blur": Blur,
    "mask": Mask,
}

#: One instance per name, for read-only questions (which families are VP, descriptions).
TENSOR_FAMILIES: dict[str, TensorFamily] = {k: f() for k, f in _FAMILY_FACTORIES.items()}


def make_family(name: str) -> TensorFamily:
    """A fresh tensor family (families with fitted state must not be shared between models)."""
    try:
        return _FAMILY_FACTORIES[name]()
    except KeyError:
        raise unknown_name("tensor noise family", name, _FAMILY_FACTORIES) from None
