"""Speed and memory of the exact grid engine, against references measured in the same run.

    .venv/bin/python benchmarks/grid_speed.py            # full run (about 10 minutes)
    .venv/bin/python benchmarks/grid_speed.py --quick    # smaller cases, same table
    .venv/bin/python benchmarks/grid_speed.py --cases torus512-T1000,torus128x3

Cases (issues #2 and #11), all with the four scores and the per-step channel information
on (``simulate(..., info=True)``, default ``keep``):

(a) the paper's Figure 3 sweep: Swiss roll, gaussian, paper grid h = 0.04 (M = 676),
    σ = 0.01 → 0.05, T = 2, 3, 6, 12, 24, 48, 100. Reference: a re-creation of the
    published implementation's approach in Python (dense M×M kernels and posteriors filled
    by loops over pairs of grid points, then matrix products), timed on a subset of the
    conditions (its scores are checked against ours) and extrapolated per step.
(b) FFT against dense on a 64×64 torus, T = 100: both timings, ratio, score difference.
(c) torus cases, gaussian σ = 0.01 → 0.05: 256², 512² (T = 100), 512² T = 1000, 1024²
    T = 100, 64³ and 128³ T = 100. Reference: the straightforward FFT engine this one
    replaced (issue #11's profile): a kernel spectrum by rfftn of the full kernel, complex
    spectra with ``conj()`` for Kᵀ, ``torch.where`` ratios recomputed per use, Python lists
    stacked at the end, the complexity over the whole [T−1, …] stack, the stationarity as
    a second reverse pass and per-step entropies with their own logs. Its memory grows
    with T, so it runs on all T steps only where that fits in 600 MB, else on fewer (at
    least 10), and is compared per step; its scores on those steps are checked against
    ours.

For every case: wall time and CPU time of ``simulate()`` (CPU time of this thread: other
work on a shared machine inflates wall time, far less CPU time), the peak resident memory
of the case's own process (``VmHWM`` after resetting it before the case; ``ru_maxrss``
would include the parent's size, inherited across exec) beside the engine's memory model
(:func:`serialrepro.grid.process.simulation_bytes`) plus the process's size before the
case, and the time per step in units of one rfftn + irfftn pair of the case's grid
measured in the same process during the case (every T/10 reverse steps through the
sampler's callback, median; their time is taken out of the case's), beside the same in
units of the pair measured right before and after the case (the smaller median of 15).
Five pairs per step are the floor of the serial step: one forward, two in the sampler,
two in the stationarity pull-back. Each case runs in a fresh
subprocess, single-threaded (``--threads``). With a CUDA device the torus cases also run
there (times with ``torch.cuda.synchronize``) and the CPU/GPU ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

FIG3_T = (2, 3, 6, 12, 24, 48, 100)
GOLDEN_KL = {2: 0.449178, 3: 0.383357, 6: 0.250175, 12: 0.163212, 24: 0.128881,
             48: 0.123429, 100: 0.127884}
SCORE_KEYS = ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")
#: torus cases: name -> (n, dims, T, quick T); targets of issue #11
TORUS = {
    "torus256": (256, 2, 100, 20),
    "torus512": (512, 2, 100, 20),
    "torus512-T1000": (512, 2, 1000, 100),
    "torus1024": (1024, 2, 100, 10),
    "torus64x3": (64, 3, 100, 20),
    "torus128x3": (128, 3, 100, 5),
}
TARGETS = {  # (pairs per step, peak MB)
    "torus256": (8, None), "torus512": (8, None), "torus512-T1000": (8, 2500),
    "torus1024": (8, 4000), "torus64x3": (10, None), "torus128x3": (10, 4000),
}
#: the reference engine runs on every step while its ~6 levels per step fit in REF_BYTES,
#: else on at least REF_STEPS // 2 steps, and is compared per step
REF_STEPS = 20
REF_BYTES = 600 << 20


def _status(key: str) -> int:
    """A /proc/self/status counter in bytes (VmRSS, VmHWM)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> int:
    """Reset this process's peak RSS to its current size; return that size."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status("VmRSS:")


def _peak_mb() -> float:
    return _status("VmHWM:") / 2**20


# -- the reference: the published implementation's approach -------------------------------

def _reference_sweep(T_values: list[int]) -> dict:
    """The Figure 3 simulation as the authors' code does it: kernels and posteriors as dense
    M×M arrays filled point pair by point pair, everything else as matrix products."""
    import numpy as np
    import torch

    from serialrepro.grid import GridSpace, swiss_roll

    space = GridSpace.paper(0.04)
    pts = space.points().numpy().tolist()
    m = space.size
    data = swiss_roll(space).numpy().reshape(-1)
    eps = np.finfo(float).eps
    shifts = [(a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)]

    def kernel(sigma: float) -> np.ndarray:
        k = np.zeros((m, m))
        for i in range(m):  # column: x
            xi, yi = pts[i]
            for j in range(m):  # row: y
                xj, yj = pts[j]
                best = math.inf
                for sx, sy in shifts:
                    dx, dy = xj - xi + sx, yj - yi + sy
                    d2 = dx * dx + dy * dy
                    if d2 < best:
                        best = d2
                k[j, i] = math.exp(-best / (2 * sigma * sigma))
            k[:, i] /= k[:, i].sum()
        return k

    def posterior(k: np.ndarray, prior: np.ndarray) -> np.ndarray:
        post = np.zeros((m, m))  # post[x, y] = K(y|x) prior(x) / Σ_x' K(y|x') prior(x')
        for y in range(m):
            col = post[:, y]
            for x in range(m):
                col[x] = k[y, x] * prior[x]
            post[:, y] = col / col.sum()
        return post

    def kl(p, q):
        return float(np.sum(p * np.log2((p + eps) / (q + eps))))

    out: dict = {"conditions": {}, "steps": 0}
    t0 = time.perf_counter()
    for T in T_values:
        sigmas = torch.linspace(0.01, 0.05, T).tolist()
        ks = [kernel(s) for s in sigmas]
        q = [data]
        for k in ks:
            q.append(k @ q[-1])
        steps = [posterior(ks[t - 1], q[t - 1]) @ ks[t - 1] for t in range(1, T + 1)]
        r = [None] * (T + 1)
        r[T] = np.full(m, 1.0 / m)
        for t in range(T, 0, -1):
            r[t - 1] = steps[t - 1] @ r[t]
        mid = 0.5 * (r[0] + data)
        res = {"kl_bits": kl(r[0], data),
               "jsd_bits": 0.5 * kl(r[0], mid) + 0.5 * kl(data, mid),
               "complexity_bits": max(kl(q[t], q[t + 1]) for t in range(1, T)),
               }
        v = r[T - 1] / (r[T - 2] + eps)
        for t in range(T - 1, 0, -1):
            v = steps[t - 1].T @ v
        res["stationarity"] = float(np.linalg.norm(v - 1) / math.sqrt(m))
        out["conditions"][T] = res
        out["steps"] += T
    out["seconds"] = time.perf_counter() - t0
    return out


# -- the reference FFT engine (before issue #11) ---------------------------------------------

def _reference_fft(data, sigmas, space, info: bool = True) -> dict:
    """The FFT engine as it was before issue #11 (gaussian, serial step), written plainly."""
    import torch

    from serialrepro.families import get_family
    from serialrepro.grid.scores import EPS, entropy_bits, jsd_bits, kl_bits

    fam = get_family("gaussian")
    nd = space.dims
    dims = tuple(range(-nd, 0))
    offsets = space.circulant_offsets(data.dtype, data.device)

    def kernel(sigma):
        c = fam.grid_parts(offsets, sigma, tuple(range(nd)), space.spacing, None).offset_weights
        c = c / c.sum()
        return c, torch.fft.rfftn(c, dim=dims)

    def conv(p, spec):
        return torch.fft.irfftn(torch.fft.rfftn(p, dim=dims) * spec, s=space.shape, dim=dims)

    def floor(w):
        return w.abs().amax() * (torch.finfo(w.dtype).eps * math.log2(space.size))

    def safe(v, w):
        ok = w > floor(w)
        return torch.where(ok, v / torch.where(ok, w, 1.0), 0.0)

    kernels = [kernel(s) for s in sigmas]
    T = len(sigmas)
    q = [data]
    for c, spec in kernels:
        q.append(conv(q[-1], spec).clamp_min_(0.0))
        if info:
            h = float(torch.special.xlogy(c, c).sum() / -math.log(2.0))
            float(entropy_bits(q[-1], nd) - h * q[-2].sum())
    q = torch.stack(q)
    r = [None] * (T + 1)
    r[T] = torch.full(space.shape, 1.0 / space.size, dtype=data.dtype, device=data.device)
    for t in range(T, 0, -1):
        _, spec = kernels[t - 1]
        v = conv(r[t], spec)
        r[t - 1] = (q[t - 1] * conv(safe(v, q[t]), spec.conj())).clamp_min_(0.0)
    r = torch.stack(r)
    out = {"kl_bits": float(kl_bits(r[0], data, nd)), "jsd_bits": float(jsd_bits(r[0], data, nd)),
           "complexity_bits": float(kl_bits(q[1:T], q[2:T + 1], nd).max())}
    v = r[T - 1] / (r[T - 2] + EPS)
    for t in range(T - 1, 0, -1):
        _, spec = kernels[t - 1]
        v = conv(safe(conv(q[t - 1] * v, spec), q[t]), spec.conj())
    out["stationarity"] = float(torch.linalg.vector_norm(v - 1.0) / math.sqrt(v.numel()))
    return out


# -- cases, each run in its own process ----------------------------------------------------

def _pair_seconds(space, device, repeats: int = 15) -> tuple[float, float]:
    """(CPU, wall) seconds of one rfftn + irfftn pair on the grid: medians of ``repeats``."""
    import torch

    x = torch.rand(space.shape, dtype=torch.float64, device=device)
    cpu, wall = [], []
    for _ in range(repeats):
        _sync(device)
        c0, w0 = time.thread_time(), time.perf_counter()
        torch.fft.irfftn(torch.fft.rfftn(x), s=space.shape)
        _sync(device)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return sorted(cpu)[repeats // 2], sorted(wall)[repeats // 2]


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device, repeats: int) -> tuple[float, float, object]:
    """Best (CPU, wall) seconds of ``repeats`` calls and the last result."""
    best_cpu = best_wall = math.inf
    out = None
    for _ in range(repeats):
        _sync(device)
        c0, w0 = time.thread_time(), time.perf_counter()
        out = fn()
        _sync(device)
        best_cpu = min(best_cpu, time.thread_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall, out


def _case(name: str, quick: bool, device: str = "cpu") -> dict:
    import torch

    from serialrepro.grid import GridSpace, simulate, swiss_roll, three_modes
    from serialrepro.grid.process import simulation_bytes

    res: dict = {"case": name, "device": device}
    if name == "reference":
        subset = [2] if quick else [2, 3]
        ref = _reference_sweep(subset)
        res.update(seconds=ref["seconds"], steps=ref["steps"], conditions=ref["conditions"],
                   peak_mb=_peak_mb())
        return res
    if name == "figure3":
        space = GridSpace.paper(0.04)
        data = swiss_roll(space)
        res["baseline_mb"] = _reset_peak() / 2**20
        t0 = time.perf_counter()
        runs = {T: simulate(data, "gaussian", torch.linspace(0.01, 0.05, T).tolist(), space)
                for T in FIG3_T}
        res["seconds"] = time.perf_counter() - t0
        res["conditions"] = {T: {k: getattr(r, k) for k in SCORE_KEYS} for T, r in runs.items()}
        res["peak_mb"] = _peak_mb()
        return res
    if name in ("torus64-fft", "torus64-dense"):
        space = GridSpace.torus(64)
        data = swiss_roll(space)
        T = 20 if quick else 100
        backend = name.split("-")[1]
        res["baseline_mb"] = _reset_peak() / 2**20
        t0 = time.perf_counter()
        run = simulate(data, "gaussian", torch.linspace(0.01, 0.05, T).tolist(), space,
                       backend=backend)
        res.update(seconds=time.perf_counter() - t0, T=T, backend=run.backend,
                   scores={k: getattr(run, k) for k in SCORE_KEYS}, peak_mb=_peak_mb())
        return res
    n, dims, T, quick_T = TORUS[name]
    T = quick_T if quick else T
    space = GridSpace.torus(n, dims)
    data = (swiss_roll(space) if dims == 2 else three_modes(space)).to(device)
    levels = torch.linspace(0.01, 0.05, T).tolist()
    simulate(data, "gaussian", levels[:2], space)  # warm-up (FFT plans, allocator)
    pair_before = _pair_seconds(space, device)
    base = _reset_peak()
    repeats = 3 if space.size * T <= 256**2 * 100 else 1
    # pairs are also timed *during* the run (every T/10 reverse steps, through the sampler
    # callback, their time taken out of the case's): the same moment's machine load
    x = torch.rand(space.shape, dtype=torch.float64, device=device)
    every = max(1, T // 10)
    during: list[tuple[float, float]] = []

    def probe(t, r):
        if t % every == 0:
            _sync(device)
            c0, w0 = time.thread_time(), time.perf_counter()
            torch.fft.irfftn(torch.fft.rfftn(x), s=space.shape)
            _sync(device)
            during.append((time.thread_time() - c0, time.perf_counter() - w0))

    def run_once():
        during.clear()
        return simulate(data, "gaussian", levels, space, callback=probe)

    best_cpu = best_wall = math.inf
    for _ in range(repeats):
        c, w, run = _timed(run_once, device, 1)
        best_cpu = min(best_cpu, c - sum(d[0] for d in during))
        best_wall = min(best_wall, w - sum(d[1] for d in during))
    cpu, wall = best_cpu, best_wall
    peak = _status("VmHWM:")
    pair_after = _pair_seconds(space, device)
    pair_cpu = sorted(d[0] for d in during)[len(during) // 2]
    pair_wall = sorted(d[1] for d in during)[len(during) // 2]
    outside = min(pair_before[0], pair_after[0])
    res.update(T=T, M=space.size, repeats=repeats, cpu=cpu, wall=wall, pair_cpu=pair_cpu,
               pair_wall=pair_wall, pair_outside=outside, pair_spread=pair_cpu / outside,
               peak_mb=peak / 2**20, base_mb=base / 2**20,
               model_mb=simulation_bytes(space, T) / 2**20,
               scores={k: getattr(run, k) for k in SCORE_KEYS}, kept=run.kept_steps)
    del run
    if device == "cpu":
        # the reference engine on at most REF_STEPS steps, and ours on the same steps
        ref_T = min(T, max(REF_STEPS // 2, REF_BYTES // (6 * 8 * space.size)))
        ref_levels = torch.linspace(0.01, 0.05, ref_T).tolist()
        rcpu, rwall, ref = _timed(lambda: _reference_fft(data, ref_levels, space), device, 1)
        ours = simulate(data, "gaussian", ref_levels, space)
        res.update(ref_T=ref_T, ref_cpu=rcpu, ref_wall=rwall,
                   ref_agree=max(abs(ref[k] - getattr(ours, k)) for k in SCORE_KEYS))
    return res


def _run_case(name: str, quick: bool, threads: int, device: str = "cpu") -> dict:
    cmd = [sys.executable, __file__, "--case", name, "--threads", str(threads),
           "--device", device]
    if quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _torus_row(c: dict, gpu: dict | None) -> tuple[str, ...]:
    per_step = c["cpu"] / c["T"] / c["pair_cpu"]
    pairs_target, mb_target = TARGETS[c["case"]]
    notes = [f"pair {c['pair_cpu'] * 1e3:.2f} ms during the run "
             f"({c['pair_outside'] * 1e3:.2f} before/after: "
             f"{c['cpu'] / c['T'] / c['pair_outside']:.1f} pairs/step in those units)"]
    met = per_step <= pairs_target
    notes.append(f"target ≤ {pairs_target}: {'met' if met else 'NOT met'}")
    if mb_target:
        notes.append(f"peak target < {mb_target} MB: "
                     f"{'met' if c['peak_mb'] < mb_target else 'NOT met'}")
    if "ref_cpu" in c:
        ratio = (c["ref_cpu"] / c["ref_T"]) / (c["cpu"] / c["T"])
        notes.append(f"{ratio:.1f}× faster per step than the reference FFT engine "
                     f"(timed on {c['ref_T']} steps; scores agree to {c['ref_agree']:.0e})")
    if gpu is not None:
        notes.append(f"CUDA {gpu['wall']:.3f} s ({gpu['wall'] / gpu['T'] / gpu['pair_wall']:.1f} "
                     f"pairs/step), CPU/GPU {c['wall'] / gpu['wall']:.1f}×")
    return (f"(c) {c['case']} M={c['M']}, T={c['T']}", f"{c['wall']:.2f} s",
            f"{c['cpu']:.2f} s", f"{c['peak_mb']:.0f}",
            f"{c['model_mb'] + c['base_mb']:.0f}", f"{per_step:.1f}", "; ".join(notes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller cases (fewer steps; reference loops on T=2 only)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--skip-reference", action="store_true",
                    help="skip the loop-based reference of case (a)")
    ap.add_argument("--cases", default="all",
                    help="comma list of torus cases to run (default all: "
                    + ", ".join(TORUS) + "); 'none' runs only (a) and (b)")
    ap.add_argument("--only-torus", action="store_true", help="skip cases (a) and (b)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(_case(args.case, args.quick, args.device)))
        return
    if args.cases == "all":
        torus = list(TORUS)
    elif args.cases == "none":
        torus = []
    else:
        torus = [c.strip() for c in args.cases.split(",") if c.strip()]
        bad = [c for c in torus if c not in TORUS]
        if bad:
            ap.error(f"unknown case(s) {', '.join(bad)}; valid: {', '.join(TORUS)}")

    import platform

    cuda = torch.cuda.is_available()
    print(f"serialrepro grid engine benchmark — torch {torch.__version__}, "
          f"{args.threads} thread(s), {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}"
          + (f", CUDA {torch.cuda.get_device_name()}" if cuda else ", no CUDA device")
          + (" — QUICK" if args.quick else ""))
    rows: list[tuple[str, ...]] = []
    blank = ("", "", "")

    if not args.only_torus:
        fig = _run_case("figure3", args.quick, args.threads)
        worst = max(abs(c["kl_bits"] - GOLDEN_KL[int(T)]) for T, c in fig["conditions"].items())
        note = f"target < 2 s; |kl − golden| ≤ {worst:.1e}"
        if not args.skip_reference:
            ref = _run_case("reference", args.quick, args.threads)
            per_step = ref["seconds"] / ref["steps"]
            extrapolated = per_step * sum(FIG3_T)
            agree = max(abs(ref["conditions"][T][k] - fig["conditions"][T][k])
                        for T in ref["conditions"] for k in SCORE_KEYS)
            rows.append(("(a) Fig. 3 reference (loops)", f"{extrapolated:.0f} s*", "",
                         f"{ref['peak_mb']:.0f}", *blank[:2],
                         f"*timed {ref['seconds']:.1f} s on T={','.join(ref['conditions'])} "
                         f"({ref['steps']} steps), ×{sum(FIG3_T)}/{ref['steps']} steps; "
                         f"scores agree with ours to {agree:.1e}"))
            note += f"; {extrapolated / fig['seconds']:.0f}× faster than the reference"
        rows.append(("(a) Fig. 3 sweep, 7 conditions", f"{fig['seconds']:.2f} s", "",
                     f"{fig['peak_mb']:.0f}", *blank[:2], note))
        fft = _run_case("torus64-fft", args.quick, args.threads)
        dense = _run_case("torus64-dense", args.quick, args.threads)
        diff = max(abs(fft["scores"][k] - dense["scores"][k]) for k in SCORE_KEYS)
        rows.append((f"(b) 64² torus, T={dense['T']}, dense", f"{dense['seconds']:.2f} s", "",
                     f"{dense['peak_mb']:.0f}", *blank[:2], "reference for the FFT row"))
        rows.append((f"(b) 64² torus, T={fft['T']}, FFT", f"{fft['seconds']:.3f} s", "",
                     f"{fft['peak_mb']:.0f}", *blank[:2],
                     f"{dense['seconds'] / fft['seconds']:.0f}× faster than dense "
                     f"(target ≥ 30×); max score difference {diff:.1e}"))

    for name in torus:
        c = _run_case(name, args.quick, args.threads)
        gpu = _run_case(name, args.quick, args.threads, "cuda") if cuda else None
        rows.append(_torus_row(c, gpu))
        print(f"  done {name}: {c['wall']:.1f} s", file=sys.stderr, flush=True)

    head = ("case", "wall", "CPU", "peak MB", "model MB", "pairs/step", "notes")
    widths = [max(len(r[i]) for r in [*rows, head]) for i in range(6)]
    print("  ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
                    for i, (h, w) in enumerate(zip(head[:6], widths, strict=True)))
          + "  " + head[6])
    print("-" * (sum(widths) + 12 + 40))
    for r in rows:
        print("  ".join(f"{v:<{w}}" if i == 0 else f"{v:>{w}}"
                        for i, (v, w) in enumerate(zip(r[:6], widths, strict=True)))
              + "  " + r[6])
    print("wall/CPU: simulate() only (best of 3 for the small torus cases); CPU is this "
          "thread's CPU time. peak MB: VmHWM of the case's own process; model MB: "
          "simulation_bytes() + the process's size before the case. pairs/step: CPU time "
          "per step / CPU time of one rfftn+irfftn pair timed during the run (floor: 5).")


if __name__ == "__main__":
    main()
