"""Speed and memory of the noise fit (issue #8 item 2), against the dense approach it replaces.

    .venv/bin/python benchmarks/chain_fit.py            # about 1-2 minutes
    .venv/bin/python benchmarks/chain_fit.py --quick    # smaller data, same table

Data shaped like the dot task: 100 displays × 15 dots = 1,500 tracks, 20 iterations each
(30,000 transitions) of a Bayesian agent with gaussian noise σ = 0.02 (unit coordinates)
and a five-component Gaussian-mixture prior inside [−0.3, 0.3]², simulated in continuous
space (closed-form posteriors, :mod:`serialrepro.particles`). The fit is the analysis's:
the prior is a Gaussian KDE of the last four iterations (scipy, Scott's rule), the interval
a clustered bootstrap over the 100 displays (200 replicates), the grid refined from the old
default 48 per axis until the cell is ≤ σ̂/4. The time covers :func:`fit_noise_level` (KDE
evaluations on every grid included) and, separately, :func:`simulate_fitted` for the 1,500
tracks.

Reference, measured in the same run: the approach the fit replaces, on small grids — the
dense kernel matrix K (M × M) and T(j | i) = q_j Σ_y K(y|i) K(y|j)/(Kq)(y) summed over M
for every distinct cell pair (the old ``pair_transition_probs``, O(M²) memory, O(N M) per
level), and the dense M × M transition matrix the old simulation built (O(M³)). Both are
timed at 32, 48 and 64 points per axis beside one likelihood evaluation of the new code,
then extrapolated to the fine grid by a power law fitted to those three sizes (the dense
matrices of the fine grid would not fit in memory; the table says so).

Each case runs in its own subprocess; "peak" is that process's ``ru_maxrss`` (Python,
torch and the data included). Intra-op torch threads default to 1 (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

SIGMA = 0.02
DISPLAYS, DOTS, ITERATIONS = 100, 15, 20
SMALL_GRIDS = (32, 48, 64)
#: likelihood evaluations of the old fit (13-point profile + bounded Brent search)
OLD_EVALUATIONS = 28


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _data(displays: int, sigma: float):
    import numpy as np
    import torch

    from serialrepro.chains.agents import Agent
    from serialrepro.chains.particle_chains import particle_chains
    from serialrepro.particles.priors import GaussianMixturePrior

    prior = GaussianMixturePrior(
        [[0.12, 0.1], [-0.14, 0.08], [0.0, -0.15], [0.15, -0.12], [-0.1, -0.05]],
        [0.0025, 0.002, 0.003, 0.002, 0.0025])
    n = displays * DOTS
    start = prior.sample(n, torch.Generator().manual_seed(1))
    traj = particle_chains(Agent(prior, "gaussian", sigma), start, ITERATIONS,
                           seed=2).numpy()  # [I + 1, C, 2]
    x = traj[:-1].reshape(-1, 2)
    xn = traj[1:].reshape(-1, 2)
    display = np.tile(np.arange(n) // DOTS, ITERATIONS)
    late = traj[-4:].reshape(-1, 2)
    return traj, x, xn, display, late


class _TimedKDE:
    """The analysis's prior, a Gaussian KDE (scipy, Scott's rule), timing its evaluations."""

    def __init__(self, late):
        from scipy.stats import gaussian_kde

        self.kde = gaussian_kde(late.T)
        self.seconds = 0.0
        self.points = 0

    def __call__(self, pts):
        t0 = time.perf_counter()
        out = self.kde(pts.T)
        self.seconds += time.perf_counter() - t0
        self.points += len(pts)
        return out


def _kde(late):
    return _TimedKDE(late)


def case_new(displays: int, threads: int, sigma: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    from serialrepro.chains.noise_fit import fit_noise_level, simulate_fitted

    traj, x, xn, display, late = _data(displays, sigma)
    dens = _kde(late)
    before = _peak_gb()
    t0 = time.perf_counter()
    fit = fit_noise_level(x, xn, cluster=display, prior_density=dens, dims=2, n_boot=200,
                          seed=0)
    t_fit = time.perf_counter() - t0
    kde_s, kde_points = dens.seconds, dens.points
    peak_fit = _peak_gb()
    t0 = time.perf_counter()
    sims = simulate_fitted(fit, traj[0], ITERATIONS, prior_density=dens, seed=0)
    t_sim = time.perf_counter() - t0
    return {"transitions": len(x), "fit_s": t_fit, "kde_s": kde_s, "kde_points": kde_points,
            "sim_s": t_sim, "sim_shape": sims.shape,
            "peak_before_gb": before, "peak_fit_gb": peak_fit, "peak_gb": _peak_gb(),
            "sigma": fit.sigma_unit, "ci": fit.sigma_ci_unit, "profile_ci": fit.profile_ci_unit,
            "ci_method": fit.ci_method, "n_clusters": fit.n_clusters, "grid_n": fit.grid_n,
            "cell": fit.cell_unit, "refinements": fit.refinements, "at_bound": fit.at_bound,
            "warnings": fit.warnings, "evaluations": len(fit.profile)}


def _old_pair_probs(space, sigma, q, i, j, block=2048):
    """The replaced approach: dense K, O(M) per distinct pair."""
    import torch

    from serialrepro.grid.kernels import make_kernel

    k = make_kernel(space, "gaussian", sigma, "dense").matrix()
    qf = q.reshape(-1)
    kq = k @ qf
    inv = torch.where(kq > 0, 1.0 / torch.where(kq > 0, kq, 1.0), 0.0)
    kt = k.T.contiguous()
    out = torch.empty(len(i), dtype=k.dtype)
    for s in range(0, len(i), block):
        jj, ii = j[s:s + block], i[s:s + block]
        out[s:s + block] = qf[jj] * ((kt[jj] * inv) * kt[ii]).sum(1)
    return out


def case_small(displays: int, threads: int, sigma: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    from serialrepro.chains.agents import Agent
    from serialrepro.chains.grid_chains import nearest_index, transition_matrix
    from serialrepro.chains.noise_fit import grid_prior, transition_probs
    from serialrepro.grid.space import GridSpace
    from serialrepro.particles.priors import GridDensityPrior

    _, x, xn, _, late = _data(displays, sigma)
    dens = _kde(late)
    rows = []
    for n in SMALL_GRIDS:
        space = GridSpace.torus(n, 2)
        q = grid_prior(space, dens)
        i = nearest_index(space, torch.from_numpy(x))
        j = nearest_index(space, torch.from_numpy(xn))
        pairs = torch.unique(i * space.size + j)
        pi, pj = pairs // space.size, pairs % space.size
        t_new = math.inf
        for _ in range(3):  # the new evaluation is short: best of three
            t0 = time.perf_counter()
            new = transition_probs(space, "gaussian", sigma, q, pi, pj)
            t_new = min(t_new, time.perf_counter() - t0)
        t0 = time.perf_counter()
        old = _old_pair_probs(space, sigma, q, pi, pj)
        t_old = time.perf_counter() - t0
        agent = Agent(GridDensityPrior(space, q), "gaussian", sigma)
        t0 = time.perf_counter()
        transition_matrix(agent, space, prior=q)
        t_mat = time.perf_counter() - t0
        rows.append({"n": n, "pairs": len(pi), "new_s": t_new, "old_s": t_old,
                     "matrix_s": t_mat, "max_diff": float((new - old).abs().max())})
    return {"rows": rows, "peak_gb": _peak_gb()}


def _run(case: str, args) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--threads", str(args.threads),
           "--sigma", repr(args.sigma)]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _power_law(ns, ts, target):
    """t ∝ M^k through the measured sizes (least squares in log-log), evaluated at target."""
    import numpy as np

    m = np.log(np.array(ns, dtype=float) ** 2)
    k, c = np.polyfit(m, np.log(ts), 1)
    return float(math.exp(c) * (target**2) ** k), float(k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 displays instead of 100")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sigma", type=float, default=SIGMA,
                    help=f"true noise level in unit coordinates (default {SIGMA})")
    ap.add_argument("--case", choices=("new", "small"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    displays = 30 if args.quick else DISPLAYS
    if args.case:
        fn = case_new if args.case == "new" else case_small
        print(json.dumps(fn(displays, args.threads, args.sigma), default=list))
        return
    new = _run("new", args)
    small = _run("small", args)
    n_fine = new["grid_n"]
    print(f"data: {displays * DOTS} tracks ({displays} displays × {DOTS} dots) × {ITERATIONS} "
          f"iterations = {new['transitions']} transitions; gaussian, sample rule, "
          f"σ_true = {args.sigma} (unit coordinates); torch threads {args.threads}")
    print(f"fit: {new['fit_s']:.1f} s, peak RSS {new['peak_fit_gb']:.2f} GB (after import and "
          f"data {new['peak_before_gb']:.2f} GB); of which {new['kde_s']:.1f} s evaluate the "
          f"KDE prior at {new['kde_points']} grid points; {new['evaluations']} likelihood "
          "levels on the final grid")
    print(f"  σ̂ = {new['sigma']:.5f} (truth {args.sigma}); 95 % CI [{new['ci'][0]:.5f}, "
          f"{new['ci'][1]:.5f}] ({new['ci_method']} over {new['n_clusters']} displays); "
          f"profile CI [{new['profile_ci'][0]:.5f}, {new['profile_ci'][1]:.5f}]")
    print(f"  grid {n_fine} per axis (cell {new['cell']:.5f} = σ̂/{new['sigma'] / new['cell']:.1f}"
          f"); refinements (grid_n, σ̂): "
          + ", ".join(f"({n}, {s:.5f})" for n, s in new["refinements"])
          + f"; at_bound {new['at_bound']}; warnings {new['warnings']}")
    print(f"simulate_fitted: {new['sim_s']:.1f} s for {new['sim_shape'][0]} chains × "
          f"{ITERATIONS} iterations on grid {n_fine}; peak RSS {new['peak_gb']:.2f} GB")
    print("\none likelihood evaluation (distinct cell pairs of the same data) and the dense "
          "transition matrix, same run:")
    print(f"{'grid':>6} {'pairs':>7} {'new s':>8} {'old s':>8} {'old/new':>8} "
          f"{'matrix s':>9} {'max |Δp|':>9}")
    for r in small["rows"]:
        print(f"{r['n']:>6} {r['pairs']:>7} {r['new_s']:>8.3f} {r['old_s']:>8.3f} "
              f"{r['old_s'] / r['new_s']:>7.1f}× {r['matrix_s']:>9.2f} {r['max_diff']:>9.1e}")
    ns = [r["n"] for r in small["rows"]]
    old_eval, k_eval = _power_law(ns, [r["old_s"] for r in small["rows"]], n_fine)
    mat, k_mat = _power_law(ns, [r["matrix_s"] for r in small["rows"]], n_fine)
    m = n_fine**2
    old_total = OLD_EVALUATIONS * old_eval + mat
    print(f"\nold approach at grid {n_fine} (M = {m}), extrapolated ∝ M^k from the rows above: "
          f"one evaluation {old_eval:.1f} s (k = {k_eval:.2f}), dense transition matrix "
          f"{mat:.0f} s (k = {k_mat:.2f}); {OLD_EVALUATIONS} evaluations + matrix ≈ "
          f"{old_total:.0f} s. Memory: dense K {m * m * 8 / 2**30:.1f} GiB, the transition "
          "matrix as much again (neither fits in 2 GB).")
    print(f"new fit + simulation: {new['fit_s'] + new['sim_s']:.1f} s → "
          f"{old_total / (new['fit_s'] + new['sim_s']):.0f}× faster than the extrapolated "
          "old approach on the same grid (old without any interval).")
    print("target: fit under 60 s and under 2 GB →",
          "met" if new["fit_s"] < 60 and new["peak_fit_gb"] < 2 else "NOT met")


if __name__ == "__main__":
    main()
