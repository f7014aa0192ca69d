"""Bayesian agents of serial reproduction (Xu & Griffiths 2010; docs/design.md §1).

An agent perceives a stimulus x through noise, y ~ K_σ(y | x) (a noise family of
:mod:`serialrepro.families`), and reconstructs it with its prior p by Bayes' rule,
Post(x' | y) ∝ K_σ(y | x') p(x'). Its *response rule* turns the posterior into a
reproduction:

* ``sample`` — x' ~ Post(· | y) (probability matching; the chain's stationary law is p);
* ``mean``   — x' = E[x | y] (the circular mean on circular spaces);
* ``map``    — x' = argmax Post(· | y).

Optional production (motor) noise perturbs the response: x'' ~ K'_τ(· | x'), with a
family of its own (gaussian by default). On circular spaces (angles, hues) values live on
the unit circle [−0.5, 0.5) and offsets are minimum-image offsets, as on a torus grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import NoiseFamily, get_family
from serialrepro.particles.priors import ParticlePrior

RULES = ("sample", "mean", "map")


@dataclass(frozen=True)
class Agent:
    """prior + noise family + level σ + response rule + optional production noise."""

    prior: ParticlePrior
    family: NoiseFamily | str
    sigma: float
    rule: str = "sample"
    production_sigma: float = 0.0
    production_family: NoiseFamily | str = field(default="gaussian")
    circular: bool = False

    def __post_init__(self) -> None:
        fam = get_family(self.family)
        object.__setattr__(self, "family", fam)
        object.__setattr__(self, "sigma", fam.check_sigma(self.sigma))
        if self.rule not in RULES:
            raise unknown_name("response rule", self.rule, RULES)
        pfam = get_family(self.production_family)
        object.__setattr__(self, "production_family", pfam)
        try:
            tau = float(self.production_sigma)
        except (TypeError, ValueError):
            raise UserInputError(
                f"production noise {self.production_sigma!r} is not a number") from None
        if not tau >= 0:
            raise UserInputError(f"production noise {self.production_sigma!r} must be ≥ 0")
        if tau > 0:
            tau = pfam.check_sigma(tau)
        object.__setattr__(self, "production_sigma", tau)

    @property
    def dims(self) -> int:
        return self.prior.dims

    def levels(self, n_iterations: int, levels: Sequence[float] | None = None) -> list[float]:
        """The perception level of each iteration: ``levels`` (a schedule, one per
        iteration) or the agent's σ repeated."""
        if int(n_iterations) < 1:
            raise UserInputError(f"a chain needs at least 1 iteration, got {n_iterations!r}")
        if levels is None:
            return [self.sigma] * int(n_iterations)
        values = [self.family.check_sigma(s) for s in levels]
        if len(values) != int(n_iterations):
            raise UserInputError(f"the level schedule has {len(values)} levels but the chain "
                                 f"has {n_iterations} iterations; give one level per iteration")
        return values
