"""Our DDPM against the ecosystem's reference, diffusers' DDPMScheduler (a dev extra):
schedules, the forward process, and whole strided sampling loops with the same network
and generator."""

from __future__ import annotations

import pytest
import torch

from serialrepro.models.diffusion import Diffusion
from serialrepro.models.networks import make_denoiser
from serialrepro.models.samplers import ddpm_sampler

diffusers = pytest.importorskip("diffusers")

NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _scheduler(schedule: str):
    return diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=NAMES[schedule],
                                   clip_sample=True, clip_sample_range=1.0,
                                   variance_type="fixed_small")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_betas_and_forward_process_match(schedule):
    ours = Diffusion.create("gaussian", schedule, 1000)
    ref = _scheduler(schedule)
    torch.testing.assert_close(ours.betas.double(), ref.betas.double(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.alphas_cumprod.double(), ref.alphas_cumprod.double(),
                               rtol=1e-5, atol=1e-8)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(ours.q_sample(x0, t, noise), ref.add_noise(x0, noise, t),
                               rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("schedule,stride", [("linear", 20), ("cosine", 50)])
def test_strided_ddpm_loop_matches_diffusers(schedule, stride):
    """Respacing recomputes betas for the jumps, as diffusers' step does: same samples."""
    torch.manual_seed(0)
    net = make_denoiser("mlp", (1, 4, 4), hidden=32, depth=1).eval()
    proc = Diffusion.create("gaussian", schedule, 1000, clip_sample=True).respace(stride)
    x = torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    ours = ddpm_sampler(net, x, proc, torch.Generator().manual_seed(2)).samples

    ref = _scheduler(schedule)
    ref.set_timesteps(proc.num_steps)
    assert ref.timesteps.tolist() == sorted(proc.timesteps.tolist(), reverse=True)
    y, g = x.clone(), torch.Generator().manual_seed(2)
    for t in ref.timesteps:
        eps = net(y, torch.full((y.shape[0],), int(t), dtype=torch.long))
        y = ref.step(eps, t, y, generator=g).prev_sample
    # float32 end to end: the cosine schedule's ᾱ near T (~1e−9) costs a few 1e−4 of
    # agreement over 20 jumps; a wrong coefficient or unrecomputed beta differs by O(0.1)
    torch.testing.assert_close(ours, y, rtol=0, atol=2e-3)
