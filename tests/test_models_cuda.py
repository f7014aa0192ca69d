"""The trained-model path on CUDA (skipped without a GPU): training, every sampler, FID
features and a diffusers model run on the device, and results follow their input's
device."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits model trained on the GPU: (model, its run directory)."""
    from serialrepro.models.training import TrainConfig, train

    cfg = TrainConfig(dataset="digits", family="gaussian", num_timesteps=50, steps=20,
                      batch_size=32, denoiser_options={"base": 8}, checkpoint_every=20)
    run_dir = tmp_path_factory.mktemp("cuda") / "run"
    return train(cfg, run_dir, device="cuda", progress=False), run_dir


def test_training_and_every_sampler_run_on_cuda(run):
    from serialrepro.models.samplers import SAMPLERS
    from serialrepro.models.training import load_trained, sample_from

    trained, run_dir = run
    assert next(trained.denoiser.parameters()).device.type == "cuda"
    for name in SAMPLERS:
        x = sample_from(trained, 8, sampler=name, stride=5, seed=0, device="cuda")
        assert x.shape == (8, 1, 8, 8) and bool(torch.isfinite(x).all())
    reloaded = load_trained(run_dir, "cuda")
    assert next(reloaded.denoiser.parameters()).device.type == "cuda"


def test_samplers_and_steps_follow_the_input_device(run):
    from serialrepro.models.samplers import get_sampler

    trained = run[0]
    proc = trained.process.respace(10)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = proc.family.limit_sample((4, 1, 8, 8), g, torch.float32, CUDA)
    assert x.device.type == "cuda"
    for name in ("ddpm", "ddim"):
        traj = get_sampler(name)(trained.denoiser, x, proc, g, keep_states=True)
        assert traj.samples.device.type == "cuda"
        assert all(s.device.type == "cuda" for s in traj.x0_preds)
    x0 = torch.zeros(3, 1, 8, 8, device=CUDA)
    noise = torch.randn(3, 1, 8, 8, device=CUDA)
    assert proc.q_sample(x0, torch.tensor([0, 10, 40], device=CUDA), noise).device.type == "cuda"


def test_fid_features_run_on_cuda():
    from serialrepro.metrics.fid import FIDEvaluator, train_classifier
    from serialrepro.metrics.inception import FIDInceptionV3

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 8, 8, generator=g) * 2 - 1
    y = torch.randint(0, 10, (64,), generator=g)
    clf = train_classifier(x, y, steps=5, device="cuda")
    res = FIDEvaluator(clf, x[:32], seed=0)(x[32:])
    assert res.fid >= 0 and res.kid == res.kid
    net = FIDInceptionV3(75).to(CUDA).eval()
    with torch.no_grad():
        assert net(x[:2].to(CUDA)).device.type == "cuda"


def test_a_diffusers_model_samples_on_cuda(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from serialrepro.models.external import load_diffusers_model
    from serialrepro.models.training import sample_from

    torch.manual_seed(0)
    diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1,
                          block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                          down_block_types=("DownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(tmp_path)
    diffusers.DDPMScheduler(num_train_timesteps=100).save_pretrained(tmp_path)
    model = load_diffusers_model(tmp_path, "cuda")
    x = sample_from(model, 4, sampler="ddpm", stride=10, seed=0, device="cuda")
    assert bool(torch.isfinite(x).all())
