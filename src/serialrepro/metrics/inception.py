"""The standard FID feature network: Inception-v3 as TensorFlow's FID code ran it.

FID and KID as published (Heusel et al. 2017; Bińkowski et al. 2018) use the 2048-d
final average-pool activations of the Inception-v3 of ``inception-2015-12-05`` (the
graph of TensorFlow's original FID code), not torchvision's retrained Inception. Its
weights, ported to PyTorch, are the file :data:`WEIGHTS_FILE` (:data:`WEIGHTS_URL`); the
user supplies it (nothing is downloaded). :class:`FIDInceptionV3` is that network written
out here, module names and shapes identical to the file's keys (those of torchvision's
``Inception3`` with 1008 classes and no auxiliary head), so the file loads with
``torch.load(weights_only=True)`` and a strict key check, with no torchvision needed.

The FID graph differs from torchvision's Inception-v3 in three places, all kept here:
the average pools of the A, C and first E blocks exclude the zero padding from their
means (TensorFlow's ``avg_pool``), and the last E block pools its fourth branch with a
max, not an average. Batch norms have ε = 0.001.

Input handling (:meth:`FIDInceptionV3.forward`) follows the common PyTorch port of that
code (pytorch-fid): images in [−1, 1] are clipped and quantised to 8 bits as a saved
PNG would be, grey images are repeated to three channels, resized bilinearly to 299×299
(``align_corners=False``) and scaled to [−1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import Tensor, nn

from serialrepro.errors import UserInputError

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               + WEIGHTS_FILE)
#: input side the network was trained at
INPUT_SIZE = 299
NUM_FEATURES = 2048


class _Conv(nn.Module):
    """Convolution without bias, batch norm (ε = 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: Tensor) -> Tensor:
    """3×3 average pool, stride 1, whose means leave the zero padding out (TensorFlow)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1 = _Conv(cin, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _BlockB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, **row)
        self.branch7x7_3 = _Conv(c7, 192, **col)
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, **col)
        self.branch7x7dbl_3 = _Conv(c7, c7, **row)
        self.branch7x7dbl_4 = _Conv(c7, c7, **col)
        self.branch7x7dbl_5 = _Conv(c7, 192, **row)
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                     self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class _BlockD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        d = x
        for conv in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                     self.branch7x7x3_4):
            d = conv(d)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), d,
                          F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """The E block; ``max_pool`` for the last one of the FID graph (module docstring)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the FID graph; ``forward`` returns the 2048 pool features."""

    num_features = NUM_FEATURES
    #: images per forward pass (read by the FID evaluator)
    batch_size = 50

    def __init__(self, input_size: int = INPUT_SIZE) -> None:
        super().__init__()
        #: side images are resized to (299 for the standard features)
        self.input_size = int(input_size)
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # the classifier head of the file (unused by FID)

    def preprocess(self, x: Tensor) -> Tensor:
        """Images in [−1, 1], [N, 1 or 3, H, W] → the network's input (module docstring)."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise UserInputError(f"Inception features need images [N, 1 or 3, H, W]; got "
                                 f"shape {tuple(x.shape)}")
        u = torch.round((x.float().clamp(-1, 1) + 1) * 127.5) / 255.0  # an 8-bit image
        if u.shape[1] == 1:
            u = u.expand(-1, 3, -1, -1)
        u = F.interpolate(u, size=(self.input_size, self.input_size), mode="bilinear",
                          align_corners=False)
        return 2 * u - 1

    def features(self, x: Tensor) -> Tensor:
        """The 2048-d final average-pool activations of preprocessed input ``x``."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(self.preprocess(x))

    def train(self, mode: bool = True) -> FIDInceptionV3:
        # torchmetrics toggles train mode on its children; batch norms stay in eval
        return super().train(False)


def _get_it() -> str:
    return f"get {WEIGHTS_FILE} from {WEIGHTS_URL}"


def load_fid_inception(path: str | Path | None, device: torch.device | str = "cpu",
                       input_size: int = INPUT_SIZE) -> FIDInceptionV3:
    """:class:`FIDInceptionV3` with the standard weights from the local file ``path``
    (``weights_only=True``); a missing file or one with other keys or shapes is one line
    naming the file to get. BatchNorm's ``num_batches_tracked`` counters may be absent."""
    from serialrepro.loaders import load_checkpoint

    if path is None:
        raise UserInputError(f"--fid-features inception needs --inception-weights PATH: "
                             f"{_get_it()}")
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Inception weights {str(path)!r} "
                             f"{'is not a file' if path.exists() else 'do not exist'}; "
                             f"{_get_it()}")
    state = load_checkpoint(path, what="Inception weights")
    net = FIDInceptionV3(input_size)
    want = net.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UserInputError(f"Inception weights {str(path)!r} do not hold a state dict "
                             f"(name → tensor); {_get_it()}")
    optional = {k for k in want if k.endswith("num_batches_tracked")}
    missing = [k for k in want if k not in state and k not in optional]
    extra = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                 else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, not "
                      f"{tuple(want[wrong[0]].shape)}")
        raise UserInputError(f"Inception weights {str(path)!r} are not the FID Inception-v3 "
                             f"({first}); {_get_it()}")
    full = {**{k: want[k] for k in optional}, **state}
    net.load_state_dict(full)
    return net.to(device).eval().requires_grad_(False)
