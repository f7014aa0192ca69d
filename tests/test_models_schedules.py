"""Schedules, add_noise and the DDPM posterior against the DDPM paper's formulas, written
independently here in numpy float64 (Ho et al. 2020, eqs. 4, 6, 7; Nichol & Dhariwal 2021,
eq. 17; improved-diffusion's respacing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.schedules import make_schedule


def ref_linear(T: int) -> np.ndarray:
    return np.array([1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)])


def ref_cosine(T: int) -> np.ndarray:
    def abar(t: float) -> float:
        return math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - abar(i + 1) / abar(i), 0.999) for i in range(T)])


@pytest.mark.parametrize("name,ref", [("linear", ref_linear), ("cosine", ref_cosine)])
def test_schedule_betas_match_the_papers(name, ref):
    s = make_schedule(name, 1000)
    np.testing.assert_allclose(s.betas.numpy(), ref(1000), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), np.cumprod(1 - ref(1000)), atol=1e-12)
    assert s.betas.dtype == torch.float64 and s.timesteps.tolist() == list(range(1000))


def test_cosine_cap_is_hit_at_the_end():
    assert make_schedule("cosine", 1000).betas[-1].item() == pytest.approx(0.999)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 20])
def test_respacing_keeps_marginals_and_counts_floor_T_over_k(k):
    s = make_schedule("linear", 1000)
    r = s.respace(k)
    assert r.num_steps == 1000 // k
    kept = np.arange(1000 // k) * k
    assert r.timesteps.tolist() == kept.tolist()
    ac = np.cumprod(1 - ref_linear(1000))
    np.testing.assert_allclose(r.alphas_cumprod.numpy(), ac[kept], rtol=1e-10)
    prev = np.concatenate([[1.0], ac[kept][:-1]])
    np.testing.assert_allclose(r.betas.numpy(), 1 - ac[kept] / prev, rtol=1e-10, atol=1e-14)


def test_naive_respacing_with_stride_one_is_the_original_schedule():
    s = make_schedule("linear", 1000)
    for r in (s.respace(1, "naive"), Diffusion(  # also through the process
            "gaussian", s).respace(1, "naive").schedule):
        for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "timesteps"):
            assert torch.equal(getattr(r, name), getattr(s, name)), name


@pytest.mark.parametrize("k", [2, 7, 20])
def test_naive_respacing_keeps_the_original_one_step_tables(k):
    r = make_schedule("linear", 1000).respace(k, "naive")
    kept = np.arange(1000 // k) * k
    assert r.num_steps == 1000 // k and r.timesteps.tolist() == kept.tolist()
    betas, ac = ref_linear(1000), np.cumprod(1 - ref_linear(1000))
    np.testing.assert_allclose(r.betas.numpy(), betas[kept], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r.alphas_cumprod.numpy(), ac[kept], rtol=1e-12)
    # the step goes one *original* step down, to ᾱ_{t−1}, not to ᾱ at the previous kept step
    prev_one_step = np.concatenate([[1.0], ac[kept[1:] - 1]])
    np.testing.assert_allclose(r.alphas_cumprod_prev.numpy(), prev_one_step, rtol=1e-12)
    # ... so the tables are no longer one forward process: ∏(1 − β_kept) ≠ ᾱ_kept
    assert np.cumprod(1 - betas[kept])[-1] > 10 * ac[kept][-1]


def test_naive_ddpm_step_is_the_one_step_posterior_of_the_T_step_process():
    full = Diffusion.create("gaussian", "linear", 1000)
    naive, spaced = full.respace(20, "naive"), full.respace(20)
    g = torch.Generator().manual_seed(4)
    xt = torch.randn(5, 3, dtype=torch.float64, generator=g)
    out = torch.randn(5, 3, dtype=torch.float64, generator=g)
    for t in [0, 20, 500, 980]:
        a, a0 = naive.step(out, t, xt, torch.Generator().manual_seed(9))
        b, b0 = full.step(out, t, xt, torch.Generator().manual_seed(9))
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a0, b0, atol=0, rtol=0)  # x̂_0 at the net's level t
        if t > 0:  # recomputed respacing jumps to the previous kept level instead
            c, _ = spaced.step(out, t, xt, torch.Generator().manual_seed(9))
            assert not torch.allclose(c, a)


def test_add_noise_is_ddpm_eq4():
    proc = Diffusion.create("gaussian", "linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 4, 4, dtype=torch.float64, generator=g)
    eps = torch.randn(6, 3, 4, 4, dtype=torch.float64, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    ac = np.cumprod(1 - ref_linear(1000))[t.numpy()][:, None, None, None]
    want = np.sqrt(ac) * x0.numpy() + np.sqrt(1 - ac) * eps.numpy()
    np.testing.assert_allclose(proc.q_sample(x0, t, eps).numpy(), want, atol=1e-6)
    # the generator form draws exactly that noise
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=g1, dtype=x0.dtype)
    torch.testing.assert_close(proc.add_noise_from(x0, t, g2), proc.q_sample(x0, t, noise))
    torch.testing.assert_close(proc.add_noise(x0, noise, t), proc.q_sample(x0, t, noise))


@pytest.mark.parametrize("schedule,stride", [("linear", 1), ("cosine", 1), ("linear", 7)])
def test_posterior_mean_variance_are_ddpm_eqs_6_7(schedule, stride):
    proc = Diffusion.create("gaussian", schedule, 1000).respace(stride)
    ref = ref_linear(1000) if schedule == "linear" else ref_cosine(1000)
    ac_full = np.cumprod(1 - ref)
    kept = np.arange(1000 // stride) * stride
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(5, 2, dtype=torch.float64, generator=g)
    xt = torch.randn(5, 2, dtype=torch.float64, generator=g)
    for i in [0, 1, 5, len(kept) - 1]:
        t = int(kept[i])
        ac, ac_prev = ac_full[t], (ac_full[kept[i - 1]] if i > 0 else 1.0)
        beta = 1 - ac / ac_prev
        mean_ref = (np.sqrt(ac_prev) * beta / (1 - ac)) * x0.numpy() \
            + (np.sqrt(1 - beta) * (1 - ac_prev) / (1 - ac)) * xt.numpy()
        var_ref = (1 - ac_prev) / (1 - ac) * beta
        mean, var = proc.posterior_mean_variance(x0, xt, t)
        np.testing.assert_allclose(mean.numpy(), mean_ref, atol=1e-6)
        np.testing.assert_allclose(var.numpy().ravel(), var_ref, atol=1e-9)


def test_eps_prediction_recovers_x0():
    proc = Diffusion.create("gaussian")
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 8, dtype=torch.float64, generator=g)
    eps = torch.randn(4, 8, dtype=torch.float64, generator=g)
    t = torch.tensor([0, 100, 500, 900])
    xt = proc.q_sample(x0, t, eps)
    torch.testing.assert_close(proc.predict_x0(eps, t, xt), x0, atol=1e-6, rtol=0)


def test_ddim_eta_one_equals_the_ddpm_step():
    """Song et al. 2021: η = 1 has the DDPM posterior's mean and variance (same draw)."""
    proc = Diffusion.create("gaussian", "linear", 1000).respace(4)
    g = torch.Generator().manual_seed(3)
    xt = torch.randn(7, 3, dtype=torch.float64, generator=g)
    out = torch.randn(7, 3, dtype=torch.float64, generator=g)
    for t in [0, 4, 400, 996]:
        a, _ = proc.step(out, t, xt, torch.Generator().manual_seed(9))
        b, _ = proc.ddim_step(out, t, xt, torch.Generator().manual_seed(9), eta=1.0)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_names_list_valid_choices():
    with pytest.raises(UserInputError, match="cosine, linear"):
        make_schedule("quadratic")
    with pytest.raises(UserInputError, match="epsilon, sample, v_prediction"):
        Diffusion.create("gaussian", prediction_type="v")
    with pytest.raises(UserInputError, match="variance-preserving"):
        Diffusion.create("mask", prediction_type="epsilon")
    with pytest.raises(UserInputError, match="1..1000"):
        make_schedule("linear").respace(0)
    with pytest.raises(UserInputError, match="unknown respacing 'lazy'; valid choices: naive, "
                                             "recompute"):
        Diffusion.create("gaussian").respace(2, "lazy")
    with pytest.raises(UserInputError, match="not one of"):
        Diffusion.create("gaussian").respace(3).step(torch.zeros(1, 2), 1, torch.zeros(1, 2))
    with pytest.raises(UserInputError, match="outside 0..999"):
        Diffusion.create("gaussian").respace(3).add_noise(torch.zeros(1, 2), torch.zeros(1, 2),
                                                          1000)


def test_linear_schedule_refuses_t_where_beta_reaches_one():
    """β_T = 20/T: at T ≤ 20 ᾱ reaches 0 (or goes negative) and samples become NaN."""
    assert float(make_schedule("linear", 21).betas.max()) < 1
    for T in (1, 10, 20):
        with pytest.raises(UserInputError, match="more than 20 timesteps"):
            make_schedule("linear", T)
    assert torch.isfinite(make_schedule("cosine", 10).alphas_cumprod).all()
