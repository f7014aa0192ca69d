"""Seeded random streams for many chains at once, independent of how many run.

Chains are processed in fixed-size blocks of :data:`BLOCK` chains. Block b draws all its
randomness from its own ``torch.Generator`` seeded from (seed, b) through NumPy's
``SeedSequence`` (well-mixed, collision-resistant seeds), and every draw inside a block
has the full block shape (a partial last block is padded and sliced). So chain i's
trajectory depends only on (seed, i): running 10 chains or 10 000 chains with the same
seed gives the same first 10 chains (the per-sample-seed habit of EDM, docs/style.md), while
each block is vectorised over its chains.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

#: chains per random stream; fixed, because changing it changes every chain's draws
BLOCK = 512


def block_seed(seed: int, block: int, stream: int = 0) -> int:
    """A 63-bit seed for block ``block`` of a run seeded with ``seed``; ``stream`` separates
    independent uses (0: chain dynamics, 1: starting values)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(block), int(stream)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def chain_blocks(
    n_chains: int, seed: int, device: torch.device | str | None = None, stream: int = 0
) -> Iterator[tuple[slice, torch.Generator]]:
    """(slice of chain indices, generator) for each block of :data:`BLOCK` chains."""
    dev = torch.device(device or "cpu")
    for b, start in enumerate(range(0, n_chains, BLOCK)):
        gen = torch.Generator(device=dev)
        gen.manual_seed(block_seed(seed, b, stream))
        yield slice(start, min(start + BLOCK, n_chains)), gen


def pad_rows(x: torch.Tensor, rows: int = BLOCK) -> torch.Tensor:
    """Pad ``x`` along dim 0 to ``rows`` rows (repeating row 0) so draws have block shape."""
    if x.shape[0] == rows:
        return x
    pad = x[:1].expand(rows - x.shape[0], *x.shape[1:])
    return torch.cat([x, pad], dim=0)


def gumbel_argmax(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Index drawn from the categorical with (unnormalised) log weights along the last
    dim, by the Gumbel-max trick: argmax(log w + G), G ~ Gumbel(0, 1). It works in log
    space, so weights far below the float range (exp(−1000)) are still sampled right."""
    u = torch.rand(log_weights.shape, generator=generator, dtype=log_weights.dtype,
                   device=log_weights.device)
    # −log(−log u), with u kept away from 0 and 1
    tiny = torch.finfo(log_weights.dtype).tiny
    eps = torch.finfo(log_weights.dtype).eps
    g = -torch.log(-torch.log(u.clamp(min=tiny, max=1.0 - eps / 2)))
    return torch.argmax(log_weights + g, dim=-1)
