"""Speed of trained-model code on digits: training steps/s, sampling images/s, and the
per-step overhead of our DDPM sampler against a plain hand-written DDPM loop with the same
network (measured in the same run; target ratio ≤ 1.1).

    .venv/bin/python benchmarks/model_speed.py [--threads N] [--device cpu|cuda]

diffusers is not installed in this project, so the reference is the textbook loop of Ho et
al. (2020, Algorithm 2) with precomputed coefficients; both loops are checked to return the
same samples for the same generator before they are timed.
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
    ref = reference_ddpm(net, x, sp, torch.Generator(device=dev).manual_seed(1))
    assert torch.allclose(ours, ref, atol=1e-4), float((ours - ref).abs().max())

    def run_ours():
        ddpm_sampler(net, x, sp, torch.Generator(device=dev).manual_seed(1))
        sync()

    def run_ref():
        reference_ddpm(net, x, sp, torch.Generator(device=dev).manual_seed(1))
        sync()

    t_ours, t_ref = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        t_ours += _time(run_ours, 1)
        t_ref += _time(run_ref, 1)
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"[{kind}, {n_params} parameters]")
    print(f"  training: {1 / t_train:8.1f} steps/s (batch 128)")
    print(f"  sampling: {batch / mo * sp.num_steps / 1000:8.2f} images/s at 1000 steps,"
          f" {batch / mo:8.1f} images/s at {sp.num_steps} steps (batch {batch})")
    print(f"  per step: ours {1e3 * mo / sp.num_steps:.3f} ms, reference"
          f" {1e3 * mr / sp.num_steps:.3f} ms, ratio {mo / mr:.3f} (target <= 1.1)")


if __name__ == "__main__":
    main()
