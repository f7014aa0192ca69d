"""Speed of the schedule optimiser (serialrepro.grid.optimize) against references in the same run.

    .venv/bin/python benchmarks/schedule_optimize.py          # about a minute on an idle core

Two cases, gaussian noise on the Swiss roll, serial step, kl objective, the paper's ends
0.01 → 0.05:

* T = 10 on the paper grid (h = 0.04, 26² points, dense kernels), target < 10 s;
* T = 24 on a 64² torus (FFT kernels), target < 60 s.

For each: the L-BFGS optimisation alone (:func:`optimize_levels`, gradients by autograd
through the engine; the linear start and two seeded random starts evaluated, the best
one refined, as ``schedule optimize`` does by default),
the whole ``schedule optimize`` call (:func:`optimize_schedule`: the five baselines, the
equal-complexity builder included, and the simulate calls that score them), and two
references measured here: one ``simulate`` call (the unit of cost), and one gradient by
forward differences (T + 1 objective evaluations) against one by autograd; the optimiser's
time scaled by their ratio is what the same search would cost without autograd.
Times are wall-clock on one intra-op thread, and the optimiser's CPU time of the thread
(on a shared machine wall time also counts other people's work); ratios compare within
the run.
"""

from __future__ import annotations

import time

import torch

from serialrepro.grid import make_prior, parse_grid, simulate
from serialrepro.grid.optimize import (
    Problem,
    optimize_levels,
    optimize_schedule,
    parse_constraint,
)

CASES = [("paper:0.04", 10, 10.0), ("torus:64", 24, 60.0)]


def gradient_seconds(pb: Problem, levels: list[float], repeats: int = 3) -> tuple[float, float]:
    """(autograd, forward-difference) seconds for one gradient of kl in the levels."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        lv = torch.tensor(levels, dtype=torch.float64, requires_grad=True)
        pb.loss(lv).backward()
    t_ad = (time.perf_counter() - t0) / repeats
    t0 = time.perf_counter()
    with torch.no_grad():
        base = torch.tensor(levels, dtype=torch.float64)
        f0 = pb.loss(base)
        for i in range(len(levels)):
            lv = base.clone()
            lv[i] += 1e-7
            (pb.loss(lv) - f0) / 1e-7
    return t_ad, time.perf_counter() - t0


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'case':<20}{'simulate':>10}{'grad AD':>10}{'grad FD':>10}{'optimise':>10}"
          f"{'CPU':>9}{'evals':>7}{'FD-equivalent':>15}{'whole call':>12}{'target':>8}")
    for grid, T, target in CASES:
        space = parse_grid(grid, 2)
        data = make_prior("swiss-roll", space)
        pb = Problem(data, "gaussian", space, T, parse_constraint(None, "gaussian", T))
        levels = torch.linspace(0.01, 0.05, T, dtype=torch.float64).tolist()
        simulate(data, "gaussian", levels, space)  # warm-up
        t0 = time.perf_counter()
        simulate(data, "gaussian", levels, space)
        t_sim = time.perf_counter() - t0
        t_ad, t_fd = gradient_seconds(pb, levels)
        c0 = time.thread_time()
        res = optimize_levels(pb, restarts=2, max_iter=100, keep_best=1)
        cpu = time.thread_time() - c0
        t0 = time.perf_counter()
        whole = optimize_schedule(pb, restarts=2, max_iter=100)
        t_whole = time.perf_counter() - t0
        # the same evaluations with forward-difference gradients instead of autograd
        fd_equiv = res.seconds * t_fd / t_ad
        print(f"{grid + f' T={T}':<20}{t_sim:>9.3f}s{t_ad:>9.3f}s{t_fd:>9.3f}s"
              f"{res.seconds:>9.2f}s{cpu:>8.2f}s{res.evaluations:>7}{fd_equiv:>14.1f}s{t_whole:>11.2f}s"
              f"{target:>7.0f}s")
        print(f"  optimum {', '.join(f'{v:.4g}' for v in whole['sigmas'])}: kl "
              f"{whole['kl_bits']:.5f} bits (linear {whole['baselines']['linear']['kl_bits']:.5f})")
    print("optimise: optimize_levels alone; whole call: optimize_schedule (baselines, the "
          "equal-complexity builder and the scoring simulate calls included); FD-equivalent: "
          "the optimise time with forward-difference gradients (T + 1 evaluations each)")

if __name__ == "__main__":
    main()
