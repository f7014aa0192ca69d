"""Timestep rules, explicit respacing and the grid-level mapping (serialrepro.models.transfer)."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.models import transfer
from serialrepro.models.diffusion import Diffusion


@pytest.fixture(scope="module")
def process() -> Diffusion:
    return Diffusion.create("gaussian", "linear", 1000)


def _check_rule(ts: list[int], k: int, T: int) -> None:
    assert len(ts) == k
    assert len(set(ts)) == k
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    assert 0 <= ts[-1] and ts[0] <= T - 1


@pytest.mark.parametrize("k", [2, 5, 10, 20, 100])
@pytest.mark.parametrize("rule", ["uniform", "edm", "equal-complexity", "grid-optimal"])
def test_rules_give_k_distinct_descending_timesteps(process, rule, k):
    # grid-like levels: gradual for one grid rule, one dominant step for the other (the
    # dominant step's rounding collides the small ones, which must still come out distinct)
    levels = ([0.015 + 0.001 * i for i in range(k)] if rule == "grid-optimal"
              else [1e-6] * (k - 1) + [1.0])
    ts = transfer.select_timesteps(rule, process, k, levels)
    _check_rule(ts, k, 1000)
    assert ts[0] == 999


def test_uniform_rule_is_evenly_spaced():
    assert transfer.uniform_timesteps(1000, 4) == [999, 666, 333, 0]
    assert transfer.uniform_timesteps(10, 10) == list(range(9, -1, -1))


@pytest.mark.parametrize("stride", [1, 7, 100, 250])
def test_explicit_respacing_equals_uniform_stride(process, stride):
    ts = list(range(0, 1000, stride))[: 1000 // stride]
    mine = transfer.respace_to(process, ts[::-1])
    ref = process.respace(stride)
    assert torch.equal(mine.timesteps, ref.timesteps)
    for name in ("betas", "alphas_cumprod", "alphas_cumprod_prev"):
        a, b = getattr(mine.schedule, name), getattr(ref.schedule, name)
        assert torch.allclose(a, b, rtol=1e-12, atol=0)
    # and both are the formula β'_j = 1 − ᾱ_{τ_j}/ᾱ_{τ_{j−1}} on the training table
    abar = torch.cumprod(1 - process.betas, 0)[ts]
    want = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    assert torch.allclose(mine.schedule.betas, want, rtol=1e-10, atol=1e-15)
    # and it samples: one DDPM step on the explicit process equals the strided one
    x = torch.randn(8, 2, dtype=torch.float64)
    out = torch.randn(8, 2, dtype=torch.float64)
    t = ts[-1]
    a, _ = mine.step(out, t, x, torch.Generator().manual_seed(1))
    b, _ = ref.step(out, t, x, torch.Generator().manual_seed(1))
    assert torch.allclose(a, b)


def test_explicit_respacing_arbitrary_list_telescopes(process):
    ts = [999, 640, 300, 55, 3]
    p = transfer.respace_to(process, ts)
    assert p.timesteps.tolist() == ts and process.num_steps == 1000  # a copy, descending
    # the product of the new alphas is ᾱ at each kept step
    assert torch.allclose(p.schedule.alphas_cumprod, process.alphas_cumprod[sorted(ts)],
                          rtol=1e-12)
    with pytest.raises(UserInputError):
        transfer.respace_to(process, [5, 5, 3])
    with pytest.raises(UserInputError):
        transfer.respace_to(process, [1000, 3])
    with pytest.raises(UserInputError):
        transfer.respace_to(process.respace(10), [900, 0])


def test_mapping_is_monotone_and_hits_the_ends(process):
    c = torch.linspace(0, 1, 501, dtype=torch.float64)
    t = transfer.timestep_of_fraction(process, c)
    assert bool((t[1:] >= t[:-1]).all())
    assert float(t[0]) == 0.0 and float(t[-1]) == 999.0
    # interior points invert u_t / u_{T-1}
    u = transfer.added_variance(process)
    for tt in (10, 400, 998):
        assert float(transfer.timestep_of_fraction(process, u[tt] / u[-1])) == \
            pytest.approx(tt, abs=1e-9)
    # the last grid level always maps to the top timestep; equal levels to equal u steps
    ts = transfer.timesteps_from_levels(process, [0.02] * 5)
    assert ts[0] == 999
    target = torch.tensor([4, 3, 2, 1], dtype=torch.float64) / 5 * u[-1]
    for t_j, want in zip(ts[1:], target, strict=True):
        assert abs(float(u[t_j]) - float(want)) <= float((u[t_j + 1] - u[t_j]).abs()) + 1e-12


def test_level_fractions():
    c = transfer.level_fractions([1.0, 1.0, math.sqrt(2.0)])
    assert torch.allclose(c, torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64))
    with pytest.raises(UserInputError):
        transfer.level_fractions([0.0, 0.0])


def test_edm_timesteps_match_closed_form(process):
    sig = transfer.noise_levels(process)
    k, rho = 10, 7.0
    smin, smax = float(sig[0]), float(sig[-1])
    want = [(smax ** (1 / rho) + i / (k - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            for i in range(k)]
    assert want[0] == pytest.approx(smax) and want[-1] == pytest.approx(smin)
    ts = transfer.edm_timesteps(process, k, rho)
    assert ts[0] == 999 and ts[-1] == 0
    logs = torch.log(sig)
    for t, w in zip(ts, want, strict=True):
        # nearest timestep in log ς (no collisions at k = 10)
        assert t == int((logs - math.log(w)).abs().argmin())


def test_distinct_descending_resolves_collisions():
    assert transfer.distinct_descending([999, 999, 5, 5], 1000) == [999, 998, 5, 4]
    assert transfer.distinct_descending([0, 0, 0], 1000) == [2, 1, 0]


def test_histogram_kl_bits():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, generator=g, dtype=torch.float64) * 0.4
    y = torch.randn(4000, 2, generator=g, dtype=torch.float64) * 0.4
    assert transfer.histogram_kl_bits(x, x) == pytest.approx(0.0, abs=1e-12)
    near = transfer.histogram_kl_bits(x, y)
    far = transfer.histogram_kl_bits(x + 0.5, y)
    assert 0 < near < far


def test_bad_k(process):
    with pytest.raises(UserInputError):
        transfer.uniform_timesteps(1000, 1)
    with pytest.raises(UserInputError):
        transfer.select_timesteps("nope", process, 5)
    with pytest.raises(UserInputError):
        transfer.select_timesteps("grid-optimal", process, 5, [0.1] * 4)


def test_mapping_coordinate_is_minus_log_alpha_bar(process):
    # independent of the module: u_t = Σ_{s≤t} −log(1 − β_s) from the betas, in numpy
    import numpy as np

    betas = process.betas.numpy()
    u = np.cumsum(-np.log1p(-betas))
    assert np.allclose(transfer.added_variance(process).numpy(), u, rtol=1e-12)
    levels = [0.01, 0.02, 0.03, 0.04, 0.05]
    c = np.cumsum(np.square(levels)) / np.sum(np.square(levels))
    want = [int(np.abs(u - cj * u[-1]).argmin()) for cj in c[::-1]]
    got = transfer.timesteps_from_levels(process, levels)
    assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True))
    # for the linear schedule, the first kept step sits where Σβ reaches 1/55 of its total
    assert 100 < got[-1] < 160


def test_grid_levels_use_the_experiments_constraints():
    from serialrepro.experiments.optimal import constraint_spec
    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.space import parse_grid

    space = parse_grid("paper:0.04", 2)
    data = make_prior("swiss-roll", space)
    for kind in ("final-kl", "ends"):
        res = transfer.grid_levels("equal-complexity", 3, constraint=kind)
        assert res["constraint"] == constraint_spec(kind, "gaussian", data, space)
        assert len(res["sigmas"]) == 3
        assert all(a < b for a, b in zip(res["sigmas"], res["sigmas"][1:], strict=False))
    with pytest.raises(UserInputError):
        transfer.grid_levels("linear", 3)
