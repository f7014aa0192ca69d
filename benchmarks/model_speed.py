"""Speed of trained-model code on digits: training steps/s, sampling images/s, and the
per-step overhead of our DDPM sampler against reference loops with the same network
(measured in the same run; target ratio ≤ 1.1).

    .venv/bin/python benchmarks/model_speed.py [--threads N] [--device cpu|cuda]

References: the ecosystem's loop, diffusers' ``DDPMScheduler.step`` (a dev extra; skipped
with a note when diffusers is absent), and the textbook loop of Ho et al. (2020,
Algorithm 2) with precomputed coefficients. Every loop is checked to return the same
samples for the same generator before it is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from serialrepro.data import load_dataset
from serialrepro.models.diffusion import Diffusion
from serialrepro.models.losses import diffusion_loss
from serialrepro.models.networks import make_denoiser
from serialrepro.models.samplers import ddpm_sampler


@torch.no_grad()
def reference_ddpm(net, x, process: Diffusion, generator):
    """Ho et al. 2020, Algorithm 2, written out with precomputed per-step coefficients."""
    ac = process.alphas_cumprod.to(x)
    ac_prev = process.alphas_cumprod_prev.to(x)
    betas, alphas = process.betas.to(x), process.alphas.to(x)
    c1 = torch.sqrt(ac_prev) * betas / (1 - ac)
    c2 = torch.sqrt(alphas) * (1 - ac_prev) / (1 - ac)
    sd = torch.sqrt(betas * (1 - ac_prev) / (1 - ac))
    s1, s2 = torch.sqrt(1 - ac), torch.sqrt(ac)
    ts = process.timesteps.tolist()
    tb = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for i in reversed(range(len(ts))):
        eps = net(x, tb.fill_(ts[i]))
        x0 = ((x - s1[i] * eps) / s2[i]).clamp(-1, 1)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = c1[i] * x0 + c2[i] * x + sd[i] * z
    return x


@torch.no_grad()
def diffusers_ddpm(net, x, process: Diffusion, generator):
    """The same strided DDPM loop through diffusers' DDPMScheduler (the ecosystem's reference)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True,
                          clip_sample_range=1.0, variance_type="fixed_small")
    sched.set_timesteps(process.num_steps)
    tb = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for t in sched.timesteps:
        eps = net(x, tb.fill_(int(t)))
        x = sched.step(eps, t, x, generator=generator).prev_sample
    return x


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    print(f"device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    data = load_dataset("digits")
    x_train = data.train.to(dev)

    for kind, opts in (("unet", {"base": 16, "channel_mults": (1, 2)}),
                       ("mlp", {"hidden": 256, "depth": 3})):
        bench(kind, opts, x_train, dev, args.batch, args.repeats)


def bench(kind: str, opts: dict, x_train: torch.Tensor, dev: torch.device, batch: int,
          repeats: int) -> None:
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    net = make_denoiser(kind, (1, 8, 8), **opts).to(dev)
    proc = Diffusion.create("gaussian", "linear", 1000, clip_sample=1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator(device=dev).manual_seed(0)

    def train_steps(n=20):
        for _ in range(n):
            idx = torch.randint(x_train.shape[0], (128,), generator=g, device=dev)
            loss = diffusion_loss(net, proc, x_train[idx], g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()

    train_steps(3)
    t_train = statistics.median(_time(train_steps, repeats)) / 20
    net.eval()
    sp = proc.respace(20)  # 50 steps
    x = torch.randn(batch, 1, 8, 8, device=dev)
    ours = ddpm_sampler(net, x, sp, torch.Generator(device=dev).manual_seed(1)).samples
    refs = {"hand-written": reference_ddpm}
    try:
        import diffusers  # noqa: F401

        refs = {"diffusers": diffusers_ddpm, **refs}
    except ImportError:
        print("  (diffusers not installed: pip install -e '.[dev]' adds it)")
    for name, loop in refs.items():
        got = loop(net, x, sp, torch.Generator(device=dev).manual_seed(1))
        # the hand-written loop does the same float32 arithmetic; diffusers' differs in
        # rounding order (measured ≤ 2e-4 over 50 steps)
        tol = 1e-3 if name == "diffusers" else 1e-4
        assert torch.allclose(ours, got, atol=tol), (name, float((ours - got).abs().max()))

    def timed(loop):
        def run():
            loop(net, x, sp, torch.Generator(device=dev).manual_seed(1))
            sync()
        return run

    loops = {"ours": ddpm_sampler_loop, **refs}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):  # interleaved, so load changes hit every loop alike
        for name, loop in loops.items():
            times[name] += _time(timed(loop), 1)
    med = {name: statistics.median(v) for name, v in times.items()}
    n_params = sum(p.numel() for p in net.parameters())
    print(f"[{kind}, {n_params} parameters]")
    print(f"  training: {1 / t_train:8.1f} steps/s (batch 128)")
    mo = med["ours"]
    print(f"  sampling: {batch / mo * sp.num_steps / 1000:8.2f} images/s at 1000 steps,"
          f" {batch / mo:8.1f} images/s at {sp.num_steps} steps (batch {batch})")
    for name in refs:
        print(f"  per step: ours {1e3 * mo / sp.num_steps:.3f} ms, {name}"
              f" {1e3 * med[name] / sp.num_steps:.3f} ms, ratio {mo / med[name]:.3f}"
              " (target <= 1.1)")


def ddpm_sampler_loop(net, x, process, generator):
    return ddpm_sampler(net, x, process, generator).samples


if __name__ == "__main__":
    main()
