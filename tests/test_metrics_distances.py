"""Sample distances against closed forms, and FID/KID with the local feature classifier."""

from __future__ import annotations

import math

import pytest
import torch

from serialrepro.data import load_dataset
from serialrepro.metrics import energy_distance, grid_kl_bits, mmd, sliced_wasserstein
from serialrepro.metrics.fid import FIDEvaluator, accuracy, cached_classifier, fid_warning


def test_energy_distance_matches_the_gaussian_shift_closed_form():
    """1-D N(0,1) vs N(μ,1): E|X−Y| = σ√(2/π) e^{−μ²/2σ²} + μ(1 − 2Φ(−μ/σ)), σ = √2,
    E|X−X'| = 2/√π, so ED = 2E|X−Y| − 2·2/√π (Székely & Rizzo)."""
    g = torch.Generator().manual_seed(0)
    mu, n = 1.0, 4000
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = mu + torch.randn(n, 1, generator=g, dtype=torch.float64)
    s = math.sqrt(2)
    phi = 0.5 * (1 + math.erf(-mu / s / math.sqrt(2)))
    exy = s * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * s**2)) + mu * (1 - 2 * phi)
    want = 2 * exy - 2 * (2 / math.sqrt(math.pi))
    # the estimator's sd is ≈ 0.027 at n = 4000 (measured over seeds): 3 sd tolerance
    assert energy_distance(x, y) == pytest.approx(want, abs=0.08)
    assert abs(energy_distance(x[:2000], x[2000:])) < 0.02


def test_mmd_is_zero_for_equal_sets_and_grows_with_shift():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 2, generator=g)
    assert mmd(x, x) == pytest.approx(0.0, abs=1e-12)
    shifts = [mmd(x, torch.randn(400, 2, generator=g) + d, bandwidth=1.0) for d in (0, 0.5, 2)]
    assert shifts[0] < shifts[1] < shifts[2]
    # closed form for a point mass vs itself shifted by d: 2 − 2 exp(−d²/2h²)
    a, b = torch.zeros(5, 2), torch.full((5, 2), 1.0)
    assert mmd(a, b, bandwidth=1.0) == pytest.approx(2 - 2 * math.exp(-1.0), abs=1e-12)


def test_sliced_wasserstein_of_a_translation():
    """y = x + v: every projection is shifted by θ·v, so SW₂² = E(θ·v)² = |v|²/D."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(500, 4, generator=g, dtype=torch.float64)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    sw = sliced_wasserstein(x, x + v, n_projections=4000, generator=g)
    assert sw == pytest.approx(float(v.norm()) / 2, rel=0.05)
    assert sliced_wasserstein(x, x, generator=g) == 0.0


def test_grid_kl_bits():
    x = torch.rand(4000, 2, generator=torch.Generator().manual_seed(3))
    assert grid_kl_bits(x, x, bins=8, bounds=(0, 1)) == 0.0
    # all samples in the left half of a uniform reference: KL = log2(2) = 1 bit
    left = x * torch.tensor([0.5, 1.0])
    assert grid_kl_bits(left, x, bins=8, bounds=(0, 1)) == pytest.approx(1.0, abs=0.05)


def test_fid_of_real_digits_is_far_below_noise(tmp_path):
    d = load_dataset("digits")
    clf = cached_classifier(tmp_path, d.train, d.train_labels, steps=150)
    assert accuracy(clf, d.test, d.test_labels) > 0.8
    # the cache returns the same network
    again = cached_classifier(tmp_path, d.train, d.train_labels, steps=150)
    assert torch.equal(again(d.test[:5]), clf(d.test[:5]))
    ev = FIDEvaluator(clf, d.test[:400], n_real_available=d.test.shape[0])
    real = ev(d.train[:400])
    noise = ev(torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert real.fid < noise.fid / 10, (real.fid, noise.fid)
    assert real.kid < noise.kid / 10
    # 139 more held-out images exist, so the warning asks for them
    assert real.n_real == real.n_fake == 400 and "≥ 539 real (of 539)" in real.warning
    # all held-out images and as many generated ones: nothing more to ask for
    assert FIDEvaluator(clf, d.test)(d.train[:539]).warning is None


def test_fid_warning_threshold():
    assert fid_warning(10000, 10000, 64) is None
    assert "≥ 640 real (of 5000)" in fid_warning(500, 10000, 64, n_real_available=5000)
    assert "640 generated" in fid_warning(5000, 500, 64, n_real_available=5000)
    # fewer real images than 640 exist (digits: 539 held out): warn only below that count
    assert fid_warning(539, 1000, 64, n_real_available=539) is None
    assert fid_warning(539, 539, 64) is None
    msg = fid_warning(539, 300, 64, n_real_available=539)
    assert "≥ 539 generated" in msg and "real (of" not in msg
