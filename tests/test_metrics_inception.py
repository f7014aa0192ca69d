"""Standard FID features (``metrics.inception``): the FID Inception-v3 loads a weights file
of the standard structure (made here with random weights: nothing is downloaded), and
FID/KID computed with it agree with closed forms on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.metrics.fid import FIDEvaluator
from serialrepro.metrics.inception import (
    WEIGHTS_FILE,
    WEIGHTS_URL,
    FIDInceptionV3,
    load_fid_inception,
)

#: torchvision's inception_v3 has 27,161,264 parameters with its auxiliary head (3,326,696)
#: and 1000 classes; the FID graph has no auxiliary head and 1008 classes
FID_INCEPTION_PARAMS = 27_161_264 - 3_326_696 + 8 * 2048 + 8


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights file with the standard keys and shapes (random values), saved without
    BatchNorm's num_batches_tracked counters."""
    torch.manual_seed(0)
    net = FIDInceptionV3()
    with torch.no_grad():
        for m in net.modules():  # variance-preserving weights, so features vary with input
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_FILE
    torch.save(state, path)
    return path, state


def test_the_network_has_the_standard_structure():
    net = FIDInceptionV3()
    assert sum(p.numel() for p in net.parameters()) == FID_INCEPTION_PARAMS
    state = net.state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    assert net.Conv2d_1a_3x3.bn.eps == 0.001
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 8, 8)).shape == (1, 2048)  # resized to 299×299


def test_weights_load_exactly(weights):
    path, state = weights
    net = load_fid_inception(path, input_size=75)
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_missing_or_foreign_weights_are_one_line_naming_the_file_to_get(tmp_path, weights):
    with pytest.raises(UserInputError, match=f"do not exist; get {WEIGHTS_FILE} from") as e:
        load_fid_inception(tmp_path / "nope.pth")
    assert WEIGHTS_URL in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserInputError, match="needs --inception-weights PATH"):
        load_fid_inception(None)
    _, state = weights
    for bad, needle in [
        ({k: v for k, v in state.items() if k != "Mixed_6b.branch1x1.conv.weight"},
         "missing Mixed_6b.branch1x1.conv.weight"),
        ({**state, "AuxLogits.fc.weight": torch.zeros(3)}, "unexpected AuxLogits.fc.weight"),
        ({**state, "fc.weight": torch.zeros(1000, 2048)}, r"fc.weight has shape \(1000, 2048\)"),
    ]:
        path = tmp_path / "bad.pth"
        torch.save(bad, path)
        with pytest.raises(UserInputError, match=f"not the FID Inception-v3 \\({needle}"):
            load_fid_inception(path)


def _images(n: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(-0.8, 0.8, 8).repeat(8, 1)
    return (base + 0.3 * torch.randn(n, 1, 8, 8, generator=g) + shift).clamp(-1, 1)


def _fid_closed_form(f1: np.ndarray, f2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½ in the sample space: with the
    centred features X_i, Σ_i = X_iᵀX_i/(n−1) and the last trace is the nuclear norm of
    X_1 X_2ᵀ/(n−1) (the square roots of the eigenvalues of Σ1Σ2 are its singular values)."""
    x1, x2 = f1 - f1.mean(0), f2 - f2.mean(0)
    n = f1.shape[0]
    cross = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum()
    return float(((f1.mean(0) - f2.mean(0)) ** 2).sum()
                 + ((x1**2).sum() + (x2**2).sum() - 2 * cross) / (n - 1))


def _kid_closed_form(f1: np.ndarray, f2: np.ndarray) -> float:
    """Unbiased MMD² with k(x, y) = (x·y/d + 1)³ (Bińkowski et al. 2018, eq. 4)."""
    d = f1.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(f1, f1), k(f2, f2), k(f1, f2)
    m = f1.shape[0]
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def test_fid_and_kid_with_inception_features_match_closed_forms(weights):
    net = load_fid_inception(weights[0], input_size=75)  # 75: the smallest input, for speed
    n = 16
    real = _images(n, 0.0, 1)
    ev = FIDEvaluator(net, real, seed=0)
    assert ev.label.startswith("Inception-v3")
    same, far = ev(real), ev(_images(n, 0.4, 2))  # each FID: a 2048² eigenproblem
    with torch.no_grad():
        f_real = net(real).double().numpy()
        f_near = net(_images(n, 0.1, 2)).double().numpy()
        f_far = net(_images(n, 0.4, 2)).double().numpy()
    scale = ((f_real - f_real.mean(0)) ** 2).sum() / (n - 1)  # tr Σ
    assert abs(same.fid) < 1e-5 * scale  # float32 features
    np.testing.assert_allclose(far.fid, _fid_closed_form(f_real, f_far), rtol=1e-4)
    assert 0 < _fid_closed_form(f_real, f_near) < far.fid  # FID grows with the shift
    # KID subsets of all n images: every subset is the whole set, so KID is the full MMD²
    np.testing.assert_allclose(far.kid, _kid_closed_form(f_real, f_far), rtol=1e-4)
    np.testing.assert_allclose(same.kid, _kid_closed_form(f_real, f_real), rtol=1e-4,
                               atol=1e-6)
    assert far.kid > _kid_closed_form(f_real, f_near) > same.kid


@pytest.mark.slow  # ~600 images through Inception (digits' held-out set, the samples)
def test_evaluate_uses_the_inception_features_when_asked(tmp_path, weights, monkeypatch):
    """``evaluate --fid-features inception --inception-weights FILE`` end to end (the
    network at its smallest input, 75×75, for speed)."""
    import json

    from tests.test_models_cli import run

    import serialrepro.metrics.inception as inception

    small = inception.load_fid_inception
    monkeypatch.setattr(inception, "load_fid_inception",
                        lambda path, device="cpu": small(path, device, input_size=75))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"dataset": "digits"}))
    x = np.random.default_rng(0).uniform(-1, 1, (24, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "s.npz", samples=x)
    r = run("evaluate", "--run-dir", str(run_dir), "--samples", str(tmp_path / "s.npz"),
            "--fid-features", "inception", "--inception-weights", str(weights[0]), "--json",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fid_features"] == "Inception-v3 features (standard FID)"
    assert out["fid"] > out["real_vs_real"]["fid"] > 0  # uniform noise is far from digits
    assert not (run_dir / "classifier.pt").exists()  # no local classifier was trained
    r = run("evaluate", "--run-dir", str(run_dir), "--samples", str(tmp_path / "s.npz"),
            "--inception-weights", str(weights[0]))
    assert r.returncode == 2 and "applies to --fid-features inception only" in r.stderr
