"""Exact serial-reproduction chains on grids: propagate distributions, not samples.

For the ``sample`` rule one iteration is literally one reproduction of the engine,
p_{n+1} = Post ∘ K p_n = :func:`serialrepro.grid.reproduce` (docs/design.md §1, §3). For the
``mean`` and ``map`` rules the response is a deterministic function r(y) of the percept,
so the transition matrix is

    T(x' | x) = Σ_y K(y | x) 1[x' = nearest grid point of r(y)],

built at once by scattering the rows of the dense kernel matrix into the rows of their
responses (``index_add_``). Optional production noise K'_τ is one more kernel applied
after the response. Many chains run at once as a batch of distributions
[..., *space.shape]; :func:`sample_grid_chains` draws individual chains from T.

Circular 1-D spaces (angles, hues) are 1-D torus grids, ``GridSpace.torus(n, dims=1)``:
[−0.5, 0.5) is one turn. On them (``agent.circular``) the ``mean`` response is the
circular mean; on non-circular spaces it is the ordinary mean of the coordinates (keep
the prior away from the seam: the grid's kernels always wrap).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from serialrepro.chains.agents import Agent
from serialrepro.circular import weighted_circular_mean
from serialrepro.errors import UserInputError
from serialrepro.grid.kernels import GridKernel, make_kernel
from serialrepro.grid.process import posterior, reproduce
from serialrepro.grid.space import GridSpace
from serialrepro.particles.rng import chain_blocks, pad_rows

#: grids up to this many points use dense kernels by default
DENSE_MAX_POINTS = 4096


def nearest_index(space: GridSpace, points: Tensor) -> Tensor:
    """Flat index of the grid point nearest to each point ([N] for a 1-D grid, or [N, D]):
    :meth:`GridSpace.nearest_index`."""
    x = torch.as_tensor(points, dtype=torch.float64)
    return space.nearest_index(x.unsqueeze(-1) if x.ndim == 1 else x)


def point_masses(space: GridSpace, points: Tensor) -> Tensor:
    """One distribution per point, all mass on its nearest grid point: [N, *space.shape]."""
    idx = nearest_index(space, points)
    out = torch.zeros((idx.numel(), space.size), dtype=torch.float64)
    out[torch.arange(idx.numel()), idx.reshape(-1)] = 1.0
    return out.reshape(idx.numel(), *space.shape)


def response_indices(space: GridSpace, kernel: GridKernel, prior: Tensor, rule: str,
                     circular: bool = False) -> Tensor:
    """For every grid percept y, the flat index of the response r(y) (``mean``/``map``) to
    the engine's posterior Post(· | y) = :func:`~serialrepro.grid.process.posterior` of the
    point mass at y (row y of ``post``)."""
    m = space.size
    q = prior.to(torch.float64)
    percepts = torch.eye(m, dtype=q.dtype, device=q.device).reshape(m, *space.shape)
    post = posterior(percepts, kernel, q).reshape(m, m)  # rows y, columns x'
    explained = post.sum(dim=1) > 0  # rows sum to 1, or 0 where no prior point explains y
    if rule == "map":
        idx = torch.argmax(post, dim=1)
    elif rule == "mean":
        pts = space.points(post.dtype, post.device)
        r = weighted_circular_mean(post, pts) if circular else post @ pts
        idx = nearest_index(space, r)
    else:
        raise UserInputError(f"response rule {rule!r} has no deterministic response")
    # a percept no prior point can produce: report it as perceived
    own = torch.arange(space.size, device=post.device)
    return torch.where(explained, idx, own)


def transition_matrix(agent: Agent, space: GridSpace, sigma: float | None = None,
                      prior: Tensor | None = None) -> Tensor:
    """The dense M×M transition matrix T(x' | x) of one iteration (rows x', columns x),
    including production noise. ``prior`` overrides ``agent.prior.on_grid(space)``.

    Built with dense kernels, which resolve every tiny K q exactly, so the columns sum to
    1 even where the prior's tails underflow an FFT's round-off floor. For ``sample`` the
    columns are the engine's posterior of the percept distributions K(· | x):
    T(· | x) = Post K(· | x).
    """
    q = agent.prior.on_grid(space) if prior is None else prior
    kernel = make_kernel(space, agent.family, agent.sigma if sigma is None else sigma, "dense")
    m = space.size
    k = kernel.matrix()
    if agent.rule == "sample":
        t = posterior(k.T.reshape(m, *space.shape), kernel, q.to(k)).reshape(m, m).T
    else:
        idx = response_indices(space, kernel, q, agent.rule, agent.circular)
        t = torch.zeros((m, m), dtype=torch.float64)
        t.index_add_(0, idx, k)
    if agent.production_sigma > 0:
        prod = make_kernel(space, agent.production_family, agent.production_sigma, "dense")
        t = prod.matrix() @ t
    return t


def default_backend(space: GridSpace) -> str:
    """Dense kernels (exact in the far tails) up to 4096 grid points, FFT beyond."""
    return "dense" if space.size <= DENSE_MAX_POINTS else "auto"


def grid_chain_marginals(
    agent: Agent, space: GridSpace, start: Tensor, n_iterations: int,
    levels: Sequence[float] | None = None, backend: str | None = None,
) -> Tensor:
    """Exact distributions of chains from ``start`` [..., *space.shape]; returns
    [n_iterations + 1, ..., *space.shape] (index 0 is the start). ``backend`` defaults to
    :func:`default_backend`."""
    backend = backend or default_backend(space)
    d = space.dims
    p = torch.as_tensor(start, dtype=torch.float64)
    if tuple(p.shape[p.ndim - d:]) != space.shape:
        raise UserInputError(f"start distribution shape {tuple(p.shape)} does not end in the "
                             f"grid shape {space.shape}")
    sigmas = agent.levels(n_iterations, levels)
    q = agent.prior.on_grid(space).to(p)
    prod = (make_kernel(space, agent.production_family, agent.production_sigma, backend)
            if agent.production_sigma > 0 else None)
    kernels: dict[float, GridKernel] = {}
    mats: dict[float, Tensor] = {}
    out = [p]
    for sigma in sigmas:
        if sigma not in kernels:
            kernels[sigma] = make_kernel(space, agent.family, sigma, backend)
        k = kernels[sigma]
        if agent.rule == "sample":
            p = reproduce(p, k, q)
        else:
            if sigma not in mats:
                idx = response_indices(space, k, q, agent.rule, agent.circular)
                t = torch.zeros((space.size, space.size), dtype=torch.float64)
                mats[sigma] = t.index_add_(0, idx, k.matrix())
            flat = p.reshape(*p.shape[: p.ndim - d], space.size)
            p = (flat @ mats[sigma].T).reshape(p.shape)
        if prod is not None:
            p = prod.apply(p)
        out.append(p)
    return torch.stack(out)


def sample_grid_chains(
    transitions: Tensor | Sequence[Tensor], start_index: Tensor, n_iterations: int,
    seed: int = 0,
) -> Tensor:
    """Draw chains x_{n+1} ~ T(· | x_n) on grid points; ``transitions`` is one M×M matrix
    or one per iteration. Returns flat indices [n_iterations + 1, C]. Chain i is drawn
    from the random stream of its block (independent of the number of chains)."""
    mats = [transitions] * int(n_iterations) if isinstance(transitions, Tensor) else list(
        transitions)
    if len(mats) != int(n_iterations):
        raise UserInputError(f"{len(mats)} transition matrices for {n_iterations} iterations")
    start = torch.as_tensor(start_index, dtype=torch.long).reshape(-1)
    out = torch.empty((len(mats) + 1, start.numel()), dtype=torch.long)
    out[0] = start
    cols = [m.T.contiguous() for m in mats]  # row x is the distribution T(· | x)
    for rows, gen in chain_blocks(start.numel(), seed):
        x = pad_rows(start[rows])
        for n, c in enumerate(cols):
            x = torch.multinomial(c[x], 1, generator=gen).squeeze(1)
            out[n + 1, rows] = x[: rows.stop - rows.start]
    return out
