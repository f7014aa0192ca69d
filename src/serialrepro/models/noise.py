"""The tensor representation of a noise family: the forward process q(x_t | x_0) of a model.

Every family lives in :mod:`serialrepro.families`; those offering the ``tensor``
representation define their forward process there (``degrade(x0, ᾱ, noise)``, the noise
draw, the limit distribution, noise inference). :class:`TensorFamily` is the thin adapter a
trained model holds: one family, the state fitted on that model's training data (blur's
mean colours) and the variance-preserving algebra (x̂0 ↔ ε), so the samplers in
:mod:`serialrepro.models.samplers` never branch on the family.

- variance preserving (``gaussian``, ``laplace``, ``uniform``, ``student-t``; DDPM eq. 4):
  x_t = √ᾱ x_0 + √(1−ᾱ) ε with ε the family's zero-mean unit-variance noise (so "laplace"
  means the same as in the grid engine: equal variance to the gaussian at every t).
  Limit: the unit noise itself.
- ``resample-uniform``, ``mask``, ``blur``: x0 prediction only (see their classes in
  :mod:`serialrepro.families`). ``fade-uniform`` is the paper's grid process and has no
  tensor form.

Noise draws accept a ``torch.Generator`` or a list of generators, one per sample (the first
dimension), so sample i is the same whatever the batch (EDM's per-sample seeds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import (
    FAMILIES,
    MIN_ABAR,
    TENSOR,
    GeneratorLike,
    NoiseFamily,
    append_dims,
    family_names,
    get_family,
)

__all__ = ["TENSOR_FAMILIES", "GeneratorLike", "TensorFamily", "append_dims", "make_family"]


class TensorFamily:
    """One family's forward corruption for one model, indexed by ᾱ ∈ (0, 1] (1 = clean)."""

    def __init__(self, family: NoiseFamily) -> None:
        self.family = family.require(TENSOR)
        self.name = family.name
        self.description = family.description
        #: whether x_t = √ᾱ x_0 + √(1−ᾱ) ε, so ε-prediction, DDPM and DDIM steps are defined
        self.variance_preserving = family.variance_preserving
        #: whether inputs must be images [..., C, H, W]
        self.images_only = family.images_only
        self._state: dict[str, Tensor] = {}

    def __repr__(self) -> str:
        return f"TensorFamily({self.name!r})"

    @property
    def default_prediction(self) -> str:
        """ε regression (``epsilon``) for variance-preserving families, x̂_0 regression
        (``sample``) otherwise (diffusers' prediction-type names)."""
        return "epsilon" if self.variance_preserving else "sample"

    # -- state fitted on data ---------------------------------------------------------
    def fit(self, x0: Tensor) -> None:
        """Record what the limit distribution needs from the training data."""
        self._state = dict(self.family.fit_state(x0))

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self._state)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`fit`'s state."""
        self._state = {k: v.cpu() for k, v in state.items()}

    def check_input(self, shape: Sequence[int]) -> None:
        self.family.check_input(shape)

    # -- the forward process ----------------------------------------------------------
    def sample_noise(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """The randomness of one forward draw for data of ``shape``."""
        return self.family.tensor_noise(shape, generator, dtype, device)

    def degrade(self, x0: Tensor, abar: Tensor, noise: Tensor) -> Tensor:
        """x_t given x_0, ᾱ (shape [batch] or scalar) and a draw of :meth:`sample_noise`.

        ᾱ = 1 returns x_0 exactly (cold diffusion's D(x, 0) = x).
        """
        return self.family.degrade(x0, abar, noise)

    def limit_sample(
        self, shape: Sequence[int], generator: GeneratorLike = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    ) -> Tensor:
        """A draw from the limit distribution p_F (ᾱ → 0), where sampling starts."""
        return self.family.limit_sample(shape, generator, dtype, device, self._state)

    def infer_noise(self, x_t: Tensor, x0: Tensor, abar: Tensor,
                    generator: GeneratorLike = None) -> Tensor:
        """A noise draw consistent with x_t = D(x0, ᾱ; noise) where the family can tell.

        Used by cold diffusion's Algorithm 2. Variance-preserving families return ε̂ from
        x_t and x̂_0 (Algorithm 2 then equals DDIM with η = 0); the others ask the family
        (a fresh draw where the noise is not identifiable from x_t).
        """
        if self.variance_preserving:
            return self.eps_from_x0(x_t, x0, abar)
        return self.family.infer_noise(x_t, x0, abar, generator)

    # -- variance-preserving algebra (DDPM eq. 4 inverted) ------------------------------
    def _need_vp(self, what: str) -> None:
        if not self.variance_preserving:
            valid = ", ".join(sorted(
                n for n in family_names(TENSOR) if FAMILIES[n].variance_preserving))
            raise UserInputError(
                f"{what} needs a variance-preserving noise family; {self.name!r} is not"
                f" (valid: {valid}); use sample prediction with the 'x0-renoise' or 'cold' sampler"
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


def make_family(name: str | NoiseFamily) -> TensorFamily:
    """A fresh tensor adapter of the registered family ``name`` (families with fitted state
    must not be shared between models); a family without a tensor form is refused."""
    try:
        family = get_family(name)
    except UserInputError:
        raise unknown_name("tensor noise family", name, family_names(TENSOR)) from None
    return TensorFamily(family)


class _TensorFamilies(Mapping):
    """Read-only view: name → adapter of every registered family offering ``tensor``
    (derived from :data:`serialrepro.families.FAMILIES` whenever it is read)."""

    def __getitem__(self, name: str) -> TensorFamily:
        fam = FAMILIES.get(name)
        if fam is None or not fam.offers(TENSOR):
            raise KeyError(name)
        return TensorFamily(fam)

    def __iter__(self) -> Iterator[str]:
        return iter(family_names(TENSOR))

    def __len__(self) -> int:
        return len(family_names(TENSOR))


#: the families of trained models, for read-only questions (which are VP, descriptions)
TENSOR_FAMILIES: Mapping[str, TensorFamily] = _TensorFamilies()
