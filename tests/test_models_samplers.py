"""The paper's serial-reproduction step on a network (sampler ``serial``), held to closed forms.

Data N(μ0, s0²) in 1-D under the gaussian variance-preserving process: every marginal is
q_t = N(√ᾱ_t μ0, v_t), v_t = ᾱ_t s0² + 1 − ᾱ_t, and the optimal denoiser is closed form,
E[x0 | x_t] = μ0 + g_t (x_t − √ᾱ_t μ0), g_t = √ᾱ_t s0² / v_t (the test double
:class:`Denoiser`). Every step of every sampler is then affine-Gaussian, so the law of the
samples is known exactly:

* the exact serial-reproduction step r_{t−1} = Post_t K_t r_t (the grid engine's ``serial``)
  with the true posterior q(x_{t−1} | x_t) = N(m_{t−1} + k (x̃ − m_t), v_{t−1}(1 − k√α_t)),
  k = √α_t v_{t−1} / v_t;
* the network's version (x̂_0 the posterior mean plugged into the DDPM posterior): the same
  mean map (μ̃ is affine in x_0, so μ̃(x, E[x0|x]) = E[x_{t−1}|x]), with variance σ̃²_t
  instead of σ̃²_t + A_t² Var(x0 | x_t);
* DDPM's ancestral step: the same without the perception x̃ ~ K_t(· | x_t).
"""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.models.diffusion import Diffusion
from serialrepro.models.reconstruct import NetworkReconstructor
from serialrepro.models.samplers import SAMPLERS, get_sampler
from serialrepro.reconstruction import Reconstructor, serial

MU0, S0SQ = 0.6, 0.09
N = 20000


class Denoiser:
    """The Bayes-optimal ε-prediction for data N(μ0, s0²): ε̂ = (x − √ᾱ E[x0|x]) / √(1−ᾱ)."""

    def __init__(self, process: Diffusion, mu0: float = MU0, s0sq: float = S0SQ):
        self.abar = process.alphas_cumprod  # of the training schedule: indexed by t
        self.mu0, self.s0sq = mu0, s0sq

    def __call__(self, x, t):
        ab = self.abar.to(dtype=x.dtype, device=x.device)[t.to(self.abar.device)]
        ab = ab.reshape(-1, *([1] * (x.ndim - 1)))
        vt = ab * self.s0sq + 1 - ab
        x0 = self.mu0 + ab.sqrt() * self.s0sq / vt * (x - ab.sqrt() * self.mu0)
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()


def _process(stride: int) -> tuple[Diffusion, Denoiser]:
    full = Diffusion.create("gaussian", "linear", 1000)
    return full.respace(stride), Denoiser(full)


def closed_form(process: Diffusion, kind: str, m: float = 0.0, v: float = 1.0):
    """(mean, variance) of the final samples from N(m, v) for ``kind`` in ``exact-serial``,
    ``network-serial``, ``ddpm`` (module docstring)."""
    for t in sorted(process.timesteps.tolist(), reverse=True):
        i = int(process.index_of(t))
        b, a = float(process.schedule.betas[i]), float(process.schedule.alphas[i])
        ab = float(process.schedule.alphas_cumprod[i])
        abp = float(process.schedule.alphas_cumprod_prev[i])
        vt, vp = ab * S0SQ + 1 - ab, abp * S0SQ + 1 - abp
        big_a = math.sqrt(abp) * b / (1 - ab)  # DDPM eq. 7: the coefficient of x0 in μ̃
        big_b = math.sqrt(a) * (1 - abp) / (1 - ab)
        g = math.sqrt(ab) * S0SQ / vt
        slope, shift = big_a * g + big_b, big_a * (MU0 - g * math.sqrt(ab) * MU0)
        if kind != "ddpm":  # perceive: x̃ = √α x + √(1−α) ε
            m, v = math.sqrt(a) * m, a * v + 1 - a
        noise = vp * (1 - slope * math.sqrt(a)) if kind == "exact-serial" \
            else b * (1 - abp) / (1 - ab)
        m, v = slope * m + shift, slope * slope * v + noise
    return m, v


def _moments(samples):
    x = samples.reshape(-1)
    return float(x.mean()), float(x.var())


def _within(got, want, n=N, z=5.0):
    """Mean and variance of n draws agree with (mean, var) to z standard errors."""
    (gm, gv), (wm, wv) = got, want
    assert abs(gm - wm) < z * math.sqrt(wv / n), (got, want)
    assert abs(gv - wv) < z * wv * math.sqrt(2 / n), (got, want)


@pytest.mark.parametrize("stride", [1, 10])
def test_serial_sampler_has_the_closed_form_law_of_its_step(stride):
    process, den = _process(stride)
    x = torch.randn(N, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = get_sampler("serial")(den, x, process, torch.Generator().manual_seed(1)).samples
    _within(_moments(out), closed_form(process, "network-serial"))
    # its mean map is the exact serial-reproduction step's (module docstring)
    exact = closed_form(process, "exact-serial")
    assert abs(_moments(out)[0] - exact[0]) < 5 * math.sqrt(exact[1] / N)


def test_serial_sampler_tracks_exact_serial_reproduction_with_many_steps():
    """With 1000 steps the variance the posterior-mean plug-in misses, Σ A_t² Var(x0|x_t)
    carried through the chain, is under 2 % of the exact step's: the network's ``serial``
    is the paper's step, and so it keeps that step's lag behind the moving targets q_{t−1}
    (mean below μ0, variance above s0²)."""
    process, _ = _process(1)
    net, exact = closed_form(process, "network-serial"), closed_form(process, "exact-serial")
    assert net[0] == pytest.approx(exact[0], rel=1e-12)
    assert net[1] == pytest.approx(exact[1], rel=0.02)
    assert exact[0] < MU0 - 0.03 and exact[1] > S0SQ * 1.3  # the lag (docs/design.md §1)


def test_serial_differs_from_ddpm_as_theory_says():
    """DDPM's ancestral step from p_F = q_T reaches N(μ0, ·) (its mean map is exact); the
    serial step lags: means differ by ≈ 0.057, about 20 standard errors."""
    process, den = _process(1)
    x = torch.randn(N, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    ser = _moments(get_sampler("serial")(den, x, process, gen).samples)
    anc = _moments(get_sampler("ddpm")(den, x, process, torch.Generator().manual_seed(1)).samples)
    _within(anc, closed_form(process, "ddpm"))
    _within(ser, closed_form(process, "network-serial"))
    assert anc[0] == pytest.approx(MU0, abs=5 * math.sqrt(anc[1] / N))
    assert abs(ser[0] - anc[0]) > 10 * math.sqrt(ser[1] / N)
    assert ser[1] > 1.5 * anc[1]


def test_serial_is_the_interface_step_over_the_network_reconstructor():
    process, den = _process(100)
    recon = NetworkReconstructor(den, process)
    assert isinstance(recon, Reconstructor)
    x = torch.randn(6, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    steps = sorted(process.timesteps.tolist(), reverse=True)
    assert steps[0] == 900 and steps[-1] == 0
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    loop = x
    for t in steps:  # serial = reconstruct ∘ perceive, one generator drawn in that order
        loop = serial(recon, loop, t, gen_a)
    torch.testing.assert_close(get_sampler("serial")(den, x, process, gen_b).samples, loop,
                               rtol=0, atol=0)
    # and it is not the ancestral (denoise-only) loop
    anc = x
    for t in steps:
        anc = recon.reconstruct(anc, t, torch.Generator().manual_seed(5))
    assert not torch.allclose(anc, loop)


@pytest.mark.parametrize("family", ["gaussian", "mask"])
def test_perceive_is_one_forward_step_of_the_family(family):
    """K_t composes with q(x_{t−1} | x0) into q(x_t | x0): from a constant x0 = 1, after
    perceiving a draw at level t−1, the gaussian has mean √ᾱ_t and variance 1 − ᾱ_t; the
    mask keeps a coordinate with probability ᾱ_t."""
    process = Diffusion.create(family, "linear", 1000).respace(50)
    recon = NetworkReconstructor(lambda x, t: x, process)
    t = 500
    i = int(process.index_of(t))
    abp = float(process.schedule.alphas_cumprod_prev[i])
    ab = float(process.schedule.alphas_cumprod[i])
    gen = torch.Generator().manual_seed(0)
    x0 = torch.ones(N, 4, dtype=torch.float64)
    noise = process.family.sample_noise(x0.shape, gen, x0.dtype)
    prev = process.family.degrade(x0, torch.tensor(abp, dtype=torch.float64), noise)
    y = recon.perceive(prev, t, gen)
    if family == "gaussian":
        _within(_moments(y), (math.sqrt(ab), 1 - ab), n=y.numel())
    else:
        kept = float((y == 1).double().mean())
        assert kept == pytest.approx(ab, abs=5 * math.sqrt(ab * (1 - ab) / y.numel()))


def test_serial_is_seeded_respects_per_sample_generators_and_follows_the_input():
    process, den = _process(100)
    fn = SAMPLERS["serial"]
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = fn(den, x, process, torch.Generator().manual_seed(3)).samples
    b = fn(den, x, process, torch.Generator().manual_seed(3)).samples
    c = fn(den, x, process, torch.Generator().manual_seed(4)).samples
    assert torch.equal(a, b) and not torch.equal(a, c)
    full = fn(den, x, process, [torch.Generator().manual_seed(10 + i) for i in range(4)]).samples
    part = fn(den, x[1:3], process, [torch.Generator().manual_seed(11),
                                     torch.Generator().manual_seed(12)]).samples
    torch.testing.assert_close(full[1:3], part, rtol=0, atol=0)  # elementwise denoiser
    x32 = x.float()
    out32 = fn(den, x32, process, torch.Generator().manual_seed(3)).samples
    assert out32.dtype == torch.float32 and out32.device == x32.device
    if torch.cuda.is_available():
        xc = x.cuda()
        out = fn(den, xc, process, torch.Generator(device="cuda").manual_seed(3)).samples
        assert out.device == xc.device and out.dtype == xc.dtype
