"""Reproduction, chains and samplers: invariance, detailed balance, convergence, AR(1),
samplers against data, FFT against dense for whole simulations, channel information."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.families import GRID, family_names
from serialrepro.grid import (
    GridSpace,
    ancestral_sampler,
    forward_marginals,
    from_samples,
    gaussian_mixture,
    kl_bits,
    make_kernel,
    posterior,
    reproduce,
    reproduce_transpose,
    serial_reproduction_sampler,
    simulate,
    three_modes,
)
from serialrepro.grid.scores import EPS

ALL = sorted(family_names(GRID))
#: a level per family at which a chain mixes within a few dozen steps on a small grid
LEVEL = {name: (0.35 if name.startswith("fade") else 0.08) for name in ALL}
SMALL = [GridSpace.paper(0.1), GridSpace.torus(8, 2)]


def _priors(space: GridSpace) -> list[torch.Tensor]:
    """A smooth prior positive everywhere and a histogram prior with empty cells."""
    gen = torch.Generator().manual_seed(3)
    pts = 0.15 * torch.randn(40, space.dims, generator=gen, dtype=torch.float64)
    return [three_modes(space, mix=0.05), from_samples(space, pts)]


def _matrix_of(op, space: GridSpace) -> torch.Tensor:
    """Dense matrix of a linear map on grid distributions (columns = images of e_j)."""
    eye = torch.eye(space.size, dtype=torch.float64).reshape(space.size, *space.shape)
    return op(eye).reshape(space.size, space.size).T


@pytest.mark.parametrize("space", SMALL, ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_reproduction_leaves_its_prior_invariant_with_detailed_balance(
    name: str, space: GridSpace
) -> None:
    kernel = make_kernel(space, name, LEVEL[name])
    for q in _priors(space):
        assert torch.allclose(reproduce(q, kernel, q), q, rtol=0, atol=1e-14)
        s = _matrix_of(lambda p, q=q: reproduce(p, kernel, q), space)
        qf = q.reshape(-1)
        # S is a Markov kernel on the prior's support ...
        support = qf > 0
        assert (s >= 0).all()
        assert torch.allclose(s.sum(0)[support], torch.ones(int(support.sum()),
                                                            dtype=torch.float64), atol=1e-12)
        # ... reversible with respect to q: q(x) S(x'|x) = q(x') S(x|x')
        flow = s * qf.unsqueeze(0)
        assert torch.allclose(flow, flow.T, rtol=0, atol=1e-14)
        # reproduce_transpose is Sᵀ (FFT round-off ~1e−17 is divided by K q, which the
        # histogram prior makes as small as 1e−7 on the fade kernels)
        st = _matrix_of(lambda v, q=q: reproduce_transpose(v, kernel, q), space)
        assert torch.allclose(st, s.T, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_posterior_inverts_the_forward_step(name: str) -> None:
    """Post(K q) = q: the Bayes-optimal inverse of one step recovers the marginal."""
    space = GridSpace.torus(10, 2)
    q = three_modes(space)
    kernel = make_kernel(space, name, LEVEL[name])
    assert torch.allclose(posterior(kernel.apply(q), kernel, q), q, rtol=0, atol=1e-14)
    # the ancestral step is the posterior alone
    p = torch.rand(space.shape, dtype=torch.float64)
    assert torch.equal(reproduce(p, kernel, q, renoise=False), posterior(p, kernel, q))


@pytest.mark.parametrize("name", ALL)
def test_fixed_kernel_chain_converges_to_its_prior(name: str) -> None:
    space = GridSpace.torus(12, 2)
    q = three_modes(space, mix=0.05)
    kernel = make_kernel(space, name, LEVEL[name])
    point = torch.zeros(space.shape, dtype=torch.float64)
    point[2, 9] = 1.0
    for p in (point, space.uniform()):
        tv = []
        for _ in range(100):
            p = reproduce(p, kernel, q)
            assert abs(p.sum().item() - 1) < 1e-12 and p.min() >= 0
            tv.append(0.5 * (p - q).abs().sum().item())
        # a Markov kernel never increases the distance to its stationary law
        assert all(b <= a + 1e-15 for a, b in zip(tv, tv[1:], strict=False))
        # ... and shrinks geometrically towards 0
        assert tv[-1] < 1e-4 * max(tv[0], 1e-2)
        assert tv[-1] < 0.3 * tv[-21] or tv[-1] < 1e-12  # (or at round-off)


def test_gaussian_chain_follows_the_ar1_closed_form() -> None:
    """docs/design.md §1: prior N(μ0, s0²), noise N(x, s²), λ = s0²/(s0² + s²); a reproduction is
    x' = (1 − λ)μ0 + λx + e, e ~ N(0, λ(1 + λ)s²): means approach μ0 as λⁿ and
    Var' = λ²Var + λ(1 + λ)s², stationary at s0²."""
    space = GridSpace.torus(1024, 1)  # h ≈ 0.001 ≪ s, s0: discretisation error negligible
    mu0, s0, s = 0.05, 0.06, 0.04  # the prior's tails at ±0.5 are 7.5 s0 away: no wrap
    lam = s0**2 / (s0**2 + s**2)
    q = gaussian_mixture(space, [[mu0]], [s0**2])
    x = space.coords()
    kernel = make_kernel(space, "gaussian", s)
    p = torch.zeros(space.shape, dtype=torch.float64)
    start = 768  # x0 = 0.25
    p[start] = 1.0
    mean, var = x[start].item(), 0.0
    for _ in range(40):
        p = reproduce(p, kernel, q)
        mean = (1 - lam) * mu0 + lam * mean
        var = lam**2 * var + lam * (1 + lam) * s**2
        m_grid = (p * x).sum().item()
        v_grid = (p * (x - m_grid) ** 2).sum().item()
        assert abs(m_grid - mean) < 1e-9
        assert abs(v_grid - var) < 1e-9
    assert abs(mean - mu0) < 1e-6 and abs(var - s0**2) < 1e-8  # the closed form's own limit
    # the grid chain itself has reached the stationary law N(μ0, s0²)
    assert abs(m_grid - mu0) < 1e-6 and abs(v_grid - s0**2) < 1e-8


def test_closed_form_variance_recursion_by_monte_carlo() -> None:
    """The recursion's e ~ N(0, λ(1 + λ)s²) checked by simulating the two Gaussian draws."""
    gen = torch.Generator().manual_seed(7)
    mu0, s0, s, x = 0.0, 1.0, 0.7, 2.0
    lam = s0**2 / (s0**2 + s**2)
    y = x + s * torch.randn(400_000, generator=gen, dtype=torch.float64)
    # the posterior of x given y under the prior N(μ0, s0²) is N(λy + (1 − λ)μ0, λs²)
    xp = lam * y + (1 - lam) * mu0 + math.sqrt(lam) * s * torch.randn(
        400_000, generator=gen, dtype=torch.float64)
    assert abs(xp.mean().item() - ((1 - lam) * mu0 + lam * x)) < 0.01
    assert abs(xp.var().item() / (lam * (1 + lam) * s**2) - 1) < 0.01


def test_samplers_approach_the_data_as_t_grows() -> None:
    """Small fixed per-step noise: the more steps, the closer q_T is to p_F and r_0 to data.

    Ancestral: r_0 and q_0 are the same Markov chain applied to p_F and q_T, so the
    data-processing inequality bounds KL(r_0‖q_0) by KL(p_F‖q_T) → 0. Serial: the re-noising
    step adds a bias, so KL falls to a small floor far below where it starts."""
    space = GridSpace.torus(32, 1)
    data = gaussian_mixture(space, [[-0.2], [0.15]], [0.002, 0.001])
    u = space.uniform()
    start_kl = kl_bits(u, data).item()
    anc, ser = [], []
    for T in (4, 16, 64, 256):
        a = simulate(data, "gaussian", [0.04] * T, space, step="ancestral", info=False)
        s = simulate(data, "gaussian", [0.04] * T, space, step="serial", info=False)
        bound = kl_bits(u, a.marginals[-1], eps=0.0).item()
        assert kl_bits(a.reverse[0], data, eps=0.0).item() <= bound + 1e-12
        anc.append(a.kl_bits)
        ser.append(s.kl_bits)
    assert all(b < a for a, b in zip(anc, anc[1:], strict=False)) and anc[-1] < 1e-12
    assert all(b < a for a, b in zip(ser, ser[1:], strict=False))
    assert ser[-1] < 0.02 * start_kl


def test_trajectory_records_and_callback() -> None:
    space = GridSpace.torus(8, 2)
    data = three_modes(space)
    kernels = [make_kernel(space, "gaussian", s) for s in (0.02, 0.05, 0.1)]
    marg = forward_marginals(data, kernels)
    assert marg.shape == (4, 8, 8)
    assert torch.allclose(marg[2], kernels[1].apply(marg[1]))
    assert torch.allclose(marg.sum(dim=(1, 2)), torch.ones(4, dtype=torch.float64))
    seen: list[int] = []
    traj = serial_reproduction_sampler(kernels, marg, space.uniform(),
                                       callback=lambda t, r: seen.append(t))
    assert seen == [2, 1, 0] and traj.states.shape == (4, 8, 8) and traj.step == "serial"
    assert torch.equal(traj.states[3], space.uniform())
    assert torch.allclose(traj.final, reproduce(traj.states[1], kernels[0], marg[0]))
    assert traj.levels == [0.02, 0.05, 0.1]
    anc = ancestral_sampler(kernels, marg, marg[3])
    # started from q_T, the exact ancestral sampler retraces the forward marginals
    assert torch.allclose(anc.states, marg, atol=1e-14)
    with pytest.raises(UserInputError, match="need 4 marginals"):
        serial_reproduction_sampler(kernels, marg[:3], space.uniform())


@pytest.mark.parametrize("space", [GridSpace.torus(16, 1), GridSpace.torus(16, 2),
                                   GridSpace.torus(6, 3)], ids=lambda s: s.label)
@pytest.mark.parametrize("name", ALL)
def test_simulation_scores_fft_equal_dense(name: str, space: GridSpace) -> None:
    data = gaussian_mixture(space, [[0.1] * space.dims, [-0.2] * space.dims], [0.004, 0.008],
                            mix=0.1)
    levels = [0.0, 0.2, 0.5, 0.9] if name.startswith("fade") else [0.02, 0.04, 0.07, 0.1]
    for step in ("serial", "ancestral"):
        dense = simulate(data, name, levels, space, step=step, backend="dense")
        fft = simulate(data, name, levels, space, step=step, backend="fft")
        assert (dense.backend, fft.backend) == ("dense", "fft")
        for key in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity"):
            assert abs(getattr(dense, key) - getattr(fft, key)) < 1e-10, key
        for a, b in zip(dense.mutual_information_bits + dense.conditional_entropy_bits,
                        fft.mutual_information_bits + fft.conditional_entropy_bits, strict=True):
            assert abs(a - b) < 1e-9
        assert torch.allclose(dense.reverse, fft.reverse, rtol=0, atol=1e-12)


@pytest.mark.parametrize("step", ["serial", "ancestral"])
@pytest.mark.parametrize("name", ["gaussian", "bimodal", "fade-fixed"])
def test_stationarity_against_explicit_reverse_matrices(name: str, step: str) -> None:
    """docs/design.md §2: v = r_{T−1}/(r_{T−2} + ε) pulled back by S_tᵀ, t = T−1..1, S_t built as
    explicit M×M matrices from the reverse step; score ‖v − 1‖₂/√M."""
    space = GridSpace.paper(0.125)
    data = three_modes(space)
    levels = [0.1, 0.3, 0.6, 1.0] if name.startswith("fade") else [0.03, 0.05, 0.08, 0.12]
    res = simulate(data, name, levels, space, step=step)
    kernels = [make_kernel(space, name, s) for s in levels]
    T = len(levels)
    r, q = res.reverse, res.marginals
    v = (r[T - 1] / (r[T - 2] + EPS)).reshape(-1)
    for t in range(T - 1, 0, -1):
        s_t = _matrix_of(lambda p, t=t: reproduce(p, kernels[t - 1], q[t - 1],
                                                  renoise=step == "serial"), space)
        v = s_t.T @ v
    expected = (torch.linalg.vector_norm(v - 1) / math.sqrt(space.size)).item()
    assert abs(res.stationarity - expected) < 1e-12
    assert res.complexity_bits == pytest.approx(
        max(kl_bits(q[t], q[t + 1]).item() for t in range(1, T)), abs=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_channel_information_against_the_joint_distribution(name: str) -> None:
    """I(X;Y) = Σ q(x)K(y|x) log₂(K(y|x)/p(y)) ≥ 0 and H(Y|X) = Σ q(x) H(K(·|x)), from the
    explicit joint on a small grid; for circulant kernels H(Y|X) is the column entropy."""
    space = GridSpace.torus(8, 2)
    data = three_modes(space)
    levels = [0.2, 0.6] if name.startswith("fade") else [0.03, 0.09]
    res = simulate(data, name, levels, space, backend="fft")
    for t, sigma in enumerate(levels, start=1):
        k = make_kernel(space, name, sigma, "dense").matrix()
        q = res.marginals[t - 1].reshape(-1)
        joint = k * q.unsqueeze(0)
        py = joint.sum(1)
        mask = joint > 0
        ratio = k / py.unsqueeze(1)
        mi = (joint[mask] * torch.log2(ratio[mask])).sum().item()
        h_cond = -(joint[mask] * torch.log2(k[mask])).sum().item()
        assert res.mutual_information_bits[t - 1] == pytest.approx(mi, abs=1e-10)
        assert res.conditional_entropy_bits[t - 1] == pytest.approx(h_cond, abs=1e-10)
        assert mi >= 0
        if not name.startswith("fade"):
            col = k[:, 0][k[:, 0] > 0]
            assert h_cond == pytest.approx(-(col * torch.log2(col)).sum().item(), abs=1e-10)


def test_simulate_bad_input_and_short_schedules() -> None:
    space = GridSpace.torus(8, 2)
    data = three_modes(space)
    with pytest.raises(UserInputError, match="'sideways'.*serial, ancestral"):
        simulate(data, "gaussian", [0.1], space, step="sideways")
    with pytest.raises(UserInputError, match="does not match grid"):
        simulate(data[:4], "gaussian", [0.1], space)
    with pytest.raises(UserInputError, match="non-decreasing"):
        simulate(data, "gaussian", [0.2, 0.1], space)
    with pytest.raises(UserInputError, match="empty"):
        simulate(data, "gaussian", [], space)
    one = simulate(data, "gaussian", [0.1], space)
    assert one.complexity_bits is None and one.stationarity is None and one.T == 1
    out = one.scores()
    assert out["grid_points"] == 64 and out["backend"] == "fft" and out["T"] == 1


@pytest.mark.parametrize("name", ["gaussian", "uniform", "laplace", "fade-uniform"])
def test_fft_stays_sane_when_the_data_has_empty_regions(name: str) -> None:
    """Data with exact zeros (no uniform mix): K q underflows far from the data, where the
    FFT returns ±1e−17 noise. Dividing by that noise once gave arbitrary mass (a
    stationarity of 20 where dense gives 0.56); below its round-off level the FFT path
    now treats y as impossible, so distributions stay proper and KL stays close to dense."""
    space = GridSpace.torus(32, 2)
    data = torch.zeros(space.shape, dtype=torch.float64)
    data[10:14, 10:20] = 1.0
    data /= data.sum()
    levels = (torch.linspace(0.0, 1.0, 10) if name.startswith("fade")
              else torch.linspace(0.01, 0.05, 10)).tolist()
    dense = simulate(data, name, levels, space, backend="dense", info=False)
    fft = simulate(data, name, levels, space, backend="fft", info=False)
    for res in (dense, fft):
        assert torch.isfinite(res.reverse).all() and res.reverse.min() >= 0
        # mass the prior cannot explain is dropped, never created (up to FFT round-off)
        assert (res.reverse.sum(dim=(1, 2)) <= 1 + 1e-7).all()
    assert abs(dense.kl_bits - fft.kl_bits) < 1e-4
    assert (dense.reverse - fft.reverse).abs().max() < 1e-6
    assert fft.stationarity < 2.0


def test_channel_information_on_large_grids_without_quadratic_cost() -> None:
    """Above INFO_MAX_POINTS the FFT path reports information only where columns share one
    entropy (circulant kernels, fade to uniform folded into its circulant part); fade to a
    fixed target would need O(M²) and reports None."""
    from serialrepro.grid.process import INFO_MAX_POINTS

    space = GridSpace.torus(72, 2)
    assert space.size > INFO_MAX_POINTS
    data = three_modes(space)
    uni = simulate(data, "fade-uniform", [0.2, 0.5], space)
    fixed = simulate(data, "fade-fixed", [0.2, 0.5], space)
    assert make_kernel(space, "fade-uniform", 0.2).target is None
    assert all(v is not None and v >= 0 for v in uni.mutual_information_bits)
    assert fixed.mutual_information_bits == [None, None]
    assert fixed.conditional_entropy_bits == [None, None]


# -- issue 11: keep, memory model, gradients in σ, devices --------------------------------

def _mixture(space: GridSpace) -> torch.Tensor:
    return gaussian_mixture(space, [[0.1] * space.dims, [-0.2] * space.dims], [0.004, 0.008],
                            mix=0.1)


@pytest.mark.parametrize("step", ["serial", "ancestral"])
def test_keep_returns_the_asked_steps_and_the_same_scores(step: str) -> None:
    space = GridSpace.torus(16, 2)
    data = _mixture(space)
    levels = torch.linspace(0.02, 0.1, 7).tolist()
    full = simulate(data, "bimodal", levels, space, step=step, keep="all")
    assert full.kept_steps is None and full.reverse.shape[0] == 8
    want = {"none": [], "final": [0, 7], "every:3": [0, 3, 6, 7], "every:10": [0, 7]}
    for keep, steps in want.items():
        res = simulate(data, "bimodal", levels, space, step=step, keep=keep)
        assert res.kept_steps == steps and res.reverse.shape[0] == len(steps)
        for key in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity"):
            assert getattr(res, key) == getattr(full, key), (keep, key)
        assert res.mutual_information_bits == full.mutual_information_bits
        assert torch.equal(res.final, full.reverse[0])
        for t in steps:
            assert torch.equal(res.reverse_at(t), full.reverse[t])
            assert torch.equal(res.marginal_at(t), full.marginals[t])
        if 1 not in steps:
            with pytest.raises(UserInputError, match="t=1 was not kept"):
                res.reverse_at(1)
    # auto keeps every step while both trajectories fit in KEEP_ALL_BYTES
    assert simulate(data, "bimodal", levels, space, step=step).kept_steps is None


@pytest.mark.parametrize("bad", ["some", "every:0", "every:x", "every:", "", "al"])
def test_bad_keep_is_one_line_naming_the_choices(bad: str) -> None:
    from serialrepro.grid.process import parse_keep

    with pytest.raises(UserInputError) as err:
        parse_keep(bad, 10)
    msg = str(err.value)
    assert repr(bad) in msg and "every:K" in msg and "final" in msg and "\n" not in msg
    with pytest.raises(UserInputError):
        simulate(three_modes(GridSpace.torus(8)), "gaussian", [0.1, 0.2], GridSpace.torus(8),
                 keep=bad)


def test_keep_auto_switches_to_final_when_trajectories_are_large() -> None:
    from serialrepro.grid.process import KEEP_ALL_BYTES, parse_keep

    space = GridSpace.torus(256, 2)
    T = KEEP_ALL_BYTES // (2 * 8 * space.size)  # the largest T that still keeps all
    assert parse_keep("auto", T - 1, space) is None
    assert parse_keep("auto", T + 1, space) == [0, T + 1]


def test_memory_model_counts_levels_held() -> None:
    from serialrepro.grid.process import WORK_LEVELS, simulation_bytes

    space = GridSpace.torus(64, 2)
    level = 8 * space.size
    none = [simulation_bytes(space, T, "none") for T in (10, 20)]
    full = [simulation_bytes(space, T, "all") for T in (10, 20)]
    # marginals are always held (the reverse pass reads them); "all" adds T + 1 states
    kern = 10 * (space.size // 64) * 33 * 16
    assert none[1] - none[0] == 10 * level + kern
    assert full[0] - none[0] == 11 * level
    assert none[0] == (11 + WORK_LEVELS) * level + kern


def test_memory_model_bounds_the_measured_peak() -> None:
    """In a fresh process: the peak RSS a simulation adds lies between the marginals it
    must hold and the model's estimate (plus allocator slack)."""
    import json
    import subprocess
    import sys

    code = """
import json, torch
torch.set_num_threads(1)
from serialrepro.grid import GridSpace, simulate, three_modes
from serialrepro.grid.process import simulation_bytes

def status(key):  # this process's own counters (ru_maxrss would include the parent's)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))

space = GridSpace.torus(128, 2)
data = three_modes(space)
levels = torch.linspace(0.01, 0.05, 300).tolist()
simulate(data, "gaussian", levels[:3], space)
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak to the current size
    before = status("VmRSS:")
except OSError:
    before = status("VmHWM:")
res = simulate(data, "gaussian", levels, space, keep="none")
print(json.dumps({"grew": status("VmHWM:") - before,
                  "model": simulation_bytes(space, 300, "none"),
                  "marginals": 301 * 8 * space.size, "kept": res.reverse.shape[0]}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["kept"] == 0
    assert 0.8 * got["marginals"] <= got["grew"] <= got["model"] + (24 << 20), got


def _finite_difference(fn, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    out = []
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e[i] = h
        out.append((fn(x + e) - fn(x - e)) / (2 * h))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("backend", ["fft", "dense"])
@pytest.mark.parametrize("name", ["gaussian", "bimodal", "fade-fixed"])
def test_scores_are_differentiable_in_the_levels(name: str, backend: str) -> None:
    """autograd through the whole simulation (kernels, forward, sampler, pull-back) matches
    central finite differences of the float scores."""
    space = GridSpace.torus(8, 2)
    data = three_modes(space)
    start = [0.2, 0.4, 0.6] if name.startswith("fade") else [0.05, 0.08, 0.12]
    levels = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    res = simulate(data, name, levels, space, backend=backend)
    assert res.sigmas == start
    for key in ("kl_bits", "stationarity", "complexity_bits"):
        (grad,) = torch.autograd.grad(res.score_tensors[key], levels, retain_graph=True)
        fd = _finite_difference(
            lambda x, key=key: getattr(simulate(data, name, x.tolist(), space, backend=backend,
                                                info=False), key), levels.detach())
        assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-7), (key, grad, fd)
        assert float(res.score_tensors[key].detach()) == getattr(res, key)


def test_gradient_matches_between_fft_and_dense() -> None:
    space = GridSpace.torus(8, 2)
    data = _mixture(space)
    grads = []
    for backend in ("fft", "dense"):
        levels = torch.tensor([0.03, 0.06, 0.09], dtype=torch.float64, requires_grad=True)
        res = simulate(data, "laplace", levels, space, backend=backend, keep="none")
        grads.append(torch.autograd.grad(res.score_tensors["kl_bits"], levels)[0])
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["gaussian", "bimodal", "fade-fixed"])
def test_simulation_on_cuda_follows_the_input_and_equals_cpu(name: str) -> None:
    space = GridSpace.torus(32, 2)
    data = _mixture(space)
    levels = [0.1, 0.3, 0.6] if name.startswith("fade") else [0.02, 0.04, 0.07]
    cpu = simulate(data, name, levels, space, keep="all")
    gpu = simulate(data.to("cuda"), name, levels, space, keep="all")
    assert gpu.reverse.device.type == "cuda" and gpu.marginals.device.type == "cuda"
    assert gpu.final.dtype == torch.float64
    for key in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity"):
        assert abs(getattr(cpu, key) - getattr(gpu, key)) < 1e-10, key
    assert torch.allclose(gpu.reverse.cpu(), cpu.reverse, rtol=0, atol=1e-12)


def test_cli_keep_option(capsys, monkeypatch) -> None:
    import json
    import sys

    from serialrepro.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["serialrepro", "simulate", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, capsys.readouterr()

    base = ["--grid", "torus:16", "--sigmas", "0.02:0.06:6", "--json"]
    code, out = run(*base, "--keep", "all")
    assert code == 0
    full = json.loads(out.out)
    code, out = run(*base, "--keep", "every:2")
    assert code == 0
    sparse = json.loads(out.out)
    for key in ("kl_bits", "jsd_bits", "complexity_bits", "stationarity"):
        assert sparse[key] == full[key]
    code, out = run(*base, "--keep", "every:zero")
    assert code == 2 and "every:K" in out.err and "Traceback" not in out.err
    code, out = run(*base, "--keep", "none", "--figure", "x.png")
    assert code == 2 and "needs every step" in out.err
