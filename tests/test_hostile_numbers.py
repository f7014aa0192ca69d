"""No wrong number leaves the program: training stops at the first non-finite loss or
gradient and keeps the last good checkpoint; every metric refuses non-finite input; the
pairwise metrics work in bounded blocks (the same numbers, memory linear in n)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from serialrepro.errors import UserInputError
from serialrepro.metrics import sample as metrics
from serialrepro.models import training
from serialrepro.models.training import NonFiniteTraining, TrainConfig, train


def _config(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 10, "checkpoint_every": 5, "batch_size": 32,
                          "num_timesteps": 50, "n_train": 500, **kw})


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_training_stops_at_the_first_non_finite_step_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch, what):
    real = training.diffusion_loss
    calls = {"n": 0}

    def loss_going_bad(model, process, x0, gen):
        calls["n"] += 1
        loss = real(model, process, x0, gen)
        if calls["n"] < 7:
            return loss
        if what == "loss":
            return loss * float("nan")
        # a finite loss whose gradient is not: d/dp of p·inf·0 at the graph is NaN
        p = next(model.parameters())
        return loss + (p.sum() * 0.0) * torch.tensor(float("inf"))

    monkeypatch.setattr(training, "diffusion_loss", loss_going_bad)
    with pytest.raises(NonFiniteTraining) as info:
        train(_config(), tmp_path, progress=False)
    msg = str(info.value)
    assert msg.startswith("training stopped at step 7: ") and "\n" not in msg
    assert "step 5) is kept" in msg
    ck = torch.load(tmp_path / training.CHECKPOINT_FILE, weights_only=True)
    assert int(ck["step"]) == 5 and len(ck["losses"]) == 5
    assert all(bool(torch.isfinite(v).all()) for v in ck["model"].values())
    # and the run resumes from the kept checkpoint once the fault is gone
    monkeypatch.setattr(training, "diffusion_loss", real)
    assert train(_config(), tmp_path, progress=False).step == 10


def test_weights_that_become_non_finite_are_never_saved(tmp_path):
    with pytest.raises(NonFiniteTraining, match=r"training stopped at step \d+") as info:
        train(_config(lr=1e30), tmp_path, progress=False)
    assert "no checkpoint was written" in str(info.value)
    assert not (tmp_path / training.CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("field,value", [("lr", float("inf")), ("lr", float("nan")),
                                         ("lr", 0.0), ("lr", -1.0), ("steps", 0),
                                         ("batch_size", 2.5), ("seed", 2**63),
                                         ("ema_decay", 1.0), ("dataset", 3)])
def test_bad_training_values_are_refused_before_anything_is_written(tmp_path, field, value):
    with pytest.raises(UserInputError, match=field):
        train(_config(**{field: value}), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# -- metrics ---------------------------------------------------------------------------

def _clouds(n=300, m=200, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), \
        1.3 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.2


def _brute_energy(x, y):
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean()
                 - torch.cdist(y, y).mean())


def _brute_mmd(x, y, h):
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * h * h))  # noqa: E731
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


@pytest.mark.parametrize("block", [3, 64, 10_000])
def test_blocked_distances_equal_the_full_matrices(block):
    # torch.cdist computes large blocks through a matrix product (round-off ~1e-8 on the
    # diagonal of a cloud against itself) and tiny ones directly: equal to 1e-8
    x, y = _clouds(n=150, m=100)
    assert metrics.energy_distance(x, y, block=block) == pytest.approx(_brute_energy(x, y),
                                                                       rel=1e-8)
    h = float(torch.cdist(x, y).median())
    assert metrics.mmd(x, y, block=block) == pytest.approx(_brute_mmd(x, y, h), rel=1e-8)
    assert metrics.mmd(x, y, bandwidth=0.7, block=block) == \
        pytest.approx(_brute_mmd(x, y, 0.7), rel=1e-8)


def test_the_distances_tell_different_clouds_apart():
    x, y = _clouds(n=400, m=400)
    same, _ = _clouds(n=400, m=400, seed=1)
    assert metrics.energy_distance(x, y) > 10 * abs(metrics.energy_distance(x, same))
    assert metrics.mmd(x, y) > 5 * abs(metrics.mmd(x, same))


def test_sliced_wasserstein_quantiles_match_torch_quantile():
    x, y = _clouds(n=301, m=200)
    cols = torch.sort(x @ torch.randn(2, 5, dtype=torch.float64), dim=0).values
    q = torch.linspace(0, 1, 301, dtype=torch.float64)
    assert torch.allclose(metrics._quantiles(cols, q), torch.quantile(cols, q, dim=0))


@pytest.mark.parametrize("fn", [metrics.energy_distance, metrics.mmd,
                                metrics.sliced_wasserstein, metrics.grid_kl_bits,
                                metrics.distance_scores])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_every_metric_refuses_non_finite_samples(fn, bad):
    x, y = _clouds()
    x[17, 1] = bad
    with pytest.raises(UserInputError, match="first at row 17"):
        fn(x, y)
    with pytest.raises(UserInputError, match="non-finite"):
        fn(y, torch.full_like(x, float("nan")))
    with pytest.raises(UserInputError, match="empty"):
        fn(y[:0], y)


def test_fid_refuses_non_finite_images():
    from serialrepro.metrics.fid import FeatureClassifier, FIDEvaluator

    torch.manual_seed(0)
    real = torch.rand(20, 1, 8, 8) * 2 - 1
    ev = FIDEvaluator(FeatureClassifier(), real, kid_subsets=2)
    fake = real.clone()
    fake[3] = float("nan")
    with pytest.raises(UserInputError, match="generated images hold 1 non-finite"):
        ev(fake)


MEMORY_PROBE = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from serialrepro.metrics import distance_scores
g = torch.Generator().manual_seed(0)
x, y = torch.randn(6000, 2, generator=g), torch.randn(300, 2, generator=g)
distance_scores(x[:10], y)  # warm up: libraries' own allocations
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
distance_scores(x, y)
print(json.dumps({"grew_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base}))
"""


def test_distances_of_thousands_of_points_stay_small_in_memory():
    """6000 points: one full 6000² float64 matrix alone is 275 MiB (the unblocked code held
    several); the blocked code's peak grows by a few 2048² blocks."""
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    grew_mib = json.loads(proc.stdout)["grew_kib"] / 1024
    assert grew_mib < 160, grew_mib
