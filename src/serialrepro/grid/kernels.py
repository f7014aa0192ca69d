"""Noise families as Markov kernels on grids: K p, Kᵀ v and the dense matrix.

A kernel K(y | x) is stored as whatever its structure allows (docs/design.md §3):

* :class:`DenseKernel` — the M×M matrix (rows y, columns x). Works on every grid and is
  the reference the FFT path is tested against; the paper grid (duplicated endpoint)
  needs it.
* :class:`FFTKernel` — on torus grids every family is circulant, plus a rank-one term
  a·f 1ᵀ for the fade families: K p = c ⊛ p + a f Σp and Kᵀ v = c ⋆ v + a (fᵀv) 1,
  O(M log M) with real FFTs and O(M) memory.

Distributions have shape ``[..., *space.shape]`` (leading batch dimensions allowed);
device and dtype follow the kernel, which follows its ``device`` argument.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from functools import lru_cache

import torch
from torch import Tensor

from serialrepro.errors import UserInputError
from serialrepro.families import GRID, NoiseFamily, get_family
from serialrepro.grid.space import GridSpace

BACKENDS = ("auto", "dense", "fft")


class GridKernel(ABC):
    """A column-stochastic kernel K(y | x) on a grid."""

    backend: str = ""

    def __init__(self, space: GridSpace, family: NoiseFamily, sigma: float):
        self.space = space
        self.family = get_family(family, offers=GRID)
        self.sigma = sigma

    @abstractmethod
    def apply(self, p: Tensor, out: Tensor | None = None) -> Tensor:
        """K p: push a distribution (or batch) through the noise (into ``out`` if given,
        a tensor of p's shape, e.g. a slot of a preallocated trajectory)."""

    @abstractmethod
    def apply_t(self, v: Tensor, out: Tensor | None = None) -> Tensor:
        """Kᵀ v: pull a function of y back to a function of x (into ``out`` if given)."""

    @abstractmethod
    def matrix(self) -> Tensor:
        """The dense M×M matrix, rows y and columns x (for checks and small grids)."""

    @abstractmethod
    def column_entropy_bits(self) -> Tensor:
        """H(K(· | x)) in bits for every x, shape ``space.shape``."""

    def constant_column_entropy_bits(self) -> Tensor | None:
        """H(K(·|x)) in bits as a 0-d tensor when it is the same for every x (circulant
        kernels), else None; H(Y|X) is then this times Σ prior."""
        return None

    def noise_floor(self, pushed: Tensor, nonnegative: bool = False) -> Tensor | float:
        """Values of K q at or below this are round-off, not probability (0 for dense).
        ``nonnegative``: the caller knows K q ≥ 0 (clamped), which saves a reduction."""
        return 0.0

    def _flat(self, p: Tensor) -> Tensor:
        d = self.space.dims
        if tuple(p.shape[-d:]) != self.space.shape:
            raise UserInputError(
                f"distribution shape {tuple(p.shape)} does not end in the grid shape "
                f"{self.space.shape}"
            )
        return p.reshape(*p.shape[:-d], self.space.size)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.family.name}, σ={float(self.sigma):g}, "
                f"{self.space.label})")


def _into(res: Tensor, out: Tensor | None) -> Tensor:
    """``res``, written into ``out`` when one is given (and it is not already there)."""
    if out is None or res is out:
        return res
    return out.copy_(res)


def _add_rank_one(res: Tensor, a, b: Tensor) -> Tensor:
    """res + a·b, in place unless autograd tracks it."""
    if res.requires_grad or getattr(a, "requires_grad", False) or b.requires_grad:
        return res + a * b
    return res.add_(a * b)


def _entropy_bits_of_columns(k: Tensor, dim: int) -> Tensor:
    """−Σ_y k log₂ k along ``dim`` (0 log 0 = 0), one log per entry."""
    return torch.special.xlogy(k, k).sum(dim=dim) / -math.log(2.0)


def _kron_power(f: Tensor, dims: int, first: Tensor | None = None) -> Tensor:
    """f ⊗ f ⊗ … (``dims`` factors; ``first`` replaces the first one) as an M×M matrix:
    entry [(y_0,…,y_{D−1}), (x_0,…,x_{D−1})] = Π_axis f[y_axis, x_axis], row-major like
    the grid's flattened index."""
    n = f.shape[0]
    out = f if first is None else first
    for _ in range(dims - 1):
        m = out.shape[0]
        out = (out.reshape(m, 1, m, 1) * f.reshape(1, n, 1, n)).reshape(m * n, m * n)
    return out


class DenseKernel(GridKernel):
    """The M×M matrix K (rows y, columns x), column-normalised.

    When the family factors over axes (:meth:`NoiseFamily.grid_axis_terms`: gaussian,
    bimodal, trimodal, laplace, uniform, the fades' keep part) the matrix is assembled as
    Σ_k w_k f_k ⊗ … ⊗ f_k from [n, n] per-axis factors, with one pass over M² entries
    instead of evaluating the family at M² offsets; otherwise (student-t, or
    ``separable=False``, kept as a cross-check) from the family's weights at the dense
    minimum-image offsets. The two agree to rounding (tests hold them to 1e−12).
    """

    backend = "dense"

    def __init__(self, space, family, sigma, device=None, dtype=torch.float64,
                 separable: bool = True):
        super().__init__(space, family, sigma)
        check_dense_fits(space, device)

        def target() -> Tensor:
            return (family.limit_density(space).to(dtype=dtype, device=device)
                    .reshape(-1, 1))

        terms = (family.grid_axis_terms(space.axis_offsets(dtype, device), sigma, space.spacing)
                 if separable else None)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        # the normalised per-axis factor when K = f ⊗ … ⊗ f exactly (cheap column entropy)
        self._axis_factor: Tensor | None = None
        if terms is None:
            d = _dense_offsets(space, str(torch.device(device or "cpu")), dtype)
            parts = family.grid_parts(d, sigma, (0,), space.spacing, target)
            k, coef, tgt = parts.offset_weights, parts.coef, parts.target
        else:
            coef = family.grid_rank_one_coef(sigma)
            tgt = target() if _is_positive(coef) else None
            if len(terms) == 1 and tgt is None:
                # K = f̂ ⊗ … ⊗ f̂ with f̂ column-normalised: already column-stochastic, so
                # the M² normalisation pass is skipped
                f = terms[0][1]
                self._axis_factor = f / f.sum(dim=0, keepdim=True)
                k = None
            else:
                k = None
                for w, f in terms:
                    term = _kron_power(f, space.dims, first=w * f)
                    # in place only where autograd does not track k (σ given as a tensor)
                    k = term if k is None else (k + term if term.requires_grad else k.add_(term))
        if self._axis_factor is not None:
            self.K = _kron_power(self._axis_factor, space.dims)
        else:
            if tgt is not None and _is_positive(coef):
                k = k + coef * tgt
            self.K = k / k.sum(dim=0, keepdim=True)
        self._entropy: Tensor | None = None

    def apply(self, p, out=None):
        flat = self._flat(p)
        return _into((flat @ self.K.T).reshape(p.shape), out)

    def apply_t(self, v, out=None):
        flat = self._flat(v)
        return _into((flat @ self.K).reshape(v.shape), out)

    def matrix(self):
        return self.K

    def column_entropy_bits(self):
        if self._entropy is None:
            if self._axis_factor is not None:
                # H(f ⊗ … ⊗ f column) = Σ_axis H(f column): O(n²) instead of O(M²)
                h = _entropy_bits_of_columns(self._axis_factor, 0)
                n, dims = self.space.n, self.space.dims
                out = torch.zeros(self.space.shape, dtype=h.dtype, device=h.device)
                for axis in range(dims):
                    out = out + h.reshape([n if a == axis else 1 for a in range(dims)])
                self._entropy = out
            else:
                self._entropy = _entropy_bits_of_columns(self.K, 0).reshape(self.space.shape)
        return self._entropy


def _is_positive(coef) -> bool:
    return bool(coef > 0)


def _real_if_symmetric(spec: Tensor, tol: float) -> Tensor:
    """The real part of a spectrum whose imaginary part is round-off (a kernel symmetric
    under d → −d), else the spectrum itself."""
    if not spec.is_complex():
        return spec
    scale = spec.real.abs().amax()
    if bool(spec.imag.abs().amax() <= tol * scale):
        return spec.real.contiguous()
    return spec


def _outer(vectors: list[Tensor]) -> Tensor:
    """v_0 ⊗ v_1 ⊗ … as a tensor of shape [len(v_0), len(v_1), …] (row-major)."""
    out = vectors[-1]
    for v in reversed(vectors[:-1]):
        out = v.reshape(-1, *([1] * out.ndim)) * out
    return out


def _outer_spectrum(f: Tensor, dims: int, tol: float, scale=1.0) -> Tensor:
    """scale · rfftn(f ⊗ … ⊗ f) from 1-D transforms: F(f) on every axis but the last, the
    real transform R(f) on the last (real when f is symmetric, up to round-off)."""
    full = _real_if_symmetric(torch.fft.fft(f), tol)
    half = full[: f.shape[0] // 2 + 1] * scale
    return _outer([full] * (dims - 1) + [half])


class FFTKernel(GridKernel):
    """A circulant kernel (plus the fades' rank-one term) applied with real FFTs.

    The spectrum ĉ = rfftn(c) is built once per σ. When the family factors over axes
    (:meth:`NoiseFamily.grid_axis_terms`, evaluated on one column of offsets) it is
    Σ_k w_k F(f_k) ⊗ … ⊗ F(f_k) ⊗ R(f_k) (F the 1-D DFT, R the real one on the last
    axis): the DFT of a tensor product is the tensor product of DFTs, so the spectrum
    costs O(n log n) per axis plus one pass over M/2 entries, and no D-dimensional FFT.
    A kernel symmetric under d → −d (every family here) has a real spectrum up to
    round-off; it is then stored real, so Kᵀ = K costs nothing extra and a product with
    it is half the work of a complex one. Other families go through rfftn of c.
    """

    backend = "fft"
    #: a spectrum whose imaginary part is below this fraction of its DC term is real
    REAL_TOL = 1e-12

    def __init__(self, space, family, sigma, device=None, dtype=torch.float64):
        super().__init__(space, family, sigma)
        if not space.supports_fft:
            raise UserInputError(
                f"the FFT backend needs a torus grid; {space.label} is not circulant "
                "(use --backend dense or auto)"
            )
        self._dims = tuple(range(-space.dims, 0))
        self._dtype = dtype
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        coef = family.grid_rank_one_coef(sigma)
        tgt = None
        if _is_positive(coef):
            tgt = family.limit_density(space).to(dtype=dtype, device=self._device)
        axis = _axis_column(space, dtype, str(self._device))
        terms = family.grid_axis_terms(axis, sigma, space.spacing)
        self._tgt = tgt
        #: the normalised per-axis factor when c = f ⊗ … ⊗ f exactly (O(n) entropy)
        self._axis_factor: Tensor | None = None
        self._c_norm: Tensor | None = None
        self._h: Tensor | None = None
        if terms is not None:
            self._terms = [(w, f.reshape(-1)) for w, f in terms]
            z = sum(w * f.sum() ** space.dims for w, f in self._terms)
            if tgt is not None:
                z = z + coef * tgt.sum()
            # the weights w_k/z ride on one 1-D factor: one pass over the M/2 entries
            spec = None
            for w, f in self._terms:
                part = _outer_spectrum(f, space.dims, self.REAL_TOL, w / z)
                spec = part if spec is None else spec + part
            if len(self._terms) == 1 and tgt is None:
                f = self._terms[0][1]
                self._axis_factor = f / f.sum()
        else:
            self._terms = None
            c = self._circulant_weights()
            z = c.sum() + (coef * tgt.sum() if tgt is not None else 0.0)
            spec = torch.fft.rfftn(c / z, dim=self._dims)
        self.coef: Tensor | float = 0.0
        self.target: Tensor | None = None
        self._fold: Tensor | float = 0.0
        if tgt is not None:
            flat = tgt.reshape(-1)
            if bool((flat == flat[0]).all()):
                # a constant target (fade to uniform) is itself circulant: its spectrum is
                # M·t at DC only, and the kernel stays purely circulant (O(M) entropies)
                self._fold = coef * flat[0]
                dc = torch.zeros(spec.shape, dtype=dtype, device=self._device)
                dc[(0,) * space.dims] = space.size
                spec = spec + (self._fold / z) * dc
            else:
                self.coef = coef / z
                self.target = tgt
        self._z = z
        self.spectrum = _real_if_symmetric(spec, self.REAL_TOL)
        #: Kᵀ = K: the spectrum is real, apply_t is apply
        self.symmetric = not self.spectrum.is_complex()
        self._spectrum_conj: Tensor | None = None

    def _circulant_weights(self) -> Tensor:
        """The family's unnormalised circulant weights at every offset (non-separable
        families; also the reference the separable build is tested against)."""
        d = self.space.circulant_offsets(self._dtype, self._device)
        return self.family.grid_parts(d, self.sigma, tuple(range(self.space.dims)),
                                      self.space.spacing, lambda: self._tgt).offset_weights

    @property
    def c(self) -> Tensor:
        """The normalised circulant part c(d) (the column of x = 0 without the rank-one
        term), shape ``space.shape``; materialised on first use (checks, entropies)."""
        if self._c_norm is None:
            if self._terms is not None:
                out = None
                for w, f in self._terms:
                    part = w * _outer([f] * self.space.dims)
                    out = part if out is None else out + part
            else:
                out = self._circulant_weights()
            self._c_norm = (out + self._fold) / self._z
        return self._c_norm

    def noise_floor(self, pushed: Tensor, nonnegative: bool = False) -> Tensor:
        """ε·log₂M·max|K q| per distribution: an FFT convolution's absolute round-off.

        Where the exact K q is smaller (priors with empty regions seen through compact or
        very narrow kernels) the FFT returns noise of either sign; dividing by it in Bayes'
        rule would turn ±1e−17 into arbitrary posterior mass. Below this level the FFT
        path treats y as impossible, where the dense path still resolves tiny values, so
        the backends agree to 1e−10 only when K q stays above it (e.g. data mixed with
        uniform, as the paper's always is).
        """
        scale = pushed.amax(dim=self._dims, keepdim=True)
        if not nonnegative:
            scale = torch.maximum(scale, -pushed.amin(dim=self._dims, keepdim=True))
        return scale * (torch.finfo(pushed.dtype).eps * math.log2(max(self.space.size, 2)))

    def _conv(self, p: Tensor, spec: Tensor, out: Tensor | None) -> Tensor:
        x = torch.fft.rfftn(p, dim=self._dims)
        if x.requires_grad or spec.requires_grad:
            return torch.fft.irfftn(x * spec, s=self.space.shape, dim=self._dims)
        # the transform is ours: multiply it in place, write the result where asked
        return torch.fft.irfftn(x.mul_(spec), s=self.space.shape, dim=self._dims, out=out)

    def _check(self, p: Tensor) -> None:
        if p.ndim < self.space.dims or \
                tuple(p.shape[p.ndim - self.space.dims:]) != self.space.shape:
            self._flat(p)  # raises the one-line error

    def apply(self, p, out=None):
        self._check(p)
        res = self._conv(p, self.spectrum, out)
        if self.target is not None:
            res = _add_rank_one(res, self.coef * self.target, p.sum(dim=self._dims, keepdim=True))
        return _into(res, out)

    def apply_t(self, v, out=None):
        self._check(v)
        # Kᵀ is the correlation with c: the conjugate spectrum (the same one when real)
        if self.symmetric:
            spec = self.spectrum
        else:
            if self._spectrum_conj is None:
                self._spectrum_conj = self.spectrum.conj().resolve_conj()
            spec = self._spectrum_conj
        res = self._conv(v, spec, out)
        if self.target is not None:
            res = _add_rank_one(res, self.coef, (self.target * v).sum(dim=self._dims,
                                                                      keepdim=True))
        return _into(res, out)

    def matrix(self):
        """Dense matrix assembled from the circulant column (for checks on small grids)."""
        check_dense_fits(self.space, self._device)
        eye = torch.eye(self.space.size, dtype=self._dtype, device=self._device)
        cols = self.apply(eye.reshape(self.space.size, *self.space.shape))
        return cols.reshape(self.space.size, self.space.size).T

    def column_entropy_bits(self):
        if self.target is None:
            h = self.constant_column_entropy_bits()
            return h.expand(self.space.shape) if h.ndim == 0 else h
        # circulant plus rank one: columns differ; exact, column block by column block
        m = self.space.size
        dev = self._device
        out = torch.empty(m, dtype=self._dtype, device=dev)
        block = max(1, min(m, (1 << 24) // m))
        for start in range(0, m, block):
            idx = torch.arange(start, min(start + block, m), device=dev)
            basis = torch.zeros(len(idx), m, dtype=self._dtype, device=dev)
            basis[torch.arange(len(idx), device=dev), idx] = 1.0
            cols = self.apply(basis.reshape(len(idx), *self.space.shape)).reshape(len(idx), m)
            out[start:start + len(idx)] = _entropy_bits_of_columns(cols, 1)
        return out.reshape(self.space.shape)

    def constant_column_entropy_bits(self) -> Tensor | None:
        """H(K(·|x)) in bits when every column has the same entropy (purely circulant
        kernels), as a 0-d tensor, else None. A product kernel f ⊗ … ⊗ f costs O(n):
        H(f ⊗ g) = H(f) + H(g)."""
        if self.target is not None:
            return None
        if self._h is None:
            if self._axis_factor is not None:
                self._h = self.space.dims * _entropy_bits_of_columns(self._axis_factor, 0)
            else:
                self._h = _entropy_bits_of_columns(self.c.reshape(-1), 0)
        return self._h


@lru_cache(maxsize=8)
def _axis_column(space: GridSpace, dtype: torch.dtype, device: str) -> Tensor:
    """One axis's circulant offsets as an [n, 1] column (built once per grid)."""
    return space.circulant_axis_offsets(dtype, torch.device(device)).reshape(-1, 1)


@lru_cache(maxsize=4)
def _dense_offsets(space: GridSpace, device: str, dtype: torch.dtype) -> list[Tensor]:
    return space.dense_offsets(dtype, torch.device(device))


def check_dense_fits(space: GridSpace, device=None) -> None:
    """Refuse a dense kernel whose matrix and offset tables would not fit in memory: on a
    GPU against its free memory, on the CPU through :func:`serialrepro.budget.check_memory`
    (available memory, ``RLIMIT_AS`` and ``$SERIALREPRO_MEMORY_LIMIT``)."""
    from serialrepro.budget import check_memory, format_bytes

    need = space.dense_bytes * (space.dims + 3)
    request = f"grid {space.label} has M={space.size} points: a dense kernel"
    hint = "use a torus grid with --backend fft (or auto), or a coarser grid"
    dev = torch.device(device or "cpu")
    if dev.type != "cuda":
        check_memory(request, need, hint)
        return
    free, _ = torch.cuda.mem_get_info(dev)
    if need > 0.8 * free:
        raise UserInputError(f"{request} needs about {format_bytes(need)} but "
                             f"{format_bytes(free)} of GPU memory is free; {hint}")


def resolve_backend(space: GridSpace, backend: str = "auto") -> str:
    """``auto`` picks FFT on torus grids and dense on the paper grid."""
    if backend not in BACKENDS:
        raise UserInputError(f"unknown backend {backend!r}; valid choices: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "fft" if space.supports_fft else "dense"
    if backend == "fft" and not space.supports_fft:
        raise UserInputError(
            f"the FFT backend needs a torus grid; {space.label} is not circulant "
            "(use --backend dense or auto)"
        )
    return backend


def _checked_level(family: NoiseFamily, sigma):
    """σ validated; a tensor level (e.g. one with ``requires_grad``) is kept as a tensor so
    that kernels, and everything computed from them, are differentiable in it."""
    if isinstance(sigma, Tensor):
        if sigma.numel() != 1:
            raise UserInputError(f"a noise level must be one number, got shape "
                                 f"{tuple(sigma.shape)}")
        family.check_sigma(float(sigma.detach()))
        return sigma.reshape(())
    return family.check_sigma(sigma)


def make_kernel(
    space: GridSpace, family: str | NoiseFamily, sigma: float | Tensor, backend: str = "auto",
    device=None, dtype: torch.dtype = torch.float64,
) -> GridKernel:
    """K_σ of ``family`` on ``space`` with the requested backend (σ a float, or a 0-d
    tensor to differentiate through the kernel)."""
    fam = get_family(family, offers=GRID)
    sigma = _checked_level(fam, sigma)
    cls = DenseKernel if resolve_backend(space, backend) == "dense" else FFTKernel
    return cls(space, fam, sigma, device=device, dtype=dtype)


#: kernels of a schedule are kept (built once) while they fit in this many bytes; beyond
#: it they are rebuilt on use (an FFT kernel of a separable family is cheap to rebuild)
KERNEL_CACHE_BYTES = 256 << 20


def kernel_bytes(space: GridSpace, backend: str) -> int:
    """Memory one built kernel holds: the M×M matrix (dense) or a spectrum of M/2 + 1
    complex entries per last axis (FFT; half that when it is real)."""
    if backend == "dense":
        return space.dense_bytes
    return (space.size // space.n) * (space.n // 2 + 1) * 16


class KernelSchedule:
    """The kernels K_1 … K_T of a schedule, built once and kept while memory allows
    (beyond ``keep_bytes`` they are rebuilt on use instead of kept).

    ``sigmas`` may be a 1-D tensor (e.g. with ``requires_grad``): the kernels are then
    built from its entries and are differentiable in them; ``sigmas`` stays the list of
    validated floats (for records)."""

    def __init__(self, space, family, sigmas, backend="auto", device=None,
                 dtype=torch.float64, keep_bytes: int = KERNEL_CACHE_BYTES):
        self.space = space
        self.family = get_family(family, offers=GRID)
        self.sigmas = check_schedule(self.family, sigmas)
        self.levels = sigmas.reshape(-1) if isinstance(sigmas, Tensor) else None
        self.backend = resolve_backend(space, backend)
        self.device, self.dtype = device, dtype
        self._keep = kernel_bytes(space, self.backend) * len(self.sigmas) <= keep_bytes
        self._cache: dict[int, GridKernel] = {}

    def __len__(self) -> int:
        return len(self.sigmas)

    @property
    def requires_grad(self) -> bool:
        return self.levels is not None and self.levels.requires_grad

    def __getitem__(self, i: int) -> GridKernel:
        """The kernel of step t = i + 1."""
        if i in self._cache:
            return self._cache[i]
        level = self.sigmas[i] if self.levels is None else self.levels[i]
        k = make_kernel(self.space, self.family, level, self.backend, self.device, self.dtype)
        if self._keep:
            self._cache[i] = k
        return k

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def check_schedule(family: NoiseFamily, sigmas) -> list[float]:
    """Validate a noise schedule of a grid family: non-empty, every level valid,
    non-decreasing."""
    family = get_family(family, offers=GRID)
    if isinstance(sigmas, Tensor):
        sigmas = sigmas.detach().reshape(-1).tolist()
    try:
        values = [float(s) for s in sigmas]
    except (TypeError, ValueError):
        raise UserInputError(f"noise schedule {sigmas!r} must be a list of numbers") from None
    if not values:
        raise UserInputError("the noise schedule is empty; give at least one level")
    values = [family.check_sigma(s) for s in values]
    for i in range(1, len(values)):
        if values[i] < values[i - 1] - 1e-15 * max(1.0, abs(values[i - 1])):
            raise UserInputError(
                f"the noise schedule must be non-decreasing (forward noise grows): level {i + 1} "
                f"is {values[i]:g} after {values[i - 1]:g}"
            )
    return values
