"""Noise families, one definition in every representation: continuous sampling and
densities, unit-variance noise, and the grid kernel they induce."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from cli_in_process import run_in_process as _cli  # tests/ helper module
from serialrepro.errors import UserInputError
from serialrepro.families import FAMILIES, GRID, PARTICLES, TENSOR, family_names, get_family
from serialrepro.grid import GridSpace, make_kernel

#: the families with grid and continuous forms (the tensor-only ones: tests/test_models_*)
ALL = sorted(set(family_names(GRID)) & set(family_names(PARTICLES)))
STD = ["gaussian", "laplace", "student-t", "uniform"]
#: scipy's per-axis marginal of each σ-is-the-std family (standard deviation σ)
MARGINAL = {
    "gaussian": lambda s: stats.norm(scale=s),
    "laplace": lambda s: stats.laplace(scale=s / math.sqrt(2)),
    "uniform": lambda s: stats.uniform(loc=-s * math.sqrt(3), scale=2 * s * math.sqrt(3)),
    "student-t": lambda s: stats.t(df=3, scale=s / math.sqrt(3)),
}


def _level(name: str) -> float:
    return 0.3 if name.startswith("fade") else 0.05


def test_registry() -> None:
    assert set(ALL) == {"gaussian", "bimodal", "trimodal", "fade-uniform", "fade-fixed",
                        "laplace", "uniform", "student-t", "von-mises"}
    assert set(FAMILIES) - set(ALL) == {"resample-uniform", "mask", "blur"}
    fam = get_family("laplace")
    assert get_family(fam) is fam and fam.name == "laplace"
    with pytest.raises(UserInputError) as err:
        get_family("pink")
    assert "'pink'" in str(err.value) and all(n in str(err.value) for n in FAMILIES)


@pytest.mark.parametrize("name", ALL)
def test_check_sigma(name: str) -> None:
    fam = FAMILIES[name]
    assert fam.check_sigma("0.5") == 0.5
    for bad in (-1.0, float("nan"), "x"):
        with pytest.raises(UserInputError, match=name):
            fam.check_sigma(bad)
    if name.startswith("fade"):
        assert fam.check_sigma(0) == 0.0 and fam.check_sigma(1) == 1.0
        with pytest.raises(UserInputError, match=r"\[0, 1\]"):
            fam.check_sigma(1.5)
    else:
        with pytest.raises(UserInputError, match="σ > 0"):
            fam.check_sigma(0)
        assert fam.check_sigma(7.0) == 7.0


@pytest.mark.parametrize("name", ALL)
def test_log_prob_is_a_density_in_1d(name: str) -> None:
    fam = FAMILIES[name]
    y = torch.linspace(-4, 4, 160_001, dtype=torch.float64).unsqueeze(-1)
    x = torch.tensor([0.1], dtype=torch.float64)
    dens = torch.exp(fam.log_prob(y, x, _level(name)))
    assert torch.isfinite(dens).all() and (dens >= 0).all()
    mass = torch.trapezoid(dens, y[:, 0]).item()
    # the discontinuous densities (box, fade-uniform) cost O(h·density) in the trapezoid rule
    assert mass == pytest.approx(1.0, abs=1e-3 if name in ("uniform", "fade-uniform") else 1e-6)


@pytest.mark.parametrize("name", ALL)
def test_samples_follow_log_prob(name: str) -> None:
    """The empirical CDF of ``sample`` equals the integral of exp(``log_prob``) (1-D)."""
    fam = FAMILIES[name]
    sigma = _level(name)
    gen = torch.Generator().manual_seed(11)
    x = torch.full((100_000, 1), 0.1, dtype=torch.float64)
    ys = fam.sample(x, sigma, gen)[:, 0]
    assert ys.shape == (100_000,)
    grid = torch.linspace(-4, 4, 160_001, dtype=torch.float64)
    dens = torch.exp(fam.log_prob(grid.unsqueeze(-1), x[:1], sigma))
    cdf = torch.cumulative_trapezoid(dens, grid)
    for q in (-0.05, 0.0, 0.08, 0.1, 0.13, 0.2, 0.3):
        want = cdf[torch.searchsorted(grid, torch.tensor(q, dtype=torch.float64)) - 1].item()
        got = (ys <= q).double().mean().item()
        # binomial standard error ≤ 0.0016 at n = 1e5
        assert got == pytest.approx(want, abs=0.008), q


@pytest.mark.parametrize("name", STD)
def test_sigma_is_the_per_axis_standard_deviation(name: str) -> None:
    fam = FAMILIES[name]
    sigma = 0.07
    gen = torch.Generator().manual_seed(5)
    x = torch.zeros(80_000, 2, dtype=torch.float64)
    noise = fam.sample(x, sigma, gen)
    marginal = MARGINAL[name](sigma)
    for axis in range(2):
        # Kolmogorov–Smirnov against scipy's marginal (robust to the t's heavy tails)
        assert stats.kstest(noise[:, axis].numpy(), marginal.cdf).pvalue > 1e-3
        if name != "student-t":  # the t₃'s sample variance converges too slowly to test
            assert noise[:, axis].var().item() == pytest.approx(sigma**2, rel=0.03)
    # x + noise: the sample is centred on x
    shifted = fam.sample(torch.full((80_000, 2), 0.3, dtype=torch.float64), sigma, gen)
    assert shifted.median(dim=0).values.sub(0.3).abs().max().item() < 0.01
    # and log_prob is the product of those marginals
    y = torch.tensor([[0.03, -0.05], [0.1, 0.0]], dtype=torch.float64)
    if name == "student-t":  # isotropic multivariate t: not a product; check it in 1-D
        y1 = y[:, :1]
        want = marginal.logpdf(y1[:, 0].numpy())
        assert np.allclose(fam.log_prob(y1, torch.zeros(1, dtype=torch.float64),
                                        sigma).numpy(), want)
    else:
        want = marginal.logpdf(y.numpy()).sum(-1)
        got = fam.log_prob(y, torch.zeros(2, dtype=torch.float64), sigma).numpy()
        assert np.allclose(got, want)


@pytest.mark.parametrize("name", STD)
def test_unit_noise(name: str) -> None:
    gen = torch.Generator().manual_seed(2)
    z = FAMILIES[name].unit_noise((200_000,), gen, dtype=torch.float64)
    assert z.dtype == torch.float64 and z.shape == (200_000,)
    assert abs(z.mean().item()) < 0.01
    if name == "student-t":  # unit variance of t₃: KS against the rescaled t₃ instead
        assert stats.kstest(z.numpy(), stats.t(df=3, scale=math.sqrt(1 / 3)).cdf).pvalue > 1e-3
    else:
        assert z.var().item() == pytest.approx(1.0, rel=0.02)
    again = FAMILIES[name].unit_noise((200_000,), torch.Generator().manual_seed(2),
                                      dtype=torch.float64)
    assert torch.equal(z, again)  # seeded


@pytest.mark.parametrize("name", sorted(set(ALL) - set(STD)))
def test_unit_noise_refused_where_there_is_none(name: str) -> None:
    with pytest.raises(UserInputError, match="no additive unit-variance form.*gaussian"):
        FAMILIES[name].unit_noise((3,))


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_seeded(name: str) -> None:
    fam = FAMILIES[name]
    x = torch.zeros(500, 2, dtype=torch.float64)
    a = fam.sample(x, _level(name), torch.Generator().manual_seed(9))
    b = fam.sample(x, _level(name), torch.Generator().manual_seed(9))
    c = fam.sample(x, _level(name), torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", STD)
def test_grid_kernel_has_the_same_standard_deviation(name: str) -> None:
    """The grid kernel of a σ-is-the-std family has per-axis variance ≈ σ² (fine grid)."""
    space = GridSpace.torus(1001, 1)  # odd: every offset has its mirror image
    sigma = 0.03
    k = make_kernel(space, name, sigma, "fft")
    col = k.c  # the column of x = 0, indexed by offsets
    d = space.circulant_offsets()[0]
    assert abs((col * d).sum().item()) < 1e-15
    # the kernel is the continuous marginal truncated to the torus [−½, ½] (which costs the
    # heavy-tailed t₃ 8% of its variance; the others nothing measurable), then discretised
    want = MARGINAL[name](sigma).expect(lambda y: y * y, lb=-0.5, ub=0.5, conditional=True)
    if name == "student-t":
        assert want < 0.95 * sigma**2
    else:
        assert want == pytest.approx(sigma**2, rel=1e-6)
    assert (col * d * d).sum().item() == pytest.approx(want, rel=2e-3)


@pytest.mark.parametrize("name", ["bimodal", "trimodal"])
def test_stretch_families_put_modes_at_the_shift(name: str) -> None:
    fam = FAMILIES[name]
    gen = torch.Generator().manual_seed(4)
    y = fam.sample(torch.zeros(60_000, 2, dtype=torch.float64), 0.005, gen)
    near = {c: ((y - c).abs() < 0.02).all(-1).double().mean().item() for c in (-0.05, 0.0, 0.05)}
    if name == "bimodal":
        assert near[0.0] == 0 and near[0.05] == pytest.approx(0.5, abs=0.01)
        assert near[-0.05] == pytest.approx(0.5, abs=0.01)
    else:
        assert near[0.0] == pytest.approx(0.5, abs=0.01)
        assert near[0.05] == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("name", ALL)
def test_gaussian_variance_only_where_the_kernel_is_gaussian(name: str) -> None:
    """Conjugacy is declared by the family: σ² exactly when log_prob is N(x, σ²I)."""
    fam = get_family(name)
    sigma = 0.3 if name.startswith("fade") else 0.07
    var = fam.gaussian_variance(sigma)
    if name != "gaussian":
        assert var is None
        return
    assert var == pytest.approx(sigma**2)
    x = torch.zeros(1, 2, dtype=torch.float64)
    y = torch.tensor([[0.05, -0.02]], dtype=torch.float64)
    want = stats.multivariate_normal(mean=[0, 0], cov=var).logpdf(y[0].numpy())
    assert float(fam.log_prob(y, x, sigma)) == pytest.approx(want, rel=1e-12)


def test_aliases_name_the_registered_family_everywhere():
    from serialrepro.families import FAMILY_ALIASES, get_family

    for alias, name in FAMILY_ALIASES.items():
        assert alias not in FAMILIES and get_family(alias) is FAMILIES[name]


# -- what every family declares about itself ----------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_level_for_std_inverts_displacement_std(name: str) -> None:
    """Where a family matches displacement stds, displacement_std(level_for_std(s)) = s
    over the range it can reach; the stretch families cannot (their shift alone exceeds
    small stds) and are noisier than asked by exactly that shift."""
    fam = FAMILIES[name]
    stds = [0.012, 0.02, 0.05, 0.1, 0.2, 0.28]
    if fam.displacement_std(0.05) is None:
        assert fam.level_for_std(0.05) == 0.05  # the level is kept as given
        return
    for s in stds:
        level = fam.check_sigma(fam.level_for_std(s))  # a valid level of the family
        got = fam.displacement_std(level)
        if fam.matches_displacement_std:
            assert got == pytest.approx(s, rel=1e-12)
        else:
            assert got > s and got**2 - s**2 == pytest.approx(got**2 - level**2, rel=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_displacement_std_is_the_std_of_sampled_displacements(name: str) -> None:
    """The declared displacement std is what the continuous form does (1-D, away from the
    torus wrap where the fades' uniform draw is the torus' uniform)."""
    fam = FAMILIES[name]
    level = fam.level_for_std(0.04)
    want = fam.displacement_std(level)
    if want is None:
        pytest.skip(f"{name} declares no displacement std")
    space = GridSpace.torus(16, 1)
    if not torch.equal(fam.limit_density(space), space.uniform()):
        pytest.skip(f"{name} fades to a fixed target: its displacement depends on x")
    gen = torch.Generator().manual_seed(3)
    x = torch.zeros((200_000, 1), dtype=torch.float64)
    d = fam.sample(x, level, gen) - x
    if not fam.on_circle:  # a fresh uniform draw: its offset from x = 0 is the draw itself
        d = torch.remainder(d + 0.5, 1.0) - 0.5
    assert d.std().item() == pytest.approx(want, rel=0.02)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("grid", ["paper:0.04", "torus:32x1d", "torus:12"])
def test_limit_density_is_a_distribution_on_the_grid(name: str, grid: str) -> None:
    from serialrepro.grid import parse_grid

    spec, _, dims = grid.partition("x")
    space = parse_grid(spec, int(dims[0]) if dims else 2)
    p = FAMILIES[name].limit_density(space)
    assert p.shape == space.shape and p.dtype == torch.float64
    assert (p >= 0).all() and p.sum().item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_check_sigma_follows_the_declared_level_bounds(name: str) -> None:
    fam = FAMILIES[name]
    lo, hi = fam.min_level, fam.max_level
    if fam.zero_level_valid:
        assert fam.check_sigma(lo) == lo
    else:
        with pytest.raises(UserInputError, match=name):
            fam.check_sigma(lo)
    if math.isfinite(hi):
        assert fam.check_sigma(hi) == hi
        with pytest.raises(UserInputError, match=rf"\[{lo:g}, {hi:g}\]"):
            fam.check_sigma(hi * 1.5)
    else:
        assert fam.check_sigma(1e6) == 1e6


def _one_line_refusal(exc: pytest.ExceptionInfo, representation: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and f"no {representation} representation" in msg
    assert msg.endswith("families that do: " + ", ".join(family_names(representation)))


def _use(name: str, representation: str) -> None:
    """Exercise one representation of a family, checking what it returns."""
    from serialrepro.grid import GridSpace, make_kernel
    from serialrepro.models.noise import make_family

    fam = FAMILIES[name]
    gen = torch.Generator().manual_seed(0)
    level = fam.level_for_std(0.05)
    if representation == GRID:
        k = make_kernel(GridSpace.torus(8, 1), name, level).matrix()
        assert torch.allclose(k.sum(0), torch.ones(8, dtype=k.dtype), atol=1e-12)
    elif representation == PARTICLES:
        x = torch.zeros((16, 2), dtype=torch.float64)
        y = fam.sample(x, level, gen)
        assert y.shape == x.shape and torch.isfinite(fam.log_prob(y, x, level)).all()
    else:
        tensor = make_family(name)
        x0 = torch.rand((4, 1, 8, 8), generator=gen) * 2 - 1
        tensor.fit(x0)
        noise = tensor.sample_noise(x0.shape, gen)
        torch.testing.assert_close(tensor.degrade(x0, torch.ones(4), noise), x0)
        xt = tensor.degrade(x0, torch.full((4,), 0.5), noise)
        lim = tensor.limit_sample(x0.shape, gen)
        assert xt.shape == lim.shape == x0.shape and torch.isfinite(xt).all()


@pytest.mark.parametrize("representation", [GRID, PARTICLES, TENSOR])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_declared_representations_work_and_the_others_refuse(name, representation) -> None:
    fam = FAMILIES[name]
    if fam.offers(representation):
        _use(name, representation)
        return
    with pytest.raises(UserInputError) as exc:
        _use(name, representation)
    _one_line_refusal(exc, representation)
    with pytest.raises(UserInputError) as exc:
        get_family(name, offers=representation)
    _one_line_refusal(exc, representation)


def test_grid_and_particle_commands_refuse_a_tensor_only_family(capsys, monkeypatch) -> None:
    from serialrepro.chains.simulate import load_config
    from serialrepro.experiments.config import expand, parse_config

    code, _, err = _cli(["simulate", "--noise", "blur"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no grid representation" in err and "families that do: gaussian" in err
    for mode, rep in (("grid", GRID), ("particles", PARTICLES)):
        with pytest.raises(UserInputError, match=f"no {rep} representation"):
            load_config({"mode": mode, "prior": {"kind": "named", "name": "swiss-roll"},
                         "agent": {"family": "mask", "sigma": 0.1}})
    with pytest.raises(UserInputError, match="no grid representation"):
        expand(parse_config({"name": "t", "sweeps": [{
            "noise": "resample-uniform", "T": 2,
            "schedule": {"kind": "linear", "start": 0.01, "end": 0.05}}]}))


def test_particle_chains_on_a_circle_follow_on_circle() -> None:
    from serialrepro.chains.agents import Agent
    from serialrepro.chains.particle_chains import particle_chains
    from serialrepro.particles.priors import GaussianMixturePrior

    prior = GaussianMixturePrior([[0.0]], [0.01])
    for name in ALL:
        fam = FAMILIES[name]
        agent = Agent(prior, name, fam.level_for_std(0.05), circular=True)
        if fam.on_circle:
            out = particle_chains(agent, torch.zeros(4, 1), 2)
            assert ((out >= -0.5) & (out < 0.5)).all()
        else:
            with pytest.raises(UserInputError, match="not defined on a circle"):
                particle_chains(agent, torch.zeros(4, 1), 2)


@pytest.fixture
def added_family():
    """A family defined here only: one class, registered by defining it."""
    from serialrepro.families import Gaussian

    class Wide(Gaussian):
        """Gaussian noise whose level is half its displacement std (σ = 2·level)."""

        name = "wide-test"
        description = "a family added in one class"

        def grid_parts(self, d, sigma, y_dims, spacing, target):
            return super().grid_parts(d, 2 * sigma, y_dims, spacing, target)

        def grid_axis_terms(self, d, sigma, spacing):
            return super().grid_axis_terms(d, 2 * sigma, spacing)

        def sample(self, x, sigma, generator=None):
            return super().sample(x, 2 * sigma, generator)

        def log_prob(self, y, x, sigma):
            return super().log_prob(y, x, 2 * sigma)

        def gaussian_variance(self, sigma):
            return (2 * sigma) ** 2

        def displacement_std(self, level):
            return 2 * level

        def level_for_std(self, std):
            return std / 2

    yield FAMILIES["wide-test"]
    del FAMILIES["wide-test"]


def test_a_family_added_in_one_class_is_picked_up_everywhere(added_family, capsys,
                                                             monkeypatch) -> None:
    from serialrepro.experiments.config import expand, parse_config
    from serialrepro.grid import GridSpace, make_kernel, make_prior, simulate
    from serialrepro.grid.cli import family_table
    from serialrepro.schedules import Schedule

    assert get_family("wide-test") is added_family
    row = {r["family"]: r for r in family_table()}["wide-test"]
    assert row["grid"] == "yes" and row["trained"] == "epsilon or sample"
    levels = Schedule("linear", 0.02, 0.04, match_std=True).levels(3, "wide-test")
    assert levels == pytest.approx([0.01, 0.015, 0.02])
    # its grid kernel is the gaussian's at twice the level
    space = GridSpace.torus(16, 1)
    torch.testing.assert_close(make_kernel(space, "wide-test", 0.02).matrix(),
                               make_kernel(space, "gaussian", 0.04).matrix())
    ours = simulate(make_prior("three-modes", GridSpace.torus(16)), "wide-test", [0.01, 0.02],
                    GridSpace.torus(16))
    ref = simulate(make_prior("three-modes", GridSpace.torus(16)), "gaussian", [0.02, 0.04],
                   GridSpace.torus(16))
    assert ours.kl_bits == pytest.approx(ref.kl_bits, rel=1e-12)
    code, out, err = _cli(["simulate", "--noise", "wide-test", "--sigmas", "0.01,0.02",
                           "--grid", "torus:16", "--prior", "three-modes", "--json"],
                          capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out)["kl_bits"] == pytest.approx(ref.kl_bits, abs=1e-6)
    cells = expand(parse_config({"name": "t", "sweeps": [{
        "noise": "wide-test", "T": 3, "grid": "torus:16",
        "schedule": {"kind": "linear", "start": 0.02, "end": 0.04, "match_std": True}}]}))
    assert list(cells[0].sigmas) == pytest.approx([0.01, 0.015, 0.02])


def test_only_a_class_that_names_itself_registers() -> None:
    from serialrepro.families import Gaussian

    before = dict(FAMILIES)

    class Variant(Gaussian):  # inherits the name "gaussian": not a new family
        pass

    assert FAMILIES == before and type(FAMILIES["gaussian"]) is Gaussian
    with pytest.raises(TypeError, match="two noise families are named 'laplace'"):
        class Twin(Gaussian):
            name = "laplace"
    assert FAMILIES == before


def test_no_code_outside_families_py_tests_a_family_by_name_or_type():
    """What code needs to know about a family is an attribute of the family: no comparison
    of a ``.name`` with a family's name, no ``startswith`` on one, no isinstance against a
    family class anywhere else in ``src`` (a new family is then picked up everywhere)."""
    import ast
    from abc import ABC
    from pathlib import Path

    from serialrepro import families

    names = set(families.FAMILIES) | set(families.FAMILY_ALIASES)
    prefixes = {n.split("-")[0] for n in names}
    classes = {cls.__name__ for f in families.FAMILIES.values() for cls in type(f).__mro__
               if cls not in (object, ABC)}
    src = Path(families.__file__).resolve().parent
    bad = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "families.py" and path.parent == src:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(src)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) \
                    and node.left.attr == "name":
                consts = [c for cmp in node.comparators for c in ast.walk(cmp)
                          if isinstance(c, ast.Constant) and c.value in names]
                if consts:
                    bad.append(f"{where}: .name compared with {consts[0].value!r}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "startswith" and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value in prefixes | names:
                bad.append(f"{where}: startswith({node.args[0].value!r})")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "isinstance" and len(node.args) == 2:
                kinds = [n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
                         for n in ast.walk(node.args[1])]
                if set(kinds) & classes:
                    bad.append(f"{where}: isinstance against {sorted(set(kinds) & classes)}")
    assert not bad, "family tested by name or type outside families.py:\n" + "\n".join(bad)
