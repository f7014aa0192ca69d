"""``serialrepro chains simulate``: a YAML config in, a long-format chain table out.

The config (``yaml.safe_load``, validated by pydantic: unknown keys and bad values fail
with their key path) describes the prior, the agent, the chains and the mode:

.. code-block:: yaml

    mode: grid            # grid (exact, chains drawn from T on grid points) | particles
    circular: false       # values on one turn [−0.5, 0.5) (angles, hues)
    grid: 200             # torus points per axis (grid mode, named priors)
    prior:
      kind: gaussian-mixture   # gaussian-mixture | points | named
      means: [[-0.15], [0.15]]
      covs: [0.002, 0.002]     # variances, or D×D matrices
      weights: [0.5, 0.5]
    agent:
      family: gaussian
      sigma: 0.05
      levels: null             # or one level per iteration (a schedule)
      rule: sample             # sample | mean | map
      production_sigma: 0.0
      production_family: gaussian
    chains: {n_chains: 200, n_iterations: 20, start: {kind: uniform, low: -0.4, high: 0.4}}
                          # 20 reproductions: rows at iterations 0 (the start) to 20
    output: {value_cols: [x], period: 360}   # period: data units per turn (circular only)
    seed: 0

Values are written in unit coordinates (linear) or in ``period`` units (circular), in
the same long format :func:`serialrepro.chains.data.load_chains` reads, so
``simulate`` → ``analyze`` round-trips.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    model_validator,
)

from serialrepro.budget import MAX_SEED, check_memory
from serialrepro.chains.agents import RULES, Agent
from serialrepro.chains.closed_form import gaussian_chain_ar1
from serialrepro.chains.grid_chains import (
    grid_chain_marginals,
    nearest_index,
    sample_grid_chains,
    transition_matrix,
)
from serialrepro.chains.particle_chains import particle_chains
from serialrepro.configio import StrictModel, format_validation_error, read_yaml
from serialrepro.errors import UserInputError, unknown_name
from serialrepro.families import FAMILIES, GRID, PARTICLES, get_family
from serialrepro.grid.priors import PRIORS
from serialrepro.grid.space import GridSpace
from serialrepro.particles.priors import (
    GaussianMixturePrior,
    GridDensityPrior,
    ParticlePrior,
    PointSetPrior,
)
from serialrepro.particles.rng import BLOCK, chain_blocks


def _one_of(kind: str, valid: Collection[str]) -> AfterValidator:
    """A field check that a name is one of ``valid``, failing with the standard
    "unknown <kind> ...; valid choices: ..." message."""

    def check(v: str) -> str:
        if v not in valid:
            raise unknown_name(kind, v, valid)
        return v

    return AfterValidator(check)


class GaussianMixtureSpec(StrictModel):
    kind: Literal["gaussian-mixture"]
    means: list[list[float]]
    covs: list[float] | list[list[list[float]]]
    weights: list[float] | None = None
    n_support: Annotated[int, Field(ge=1, le=10_000_000)] = 4096

    @model_validator(mode="after")
    def _shapes(self):
        return _check_mixture(self)


class PointsSpec(StrictModel):
    kind: Literal["points"]
    points: list[list[float]]
    weights: list[float] | None = None

    @model_validator(mode="after")
    def _shapes(self):
        return _check_points(self)


class NamedSpec(StrictModel):
    kind: Literal["named"]
    name: Annotated[str, _one_of("prior", PRIORS)]
    dims: Annotated[int, Field(ge=1, le=3)] = 2
    mix: Annotated[float, Field(ge=0, le=1)] | None = None


class AgentSpec(StrictModel):
    family: Annotated[str, _one_of("noise family", FAMILIES)] = "gaussian"
    sigma: Annotated[float, Field(gt=0)]
    levels: list[float] | None = None
    rule: Annotated[str, _one_of("response rule", RULES)] = "sample"
    production_sigma: Annotated[float, Field(ge=0)] = 0.0
    production_family: Annotated[str, _one_of("noise family", FAMILIES)] = "gaussian"


class StartSpec(StrictModel):
    kind: Literal["uniform", "prior", "point"] = "uniform"
    low: float = -0.4
    high: float = 0.4
    value: list[float] | None = None


class ChainsSpec(StrictModel):
    """``n_iterations`` counts reproductions, not the start: a chain has rows at iterations
    0 (the start) to ``n_iterations`` (the convention of every command)."""

    n_chains: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    n_iterations: Annotated[int, Field(ge=1, le=100_000)] = 20
    start: StartSpec = StartSpec()


class OutputSpec(StrictModel):
    value_cols: list[str] | None = None
    period: Annotated[float, Field(gt=0)] = 360.0
    format: Literal["csv", "parquet"] = "csv"


class SimulateConfig(StrictModel):
    mode: Literal["grid", "particles"] = "grid"
    circular: bool = False
    grid: Annotated[int, Field(ge=2, le=4096)] = 200
    prior: Annotated[GaussianMixtureSpec | PointsSpec | NamedSpec, Field(discriminator="kind")]
    agent: AgentSpec
    chains: ChainsSpec = ChainsSpec()
    output: OutputSpec = OutputSpec()
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0

    @model_validator(mode="after")
    def _families_offer_the_mode(self):
        # grid mode needs grid kernels, particle mode samples and log-densities
        need = GRID if self.mode == "grid" else PARTICLES
        get_family(self.agent.family, offers=need)
        get_family(self.agent.production_family, offers=need)
        return self


def _rows(name: str, value: list[list[float]], width: int | None = None) -> int:
    """The common length of the rows of ``value`` (refusing ragged or empty rows)."""
    if not value:
        raise ValueError(f"{name} is empty; give at least one row")
    lengths = {len(r) for r in value}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"{name} is ragged: its rows have lengths "
                         f"{sorted(lengths)[:6]}; every row needs the same number of values")
    (n,) = lengths
    if width is not None and n != width:
        raise ValueError(f"{name} rows have {n} values; expected {width}")
    return n


def _check_mixture(spec: GaussianMixtureSpec) -> GaussianMixtureSpec:
    """Shapes agree, weights are non-negative, covariances are symmetric positive
    definite (a singular one has no density): checked at validation, one line."""
    d = _rows("means", spec.means)
    k = len(spec.means)
    covs = spec.covs
    if covs and isinstance(covs[0], list):
        if len(covs) != k:
            raise ValueError(f"covs has {len(covs)} matrices for {k} means")
        for i, c in enumerate(covs):
            if len(c) != d:
                raise ValueError(f"covs.{i} is {len(c)}×… for {d}-D means; give a "
                                 f"{d}×{d} matrix")
            _rows(f"covs.{i}", c, d)
            a = np.asarray(c, dtype=np.float64)
            if not np.allclose(a, a.T, rtol=1e-10, atol=1e-12):
                raise ValueError(f"covs.{i} is not symmetric")
            if not np.linalg.eigvalsh(a).min() > 0:
                raise ValueError(f"covs.{i} is singular or not positive definite "
                                 "(an eigenvalue ≤ 0)")
    else:
        if len(covs) not in (1, k):
            raise ValueError(f"covs has {len(covs)} variances for {k} means; give 1 "
                             f"or {k}")
        if not all(v > 0 for v in covs):
            raise ValueError("covs: every variance must be > 0")
    if spec.weights is not None:
        if len(spec.weights) != k or any(w < 0 for w in spec.weights) or \
                not sum(spec.weights) > 0:
            raise ValueError(f"weights must be {k} non-negative numbers, not all zero")
    return spec


def _check_points(spec: PointsSpec) -> PointsSpec:
    _rows("points", spec.points)
    if spec.weights is not None and (len(spec.weights) != len(spec.points) or any(
            w < 0 for w in spec.weights) or not sum(spec.weights) > 0):
        raise ValueError(f"weights must be {len(spec.points)} non-negative numbers, "
                         "not all zero")
    return spec


def prior_dims(cfg: SimulateConfig) -> int:
    """D, the dimension of the values, from the validated config alone."""
    p = cfg.prior
    if isinstance(p, GaussianMixtureSpec):
        return len(p.means[0])
    if isinstance(p, PointsSpec):
        return len(p.points[0])
    return p.dims


def simulation_bytes(cfg: SimulateConfig) -> int:
    """Peak memory of :func:`simulate_chains` by arithmetic on the config: the states
    [I + 1, C, D] in float64 about four times over (states, their values, the table's
    columns and its sorted copy) with the table's two integer columns; in grid mode also
    the chains' grid indices, one dense M×M transition matrix per distinct level (three
    M² arrays while one is built) and the exact marginals [I + 1, M]."""
    d = prior_dims(cfg)
    rows = (cfg.chains.n_iterations + 1) * cfg.chains.n_chains
    total = rows * (4 * 8 * d + 2 * 2 * 8)
    if cfg.mode == "grid":
        m = cfg.grid ** d
        levels = len(set(cfg.agent.levels)) if cfg.agent.levels else 1
        total += rows * 8 + (levels + 2) * m * m * 8 + (cfg.chains.n_iterations + 1) * m * 8
    return total


def check_cost(cfg: SimulateConfig, source: str = "chain config") -> int:
    """Refuse a config whose parts are each in bounds but whose whole would not fit in
    memory (:func:`serialrepro.budget.check_memory`), before anything is built."""
    what = (f"{source}: {cfg.chains.n_chains} chains × {cfg.chains.n_iterations} iterations"
            + (f" on a {cfg.grid}^{prior_dims(cfg)} grid" if cfg.mode == "grid" else ""))
    return check_memory(what, simulation_bytes(cfg), "use fewer chains or iterations"
                        + (", or a smaller grid" if cfg.mode == "grid" else ""))


def shipped_config_dir() -> Path:
    """The folder of the shipped chain configs (``serialrepro/chains/configs``)."""
    from importlib import resources

    return Path(str(resources.files("serialrepro.chains") / "configs"))


def shipped_names() -> list[str]:
    """Names of the shipped chain configs (``chains simulate NAME``)."""
    return sorted(p.stem for p in shipped_config_dir().glob("*.yaml"))


def resolve_config_path(config: str | Path) -> Path:
    """A YAML file as given, else the shipped config of that name (``bimodal-1d`` or
    ``bimodal-1d.yaml``), else a one-line error listing the shipped names."""
    path = Path(config)
    if path.is_file():
        return path
    name = path.stem if path.suffix in (".yaml", ".yml") and path.parent == Path(".") else None
    name = name if name is not None else str(config)
    shipped = shipped_config_dir() / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    raise UserInputError(f"chain config {str(config)!r} is neither a file nor a shipped config; "
                         f"shipped: {', '.join(shipped_names())}")


def load_config(path_or_dict: str | Path | dict) -> SimulateConfig:
    """Read and validate a simulate config: a YAML file, the name of a shipped config
    (:func:`shipped_names`) or an already-parsed dict."""
    source = "(dict)"
    data = path_or_dict
    if not isinstance(path_or_dict, dict):
        path = resolve_config_path(path_or_dict)
        source = repr(str(path_or_dict))
        data = read_yaml(path)
    if not isinstance(data, dict):
        raise UserInputError(f"config {source} must be a mapping of keys to values")
    try:
        cfg = SimulateConfig.model_validate(data)
    except ValidationError as exc:
        raise UserInputError(format_validation_error(exc, source, SimulateConfig)) from None
    check_cost(cfg, f"config {source}")
    return cfg


def build_prior(cfg: SimulateConfig) -> ParticlePrior:
    p = cfg.prior
    if isinstance(p, GaussianMixtureSpec):
        return GaussianMixturePrior(p.means, p.covs, p.weights, n_support=p.n_support,
                                    support_seed=cfg.seed)
    if isinstance(p, PointsSpec):
        return PointSetPrior(torch.tensor(p.points, dtype=torch.float64), p.weights)
    from serialrepro.grid.priors import make_prior

    space = GridSpace.torus(cfg.grid, p.dims)
    return GridDensityPrior(space, make_prior(p.name, space, p.mix))


def build_agent(cfg: SimulateConfig) -> Agent:
    a = cfg.agent
    return Agent(build_prior(cfg), a.family, a.sigma, a.rule, a.production_sigma,
                 a.production_family, cfg.circular)


def _starts(cfg: SimulateConfig, prior: ParticlePrior) -> torch.Tensor:
    """Starting values [C, D], drawn per block of chains (stream 1) like the dynamics."""
    s, d, n = cfg.chains.start, prior.dims, cfg.chains.n_chains
    if s.kind == "point":
        if s.value is None or len(s.value) != d:
            raise UserInputError(f"chains.start.value must be a list of {d} number(s)")
        return torch.tensor(s.value, dtype=torch.float64).expand(n, d).clone()
    if s.kind == "uniform" and not s.low < s.high:
        raise UserInputError(f"chains.start: low {s.low} must be below high {s.high}")
    out = torch.empty((n, d), dtype=torch.float64)
    for rows, gen in chain_blocks(n, cfg.seed, stream=1):
        # full-block draws, sliced: chain i's start does not depend on the number of chains
        if s.kind == "prior":
            x = prior.sample(BLOCK, gen)
        else:
            x = s.low + (s.high - s.low) * torch.rand((BLOCK, d), generator=gen,
                                                      dtype=torch.float64)
        out[rows] = x[: rows.stop - rows.start]
    return out


def simulate_chains(cfg: SimulateConfig) -> dict:
    """Run the configured chains. Returns a dict with ``frame`` (the long table),
    ``states`` [I + 1, C, D] (unit coordinates), ``marginals`` (grid mode: exact
    distributions of the population, [I + 1, *grid]), ``space``, ``agent``, ``seconds``
    and ``closed_form`` (the AR(1) when the prior is one Gaussian and the noise gaussian)."""
    t0 = time.perf_counter()
    check_cost(cfg)  # again: a config may have been changed since it was loaded (--seed)
    agent = build_agent(cfg)
    d = agent.dims
    names = cfg.output.value_cols or (["x", "y", "z"][:d] if d <= 3 else
                                      [f"x{k}" for k in range(d)])
    if len(names) != d:
        raise UserInputError(f"output.value_cols has {len(names)} names for {d}-D values")
    n_it = cfg.chains.n_iterations
    levels = cfg.agent.levels
    agent.levels(n_it, levels)  # validate the schedule before any work
    starts = _starts(cfg, agent.prior)
    space = marginals = None
    if cfg.mode == "grid":
        if d > 3:
            raise UserInputError(f"grid mode supports 1-3 dimensions; the prior has {d}")
        space = GridSpace.torus(cfg.grid, d)
        sig = agent.levels(n_it, levels)
        mats = {s: transition_matrix(agent, space, s) for s in dict.fromkeys(sig)}
        idx = sample_grid_chains([mats[s] for s in sig], nearest_index(space, starts), n_it,
                                 cfg.seed)
        states = space.points()[idx]  # [I + 1, C, D]
        start_p = torch.zeros(space.size, dtype=torch.float64)
        start_p.index_add_(0, nearest_index(space, starts), torch.ones(len(starts),
                                                                       dtype=torch.float64))
        start_p = (start_p / start_p.sum()).reshape(space.shape)
        marginals = grid_chain_marginals(agent, space, start_p, n_it, levels)
    else:
        states = particle_chains(agent, starts, n_it, cfg.seed, levels)
    vals = states.numpy()
    if cfg.circular:
        vals = vals * cfg.output.period
    c = vals.shape[1]
    frame = pd.DataFrame({
        "chain": np.tile(np.arange(c), n_it + 1),
        "iteration": np.repeat(np.arange(n_it + 1), c),
    })
    for k, name in enumerate(names):
        frame[name] = vals[:, :, k].reshape(-1)
    frame = frame.sort_values(["chain", "iteration"], kind="stable").reset_index(drop=True)
    closed = None
    p = agent.prior
    # Gaussian noise on a Gaussian prior: the chain is the AR(1) of docs/design.md §1
    noise_var = agent.family.gaussian_variance(agent.sigma)
    production_var = agent.production_family.gaussian_variance(agent.production_sigma)
    if (isinstance(p, GaussianMixturePrior) and len(p.weights) == 1 and d == 1
            and noise_var is not None and production_var is not None and not cfg.circular
            and levels is None):
        closed = gaussian_chain_ar1(float(p.means[0, 0]), float(p.covs[0, 0, 0]),
                                    noise_var, agent.rule, production_var)
    return {"frame": frame, "states": states, "marginals": marginals, "space": space,
            "agent": agent, "value_cols": names, "closed_form": closed,
            "seconds": time.perf_counter() - t0}


def config_summary(cfg: SimulateConfig) -> dict:
    """The resolved config as plain JSON data."""
    return cfg.model_dump(mode="json")

