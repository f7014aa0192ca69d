"""docs/design.md §2's golden table, typed in once for every test that checks it: the paper's
Figure 3 conditions computed by the authors' published MATLAB code (Swiss roll, gaussian
noise, paper grid h = 0.04, serial-reproduction step, σ linearly spaced 0.01 → 0.05).

Kept apart from ``serialrepro.experiments.golden`` on purpose: the tests hold the package
to numbers it cannot edit."""

#: T → (kl, jsd, complexity, stationarity), 6 decimals
GOLDEN = {
    2: (0.449178, 0.079464, 0.682085, 0.002407),
    3: (0.383357, 0.069800, 0.331028, 0.239327),
    6: (0.250175, 0.048287, 0.117919, 0.104547),
    12: (0.163212, 0.033779, 0.054827, 0.039230),
    24: (0.128881, 0.027362, 0.023167, 0.012073),
    48: (0.123429, 0.026246, 0.009433, 0.003586),
    100: (0.127884, 0.027118, 0.003537, 0.000684),
}
KEYS = ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")
