"""Noise families as Markov kernels on grids: K p, Kᵀ v and the dense matrix.

A kernel K(y | x) is stored as whatever its structure allows (DESIGN §3):

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
import os
from abc import ABC, abstractmethod
from functools import lru_cache

import torch
from torch import Tensor

from serialrepro.errors import UserInputError
from serialrepro.families import NoiseFamily, get_family
from serialrepro.grid.priors import limit_distribution
from serialrepro.grid.space import GridSpace

BACKENDS = ("auto", "dense", "fft")


class GridKernel(ABC):
    """A column-stochastic kernel K(y | x) on a grid."""

    backend: str = ""

    def __init__(self, space: GridSpace, family: NoiseFamily, sigma: float):
        self.space = space
        self.family = family
        self.sigma = sigma

    @abstractmethod
    def apply(self, p: Tensor) -> Tensor:
        """K p: push a distribution (or batch) through the noise."""

    @abstractmethod
    def apply_t(self, v: Tensor) -> Tensor:
        """Kᵀ v: pull a function of y back to a function of x."""

    @abstractmethod
    def matrix(self) -> Tensor:
        """The dense M×M matrix, rows y and columns x (for checks and small grids)."""

    @abstractmethod
    def column_entropy_bits(self) -> Tensor:
        """H(K(· | x)) in bits for every x, shape ``space.shape``."""

    def noise_floor(self, pushed: Tensor) -> Tensor | float:
        """Values of K q at or below this are round-off, not probability (0 for dense)."""
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
        return (f"{type(self).__name__}({self.family.name}, σ={self.sigma:g}, "
                f"{self.space.label})")


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
            return (limit_distribution(family.limit, space).to(dtype=dtype, device=device)
                    .reshape(-1, 1))

        terms = (family.grid_axis_terms(space.axis_offsets(dtype, device), sigma, space.spacing)
                 if separable else None)
        # the normalised per-axis factor when K = f ⊗ … ⊗ f exactly (cheap column entropy)
        self._axis_factor: Tensor | None = None
        if terms is None:
            d = _dense_offsets(space, str(torch.device(device or "cpu")), dtype)
            parts = family.grid_parts(d, sigma, (0,), space.spacing, target)
            k, coef, tgt = parts.circulant, parts.coef, parts.target
        else:
            coef = family.grid_rank_one_coef(sigma)
            tgt = target() if coef > 0 else None
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
                    k = term if k is None else k.add_(term)
        if self._axis_factor is not None:
            self.K = _kron_power(self._axis_factor, space.dims)
        else:
            if tgt is not None and coef:
                k = k + coef * tgt
            self.K = k / k.sum(dim=0, keepdim=True)
        self._entropy: Tensor | None = None

    def apply(self, p):
        flat = self._flat(p)
        return (flat @ self.K.T).reshape(p.shape)

    def apply_t(self, v):
        flat = self._flat(v)
        return (flat @ self.K).reshape(v.shape)

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


class FFTKernel(GridKernel):
    backend = "fft"

    def __init__(self, space, family, sigma, device=None, dtype=torch.float64):
        super().__init__(space, family, sigma)
        if not space.supports_fft:
            raise UserInputError(
                f"the FFT backend needs a torus grid; {space.label} is not circulant "
                "(use --backend dense or auto)"
            )
        d = [o.to(device) for o in space.circulant_offsets(dtype)]
        dims = tuple(range(space.dims))
        parts = family.grid_parts(
            d, sigma, dims, space.spacing,
            lambda: limit_distribution(family.limit, space).to(dtype=dtype, device=device),
        )
        c = parts.circulant
        z = c.sum()
        self.coef = 0.0
        self.target: Tensor | None = None
        if parts.target is not None and parts.coef:
            z = z + parts.coef * parts.target.sum()
            flat = parts.target.reshape(-1)
            if bool((flat == flat[0]).all()):
                # a constant target (fade to uniform) is itself circulant: folding it into
                # c keeps the kernel purely circulant (O(M) column entropies at any size)
                c = c + parts.coef * parts.target
            else:
                self.coef = float(parts.coef / z)
                self.target = parts.target
        self.c = c / z
        self._dims = tuple(range(-space.dims, 0))
        self.spectrum = torch.fft.rfftn(self.c, dim=self._dims)
        self._spectrum_conj = self.spectrum.conj()

    def noise_floor(self, pushed: Tensor) -> Tensor:
        """ε·log₂M·max|K q| per distribution: an FFT convolution's absolute round-off.

        Where the exact K q is smaller (priors with empty regions seen through compact or
        very narrow kernels) the FFT returns noise of either sign; dividing by it in Bayes'
        rule would turn ±1e−17 into arbitrary posterior mass. Below this level the FFT
        path treats y as impossible, where the dense path still resolves tiny values, so
        the backends agree to 1e−10 only when K q stays above it (e.g. data mixed with
        uniform, as the paper's always is).
        """
        scale = pushed.abs().amax(dim=self._dims, keepdim=True)
        return scale * (torch.finfo(pushed.dtype).eps * math.log2(max(self.space.size, 2)))

    def _conv(self, p: Tensor, spec: Tensor) -> Tensor:
        out = torch.fft.irfftn(torch.fft.rfftn(p, dim=self._dims) * spec, s=self.space.shape,
                               dim=self._dims)
        return out

    def apply(self, p):
        self._flat(p)  # shape check
        out = self._conv(p, self.spectrum)
        if self.target is not None:
            out = out + self.coef * self.target * p.sum(dim=self._dims, keepdim=True)
        return out

    def apply_t(self, v):
        self._flat(v)
        out = self._conv(v, self._spectrum_conj)
        if self.target is not None:
            out = out + self.coef * (self.target * v).sum(dim=self._dims, keepdim=True)
        return out

    def matrix(self):
        """Dense matrix assembled from the circulant column (for checks on small grids)."""
        check_dense_fits(self.space, self.c.device)
        eye = torch.eye(self.space.size, dtype=self.c.dtype, device=self.c.device)
        cols = self.apply(eye.reshape(self.space.size, *self.space.shape))
        return cols.reshape(self.space.size, self.space.size).T

    def column_entropy_bits(self):
        if self.target is None:
            h = _entropy_bits_of_columns(self.c.reshape(-1), 0)
            return torch.full(self.space.shape, float(h), dtype=self.c.dtype, device=self.c.device)
        # circulant plus rank one: columns differ; exact, column block by column block
        m = self.space.size
        out = torch.empty(m, dtype=self.c.dtype, device=self.c.device)
        block = max(1, min(m, (1 << 24) // m))
        for start in range(0, m, block):
            idx = torch.arange(start, min(start + block, m), device=self.c.device)
            basis = torch.zeros(len(idx), m, dtype=self.c.dtype, device=self.c.device)
            basis[torch.arange(len(idx)), idx] = 1.0
            cols = self.apply(basis.reshape(len(idx), *self.space.shape)).reshape(len(idx), m)
            out[start:start + len(idx)] = _entropy_bits_of_columns(cols, 1)
        return out.reshape(self.space.shape)


@lru_cache(maxsize=4)
def _dense_offsets(space: GridSpace, device: str, dtype: torch.dtype) -> list[Tensor]:
    return space.dense_offsets(dtype, torch.device(device))


def _available_bytes(device) -> int:
    dev = torch.device(device or "cpu")
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_dense_fits(space: GridSpace, device=None) -> None:
    """Refuse a dense kernel whose matrix and offset tables would not fit in memory."""
    need = space.dense_bytes * (space.dims + 3)
    avail = _available_bytes(device)
    if need > 0.8 * avail:
        raise UserInputError(
            f"grid {space.label} has M={space.size} points: a dense kernel needs about "
            f"{need / 2**30:.1f} GiB but {avail / 2**30:.1f} GiB is available; use a torus grid "
            "with --backend fft (or auto), or a coarser grid"
        )


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


def make_kernel(
    space: GridSpace, family: str | NoiseFamily, sigma: float, backend: str = "auto",
    device=None, dtype: torch.dtype = torch.float64,
) -> GridKernel:
    """K_σ of ``family`` on ``space`` with the requested backend."""
    fam = get_family(family)
    sigma = fam.check_sigma(sigma)
    cls = DenseKernel if resolve_backend(space, backend) == "dense" else FFTKernel
    return cls(space, fam, sigma, device=device, dtype=dtype)


class KernelSchedule:
    """The kernels K_1 … K_T of a schedule, built once and kept while memory allows
    (dense kernels of large grids are rebuilt on use instead of kept)."""

    def __init__(self, space, family, sigmas, backend="auto", device=None,
                 dtype=torch.float64, keep_bytes: int = 2 << 30):
        self.space = space
        self.family = get_family(family)
        self.sigmas = check_schedule(self.family, sigmas)
        self.backend = resolve_backend(space, backend)
        self.device, self.dtype = device, dtype
        per = space.dense_bytes if self.backend == "dense" else space.size * 16
        self._keep = per * len(self.sigmas) <= keep_bytes
        self._cache: dict[int, GridKernel] = {}

    def __len__(self) -> int:
        return len(self.sigmas)

    def __getitem__(self, i: int) -> GridKernel:
        """The kernel of step t = i + 1."""
        if i in self._cache:
            return self._cache[i]
        k = make_kernel(self.space, self.family, self.sigmas[i], self.backend, self.device,
                        self.dtype)
        if self._keep:
            self._cache[i] = k
        return k

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def check_schedule(family: NoiseFamily, sigmas) -> list[float]:
    """Validate a noise schedule: non-empty, every level valid, non-decreasing."""
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
