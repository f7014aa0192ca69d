"""Monte-Carlo serial-reproduction chains in continuous space, many chains at once.

Iteration n of every chain (docs/design.md §1): perceive y ~ K_{σ_n}(· | x_n) with the agent's
noise family, respond x' by the agent's rule from Post(· | y) ∝ K(y | ·) p, add
production noise x_{n+1} ~ K'_τ(· | x'), and on circular spaces wrap onto [−0.5, 0.5).
All chains of a block advance together as one tensor; randomness comes from per-block
streams (:mod:`serialrepro.particles.rng`), so chain i is the same whatever the number
of chains run beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from serialrepro.chains.agents import Agent
from serialrepro.circular import wrap_tensor as wrap
from serialrepro.errors import UserInputError
from serialrepro.families import PARTICLES
from serialrepro.particles.posterior import EmpiricalReconstructor
from serialrepro.particles.rng import chain_blocks, pad_rows
from serialrepro.reconstruction import serial


def particle_chains(
    agent: Agent, start: Tensor, n_iterations: int, seed: int = 0,
    levels: Sequence[float] | None = None,
) -> Tensor:
    """Run chains from ``start`` [C, D]; returns states [n_iterations + 1, C, D]
    (index 0 is the start). ``levels`` is an optional schedule of one σ per iteration."""
    # float64 like the priors (device follows the input)
    x0 = torch.as_tensor(start).to(torch.float64)
    if x0.ndim == 1:
        x0 = x0.unsqueeze(-1)
    if x0.ndim != 2 or x0.shape[1] != agent.dims or x0.shape[0] == 0:
        raise UserInputError(f"chain starts must have shape [C, {agent.dims}] with C ≥ 1; got "
                             f"{tuple(x0.shape)}")
    agent.family.require(PARTICLES)
    agent.production_family.require(PARTICLES)
    if agent.circular and not agent.family.on_circle:
        raise UserInputError(f"the {agent.family.name} family is not defined on a circle; "
                             "use it on grids (mode: grid) or pick another family")
    sigmas = agent.levels(n_iterations, levels)
    n_chains = x0.shape[0]
    out = torch.empty((len(sigmas) + 1, n_chains, agent.dims), dtype=x0.dtype,
                      device=x0.device)
    out[0] = wrap(x0) if agent.circular else x0
    recon = EmpiricalReconstructor(agent.prior, agent.family, sigmas, agent.rule, agent.circular)
    for rows, gen in chain_blocks(n_chains, seed, x0.device):
        x = pad_rows(out[0, rows])
        for n in range(len(sigmas)):
            x = serial(recon, x, n + 1, gen)  # perceive at σ_n, respond by the agent's rule
            if agent.production_sigma > 0:
                x = agent.production_family.sample(x, agent.production_sigma, gen)
            if agent.circular:
                x = wrap(x)
            out[n + 1, rows] = x[: rows.stop - rows.start]
    return out
