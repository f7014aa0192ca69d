"""Reference numbers the report compares our results with (docs/design.md §2).

``FIG3_GOLDEN`` holds the Figure 3 scores computed by running the authors' published
MATLAB code (Swiss roll, gaussian, paper grid h = 0.04, σ 0.01→0.05, serial step);
these are the authors' numbers, not ours, and are only ever compared against (by the
experiments whose config says ``reference: golden``).
"""

from __future__ import annotations

#: T → (kl_bits, jsd_bits, complexity_bits, stationarity)
FIG3_GOLDEN: dict[int, tuple[float, float, float, float]] = {
    2: (0.449178, 0.079464, 0.682085, 0.002407),
    3: (0.383357, 0.069800, 0.331028, 0.239327),
    6: (0.250175, 0.048287, 0.117919, 0.104547),
    12: (0.163212, 0.033779, 0.054827, 0.039230),
    24: (0.128881, 0.027362, 0.023167, 0.012073),
    48: (0.123429, 0.026246, 0.009433, 0.003586),
    100: (0.127884, 0.027118, 0.003537, 0.000684),
}
GOLDEN_FIELDS = ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")
#: the conditions of the table, as columns of the results table: a config declaring
#: ``reference: golden`` is compared at its rows with these values (and T in FIG3_GOLDEN)
GOLDEN_CONDITIONS = {"prior": "swiss-roll", "grid": "paper:0.04", "noise": "gaussian",
                     "step": "serial", "sigma_start": 0.01, "sigma_end": 0.05}
#: the golden values are printed to 6 decimals: agreement within this is reproduction
GOLDEN_TOLERANCE = 1e-5
