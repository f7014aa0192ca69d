"""Do the grid engine's schedules transfer to a trained DDPM? (serialrepro.models.transfer)

    PYTHONPATH=src .venv/bin/python benchmarks/schedule_transfer.py --out /tmp/transfer
    PYTHONPATH=src .venv/bin/python benchmarks/schedule_transfer.py --out /tmp/t --quick

Trains one small DDPM on the Swiss roll (MLP, linear β, T = 1000, gaussian ε-prediction,
seed 0, one thread), then for k ∈ {5, 10, 20} sampling steps picks the k timesteps by each
rule of :mod:`serialrepro.models.transfer` — uniform, EDM ρ = 7 in the DDPM's ς, and the
grid engine's equal-complexity and optimal schedules (Swiss roll, gaussian, paper grid
h = 0.04, serial step, kl objective) under the ``final-kl`` constraint (where the grid's
optimum is gradual) and under the paper's ``ends`` 0.01 → 0.05 — mapped by the cumulative
added-variance fraction u_τ/u_{T−1} = Σ_{i≤j}σ_i²/Σσ_i², u = −log ᾱ. For each rule, k and
sampling seed it draws n points by DDPM ancestral sampling on the explicitly respaced
process and scores them against 5,000 held-out Swiss-roll points: energy distance and a
32×32 histogram KL on [−1.6, 1.6]² in bits, ε = 1e-4 added to every cell of both
histograms. The row ``data`` scores fresh Swiss-roll draws of the same size (the floor
both scores have at this n). Intervals are 95 % t-intervals over the seeds (the one trained
model is fixed: they cover sampling noise, not training noise); the verdict per k compares
each grid-optimal schedule with uniform by the paired per-seed difference (beats / loses
to: its 95 % interval excludes 0) and names the rule of best mean.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from serialrepro import atomic
from serialrepro.data import load_dataset
from serialrepro.data.toys import swiss_roll
from serialrepro.metrics.sample import energy_distance
from serialrepro.models import transfer
from serialrepro.models.samplers import get_sampler
from serialrepro.models.training import TrainConfig, train


def interval(xs: list[float]) -> tuple[float, float]:
    """Mean and the half-width of the 95 % t-interval."""
    from scipy.stats import t as student

    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, math.nan
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, float(student.ppf(0.975, n - 1)) * sd / math.sqrt(n)


@torch.no_grad()
def draw(trained, timesteps: list[int], n: int, seed: int) -> torch.Tensor:
    process = transfer.respace_to(trained.process, timesteps)
    gen = torch.Generator().manual_seed(seed)
    x = process.family.limit_sample((n, *trained.data_shape), gen, torch.float32,
                                    torch.device("cpu"))
    return get_sampler("ddpm")(trained.denoiser, x, process, gen).samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for results.json (and the run)")
    ap.add_argument("--k", default="5,10,20")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--train-steps", type=int, default=8000)
    ap.add_argument("--quick", action="store_true", help="k=5, 3 seeds, 500 training steps")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ks = [5] if a.quick else [int(v) for v in a.k.split(",")]
    seeds = 3 if a.quick else a.seeds
    steps = 500 if a.quick else a.train_steps
    out = atomic.check_output_folder(a.out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    grid: dict[str, dict] = {}
    for k in ks:
        for con in ("final-kl", "ends"):
            for kind in ("grid-optimal", "equal-complexity"):
                grid[f"{kind}[{con}]/{k}"] = transfer.grid_levels(kind, k, constraint=con)
    t_grid = time.perf_counter() - t0
    print(f"grid schedules: {t_grid:.0f} s", flush=True)

    config = TrainConfig(dataset="swiss-roll", steps=steps, checkpoint_every=steps, seed=0)
    with tempfile.TemporaryDirectory() as run_dir:
        trained = train(config, run_dir, device="cpu", progress=False)
    t_train = time.perf_counter() - t0 - t_grid
    print(f"training: {steps} steps in {t_train:.0f} s, last-100 mean loss "
          f"{sum(trained.losses[-100:]) / len(trained.losses[-100:]):.4f}", flush=True)
    held_out = load_dataset("swiss-roll", seed=0).test

    def score(x: torch.Tensor) -> dict:
        return {"energy": energy_distance(x.double(), held_out.double()),
                "kl_bits": transfer.histogram_kl_bits(x, held_out)}

    rules = ["uniform", "edm", "equal-complexity[final-kl]", "grid-optimal[final-kl]",
             "equal-complexity[ends]", "grid-optimal[ends]"]
    results: dict = {"config": {"k": ks, "seeds": seeds, "n": a.n, "train_steps": steps,
                                "sampler": "ddpm", "held_out": int(held_out.shape[0]),
                                "hist": {"bins": transfer.HIST_BINS,
                                         "bounds": list(transfer.HIST_BOUNDS),
                                         "eps": transfer.HIST_EPS}},
                     "grid": grid, "cells": {}, "verdicts": {}}
    floor = [score(swiss_roll(a.n, torch.Generator().manual_seed(10_000 + s)))
             for s in range(seeds)]
    results["data_floor"] = floor
    lines = ["| k | rule | timesteps (high → low) | energy distance | grid KL (bits) |",
             "|---|---|---|---|---|"]
    fm = {m: interval([f[m] for f in floor]) for m in ("energy", "kl_bits")}
    lines.append(f"| – | data (n = {a.n}) | – | {fm['energy'][0]:.4f} ± {fm['energy'][1]:.4f} "
                 f"| {fm['kl_bits'][0]:.3f} ± {fm['kl_bits'][1]:.3f} |")
    for k in ks:
        per_rule = {}
        for rule in rules:
            base = rule.split("[")[0]
            levels = grid[f"{rule}/{k}"]["sigmas"] if "[" in rule else None
            ts = transfer.select_timesteps(base, trained.process, k, levels)
            scores = [score(draw(trained, ts, a.n, 1000 * k + s)) for s in range(seeds)]
            per_rule[rule] = scores
            results["cells"][f"{rule}/{k}"] = {"timesteps": ts, "scores": scores}
            e, kl = (interval([s[m] for s in scores]) for m in ("energy", "kl_bits"))
            shown = ",".join(map(str, ts)) if k <= 10 else \
                ",".join(map(str, ts[:4])) + ",…," + ",".join(map(str, ts[-3:]))
            lines.append(f"| {k} | {rule} | {shown} | {e[0]:.4f} ± {e[1]:.4f} "
                         f"| {kl[0]:.3f} ± {kl[1]:.3f} |")
            print(lines[-1], flush=True)
        verdict = []
        for opt in ("grid-optimal[final-kl]", "grid-optimal[ends]"):
            for m, name in (("energy", "energy distance"), ("kl_bits", "grid KL")):
                d = [g[m] - u[m] for g, u in zip(per_rule[opt], per_rule["uniform"], strict=True)]
                mean, hw = interval(d)
                word = ("beats" if mean + hw < 0 else "loses to" if mean - hw > 0
                        else "does not separate from")
                verdict.append(f"{opt} {word} uniform on {name} ({mean:+.4f} ± {hw:.4f})")
                results["verdicts"][f"{k}/{opt}/{m}"] = {"difference": mean, "halfwidth": hw,
                                                         "word": word}
        for m, name in (("energy", "energy distance"), ("kl_bits", "grid KL")):
            best = min(rules, key=lambda r: sum(s[m] for s in per_rule[r]))
            verdict.append(f"best mean {name}: {best}")
            results["verdicts"][f"{k}/best/{m}"] = best
        results["verdicts"][f"{k}/text"] = f"k={k}: " + "; ".join(verdict)
    results["table"] = lines
    results["seconds"] = time.perf_counter() - t0
    atomic.write_json_strict(Path(out) / "results.json", results)
    print("\n".join(lines))
    print()
    for k in ks:
        print(results["verdicts"][f"{k}/text"])
    print(f"\ntotal {results['seconds']:.0f} s; results in {Path(out) / 'results.json'}")


if __name__ == "__main__":
    main()
