"""The TF Inception-v3 graph of 2015-12-05 up to its 2048-d ``pool_3`` layer, as a plain ``nn.Module``.

This is the network every published FID was computed with. It is rebuilt here
so that inference is fast: each convolution's batch norm (TF's ``beta``-only
variant) is folded into the convolution's weight and bias
(:func:`invproto.fid.weights.load_folded_weights`), and activations stay in
``channels_last`` memory layout end to end. Module and parameter names mirror
the TorchScript file's, so the folded weights load with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 299  # pixels per side of the network input


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
    """3x3 max pool; by default stride 2 without padding (TF 'VALID'), halving the resolution."""
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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` -> the last mixed block's ``(N, 2048, s, s)`` map (8 x 8 at 299 px; S >= 75)."""
        s = self.layers
        x = s.conv_2(s.conv_1(s.conv(x)))
        x = s.conv_4(s.conv_3(max_pool_3x3(x)))
        x = max_pool_3x3(x)
        for block in (s.mixed, s.mixed_1, s.mixed_2, s.mixed_3, s.mixed_4, s.mixed_5, s.mixed_6,
                      s.mixed_7, s.mixed_8, s.mixed_9, s.mixed_10):
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.features(x), 8).flatten(1)


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
