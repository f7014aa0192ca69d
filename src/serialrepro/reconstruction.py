"""One reconstruction interface for the three engines (docs/design.md §1, §3).

The core operation of the project is one **reproduction**: perceive through the noise
kernel K_t, then reconstruct with the step's prior by Bayes' rule,
Post_t(x | y) ∝ K_t(y | x) q_{t−1}(x). The paper's diffusion step is that reproduction,

    serial:  r_{t−1} = Post_t K_t r_t,

and the "denoise only" (ancestral) step is Post_t alone. Three engines implement the two
halves, each in its own representation, and everything above them (chains, samplers,
analyses) calls these two methods instead of writing Bayes' rule again:

============  ===========================================  ==================================
engine        perceive / reconstruct act on                implementation
============  ===========================================  ==================================
exact         distributions on a grid (Post v = q ⊙ Kᵀ(v ⊘  :class:`serialrepro.grid.process.
              K q))                                         GridReconstructor`
empirical     samples in continuous space (the prior's      :class:`serialrepro.particles.
              closed form or its weighted support)          posterior.EmpiricalReconstructor`
trained       tensors x_t (the network's step-t reverse     :class:`serialrepro.models.
network       transition)                                   reconstruct.NetworkReconstructor`
============  ===========================================  ==================================

The map of where each lives is also in docs/reconstruction.md. This module imports nothing
from the project: it sits at the bottom of the layers, beside ``families.py``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

State = TypeVar("State")


@runtime_checkable
class Reconstructor(Protocol[State]):
    """The two halves of one reproduction at step ``t`` of a schedule.

    ``state`` is whatever the engine propagates: a distribution on a grid (exact; then no
    generator is used and the result is the distribution of the reconstruction), a batch of
    samples (empirical, trained network; then the result is one draw per sample, from
    ``generator``: one ``torch.Generator`` or, where the engine supports it, one per sample).
    ``t`` counts steps 1..T of the engine's schedule (the grid and particle engines), or is
    a training timestep of the network's (respaced) schedule.
    """

    def perceive(self, state: State, t: Any, generator: Any = None) -> State:
        """y ~ K_t(· | x): one forward step of the noise family from ``state``."""
        ...

    def reconstruct(self, perceived: State, t: Any, generator: Any = None) -> State:
        """x' ~ Post_t(· | y) ∝ K_t(y | x') q_{t−1}(x'): the step's Bayesian reconstruction
        (for the network, its step-t reverse transition)."""
        ...


def serial(recon: Reconstructor[State], state: State, t: Any, generator: Any = None) -> State:
    """The paper's serial-reproduction step r_{t−1} = Post_t K_t r_t (docs/design.md §1):
    perceive ``state`` through K_t, then reconstruct. Its stationary law is q_{t−1}
    whatever the family, when ``reconstruct`` is the exact posterior."""
    return recon.reconstruct(recon.perceive(state, t, generator), t, generator)


def ancestral(recon: Reconstructor[State], state: State, t: Any, generator: Any = None) -> State:
    """The "denoise only" step r_{t−1} = Post_t r_t (DDPM's step without re-noising)."""
    return recon.reconstruct(state, t, generator)


#: the reverse steps by the name every engine uses for them
STEPS = {"serial": serial, "ancestral": ancestral}
