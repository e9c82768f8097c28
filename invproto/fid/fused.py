"""The TF-Inception pool3 network on oneDNN's fused convolutions: the fast CPU inference path.

CPU inference (:class:`FusedTFInceptionPool3`, what ``InceptionFeatures`` uses
on the CPU when torch has oneDNN) runs the network of :mod:`invproto.fid.inception`
on oneDNN directly:

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
convolutions per image (:func:`invproto.fid.inception.convolution_flops`) are
unchanged.

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
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from invproto.fid.inception import (
    ConvReLU,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    TFInceptionPool3,
    avg_pool_3x3,
    max_pool_3x3,
)
from invproto.fid.workers import map_on_single_threaded_workers


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
        shape = (first.stride, first.padding, first.weight.shape[1:])
        if any((layer.stride, layer.padding, layer.weight.shape[1:]) != shape for layer in layers):
            raise ValueError("stacked convolutions must share kernel, stride, padding and input")
        self.weight = torch.cat([layer.weight.detach().float() for layer in layers]).contiguous()
        self.bias = torch.cat([layer.bias.detach().float() for layer in layers]).contiguous()
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
