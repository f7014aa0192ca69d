"""FID and KID with a locally trained classifier as the feature network.

Inception-v3 features would need downloaded weights and 299×299 inputs; instead, as is
common for MNIST-scale work, a small CNN classifier is trained on the same data set's
training split, and its penultimate activations are the features. Its weights are cached in
the run directory (``classifier.pt``, loaded with ``weights_only=True``), so every FID of a
run uses the same feature network. FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018)
are computed by torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance``
with this module as ``feature``. Absolute values are not comparable with Inception FIDs;
trends across samplers and step counts are. Where the user has the standard weights file,
``--fid-features inception`` computes FID/KID with the standard Inception-v3 features
instead (:mod:`serialrepro.metrics.inception`); the classifier stays the offline default.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from serialrepro import atomic
from serialrepro.errors import UserInputError

CLASSIFIER_FILE = "classifier.pt"
#: FID with fewer samples than this many times the feature dimension is strongly biased.
MIN_SAMPLES_PER_FEATURE = 10


class FeatureClassifier(nn.Module):
    """A small CNN: three conv layers, global average pooling, a linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)
        self.num_features = 2 * width
        self.register_buffer("feature_mean", torch.zeros(2 * width))
        self.register_buffer("feature_std", torch.ones(2 * width))

    @torch.no_grad()
    def set_feature_scale(self, x: Tensor) -> None:
        """Record the mean and std of the features of ``x`` (the training images)."""
        f = torch.cat([self.features(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)])
        self.feature_mean.copy_(f.mean(0))
        self.feature_std.copy_(f.std(0).clamp(min=1e-6))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class FeatureExtractor(nn.Module):
    """The classifier's penultimate features, in the form torchmetrics expects.

    Features are standardised with the classifier's ``feature_mean``/``feature_std`` (taken
    on its training images): a fixed affine map, so FID stays a distance between the same
    two feature distributions, while KID's polynomial kernel (x·y/d + 1)³ sees unit-scale
    features, as it assumes.
    """

    def __init__(self, classifier: FeatureClassifier) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = classifier.num_features

    def forward(self, x: Tensor) -> Tensor:
        c = self.classifier
        return (c.features(x.float()) - c.feature_mean) / c.feature_std

    def train(self, mode: bool = True) -> FeatureExtractor:
        # torchmetrics toggles train mode on its children; the feature network stays fixed
        return super().train(False)


def train_classifier(
    x: Tensor, y: Tensor, seed: int = 0, steps: int = 600, batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> FeatureClassifier:
    """Train the feature classifier (Adam, cross-entropy, small random shifts), seeded."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureClassifier(x.shape[1], int(y.max()) + 1).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x, y = x.to(device), y.to(device)
    net.train()
    for _ in range(steps):
        idx = torch.randint(x.shape[0], (batch_size,), generator=gen, device=device)
        xb = x[idx]
        shift = torch.randint(-1, 2, (2,), generator=gen, device=device).tolist()
        xb = torch.roll(xb, shifts=shift, dims=(-2, -1))  # light augmentation
        loss = nn.functional.cross_entropy(net(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval().set_feature_scale(x)
    return net


@torch.no_grad()
def accuracy(net: FeatureClassifier, x: Tensor, y: Tensor) -> float:
    dev = next(net.parameters()).device
    return float((net(x.to(dev)).argmax(1).cpu() == y).float().mean())


def cached_classifier(run_dir: str | Path, x: Tensor, y: Tensor, seed: int = 0,
                      device: torch.device | str = "cpu", **kwargs) -> FeatureClassifier:
    """Load ``run_dir/classifier.pt`` or train the classifier and save it there atomically."""
    from serialrepro.loaders import check_state_dict, load_checkpoint

    path = Path(run_dir) / CLASSIFIER_FILE
    if path.exists():
        state = load_checkpoint(path, map_location=device, what="classifier")
        source = f"classifier {str(path)!r}"
        try:
            net = FeatureClassifier(int(state["in_channels"]), int(state["num_classes"]))
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise UserInputError(f"{source} is not a feature classifier of serialrepro "
                                 f"(delete it to retrain)") from None
        net.load_state_dict(check_state_dict(state.get("weights"), net, source))
        return net.to(device).eval()
    net = train_classifier(x, y, seed=seed, device=device, **kwargs)
    atomic.torch_save({"weights": net.state_dict(), "in_channels": x.shape[1],
                       "num_classes": int(y.max()) + 1}, path)
    return net


class _Identity(nn.Module):
    """Features in, features out (the metrics' "feature network" for precomputed ones)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


@dataclass
class FIDResult:
    fid: float
    kid: float
    kid_std: float
    n_real: int
    n_fake: int
    warning: str | None = None


#: feature networks of FID/KID: the local classifier (default) or the standard Inception
FID_FEATURES = ("classifier", "inception")


def check_fid_features(kind: str, inception_weights: str | Path | None) -> str:
    """``kind`` when it is a feature network name and its options fit, else one line."""
    from serialrepro.errors import unknown_name

    if kind not in FID_FEATURES:
        raise unknown_name("FID feature network", kind, FID_FEATURES)
    if kind == "classifier" and inception_weights is not None:
        raise UserInputError("--inception-weights applies to --fid-features inception only")
    return kind


def fid_feature_network(kind: str, inception_weights: str | Path | None,
                        classifier_dir: str | Path, data, seed: int = 0,
                        device: torch.device | str = "cpu", **classifier_options) -> nn.Module:
    """The feature network of FID/KID: the local classifier of ``data`` (cached in
    ``classifier_dir``, :func:`cached_classifier`) or the standard Inception-v3 from the
    local weights file (:func:`serialrepro.metrics.inception.load_fid_inception`)."""
    check_fid_features(kind, inception_weights)
    if kind == "inception":
        from serialrepro.metrics.inception import load_fid_inception

        return load_fid_inception(inception_weights, device)
    return cached_classifier(classifier_dir, data.train, data.train_labels, seed=seed,
                             device=device, **classifier_options)


def feature_label(feature: nn.Module) -> str:
    """How a report names the features FID was computed with."""
    if isinstance(feature, FeatureClassifier | FeatureExtractor):
        return "local classifier features"
    return "Inception-v3 features (standard FID)"


class FIDEvaluator:
    """FID/KID of many sample sets against one fixed real set (real statistics kept).

    ``feature`` is the local :class:`FeatureClassifier` (its standardised penultimate
    features, :class:`FeatureExtractor`) or any feature module with ``num_features``, such
    as the standard :class:`~serialrepro.metrics.inception.FIDInceptionV3`, whose raw
    pool features are used as published FIDs and KIDs use them. A module's own
    ``batch_size`` attribute caps the images per forward pass (Inception at 299×299 needs
    a few MB per image).
    """

    def __init__(self, feature: nn.Module, real: Tensor, batch_size: int = 1000,
                 kid_subsets: int = 50, seed: int = 0,
                 n_real_available: int | None = None) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        from serialrepro.metrics.sample import check_finite

        if real.shape[0] < 2:
            raise UserInputError("FID needs at least 2 real images")
        check_finite(real, "the real images")
        self.device = next(feature.parameters()).device
        feat = FeatureExtractor(feature) if isinstance(feature, FeatureClassifier) else feature
        self.label = feature_label(feat)
        batch_size = min(batch_size, int(getattr(feat, "batch_size", batch_size)))
        self.n_real = int(real.shape[0])
        #: how many real images exist (default: ``real`` is all of them), so the sample-size
        #: warning only asks for more where more can be had
        self.n_real_available = max(self.n_real, int(n_real_available or 0))
        self.batch_size = batch_size
        self.kid_subsets = kid_subsets
        self.seed = seed
        self.feature = feat
        self.num_features = feat.num_features
        # features are computed once per image set here, and the metrics are fed them
        # through an identity "feature network": the real set's features serve every
        # call, and FID and KID share the generated set's (one pass of the network each)
        ident = _Identity(self.num_features)
        self.fid = FrechetInceptionDistance(feature=ident, reset_real_features=False).to(
            self.device)
        self._kid_args = dict(feature=ident, reset_real_features=False, subsets=kid_subsets)
        self.real = real
        self.real_features = self.features(real)
        self.fid.update(self.real_features, real=True)

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """The feature network's output for images ``x``, in batches, on its device."""
        return torch.cat([self.feature(x[s:s + self.batch_size].to(self.device))
                          for s in range(0, x.shape[0], self.batch_size)])

    @torch.no_grad()
    def __call__(self, fake: Tensor) -> FIDResult:
        from torchmetrics.image.kid import KernelInceptionDistance

        from serialrepro.metrics.sample import check_finite

        n_fake = int(fake.shape[0])
        if n_fake < 2:
            raise UserInputError("FID needs at least 2 generated images")
        check_finite(fake, "the generated images")
        fake_features = self.features(fake)
        self.fid.reset()
        self.fid.update(fake_features, real=False)
        fid = float(self.fid.compute())
        subset = min(1000, n_fake, self.n_real)
        with warnings.catch_warnings():
            # its notice that features are kept in memory: true, and small here
            warnings.filterwarnings("ignore", message=".*will save all extracted features")
            kid_metric = KernelInceptionDistance(subset_size=subset,
                                                 **self._kid_args).to(self.device)
        kid_metric.update(self.real_features, real=True)
        kid_metric.update(fake_features, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # KID's random subsets
            kid, kid_std = (float(v) for v in kid_metric.compute())
        return FIDResult(fid, kid, kid_std, self.n_real, n_fake, fid_warning(
            self.n_real, n_fake, self.num_features, self.n_real_available))


def fid_warning(n_real: int, n_fake: int, num_features: int,
                n_real_available: int | None = None) -> str | None:
    """A warning when a larger sample would give a less biased FID and can be had, else None.

    FID's bias grows as the smaller of the two sample counts falls below about
    ``MIN_SAMPLES_PER_FEATURE`` × the feature dimension. Generated samples are unlimited;
    real ones are limited to ``n_real_available`` (default ``n_real``: all there are). The
    warning fires only when the counts are below ``min(need, n_real_available)``: a data set
    with fewer held-out images than ``need`` (digits: 539) cannot do better, and its FIDs
    are compared with the real-vs-real reference at the same counts instead. The caller
    shows the message (once); nothing is sent to :mod:`warnings`.
    """
    need = MIN_SAMPLES_PER_FEATURE * num_features
    reachable = min(need, max(n_real, n_real_available or 0))
    if min(n_real, n_fake) >= reachable:
        return None
    wants = []
    if n_real < reachable:
        wants.append(f"≥ {reachable} real (of {max(n_real, n_real_available or 0)})")
    if n_fake < reachable:
        wants.append(f"≥ {reachable} generated")
    return (f"FID from {n_real} real / {n_fake} generated samples with {num_features}-d"
            f" features is biased upwards and noisy; use {' and '.join(wants)}, and compare"
            " FIDs only at equal sample counts")
