"""Embedders: a network's representation ``Φ(x)`` -> the ``(N, E)`` condition of a conditional flow.

Chosen by the representation's shape (:func:`build_embedder`), as in the
invariances reference:

* :class:`DenseEmbedder` for a vector ``(N, C)`` (or a ``(N, C, 1, 1)`` map):
  ``depth`` linear layers whose widths go linearly from ``C`` to ``E``, ActNorm
  and LeakyReLU(0.2) between them (``10 -> 37 -> 64`` for depth 2);
* :class:`ConvEmbedder` for a feature map ``(N, C, H, W)``: ``n_down`` strided
  4x4 convolutions (stride 2, padding 1; each followed by ActNorm and
  LeakyReLU(0.2)) from ``base_channels`` channels, doubling up to
  :data:`MAX_CHANNELS`, then one convolution whose kernel covers the remaining
  ``h x w`` map, to ``E`` channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from invproto.errors import ConfigError
from invproto.modules.actnorm import ActNorm

MAX_CHANNELS = 512  # widest convolution of the conv embedder


@dataclass
class EmbedderParams:
    """``model_params.embedder``: how a representation becomes the flow's condition."""

    embedding_dim: int = 64  # E, the condition every coupling sees
    depth: int = 4  # dense embedder: linear layers from C to E
    base_channels: int = 64  # conv embedder: channels of the first strided convolution
    n_down: Optional[int] = None  # conv embedder: strided convolutions; None: automatic (automatic_n_down)


class DenseEmbedder(nn.Module):
    """``(N, C)`` or ``(N, C, 1, 1)`` -> ``(N, E)``: linear layers of linearly spaced widths."""

    def __init__(self, in_dim: int, embedding_dim: int, depth: int):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"model_params.embedder.depth is {depth}; set it to 1 or more (layers from C to E)")
        widths = np.linspace(in_dim, embedding_dim, depth + 1).round().astype(int).tolist()
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(width_in, width_out))
            if i < depth - 1:
                layers += [ActNorm(width_out), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        return self.net(representation.flatten(1))


def halvings(side: int, until: int) -> int:
    """How many stride-2 convolutions bring ``side`` pixels to at most ``until`` (``until=1``: the most possible).

    A 4x4 kernel with stride 2 and padding 1 floors the halving (``7 -> 3``), so a side of 1 cannot be halved.
    """
    count = 0
    while side > until:
        side, count = side // 2, count + 1
    return count


def automatic_n_down(height: int, width: int) -> int:
    """Halve until the longer side is at most 4, but never past one pixel on the shorter side.

    ``(7, 9) -> 1`` (to ``3 x 4``), ``(28, 20) -> 3`` (to ``3 x 2``), ``(2, 64) -> 1`` (to ``1 x 32``).
    """
    return min(halvings(max(height, width), until=4), halvings(min(height, width), until=1))


class ConvEmbedder(nn.Module):
    """``(N, C, H, W)`` -> ``(N, E)``: strided 4x4 convolutions, then one convolution over the remaining map.

    Convolution ``i`` (of ``n_down``) gives ``min(base_channels * 2**i, MAX_CHANNELS)`` channels and floors
    both sides to half; ``n_down=None`` picks :func:`automatic_n_down`. The last convolution's kernel is the
    remaining ``h x w``, so any ``H x W`` map (square or not) ends as ``(N, E, 1, 1)``, flattened.
    """

    def __init__(self, in_channels: int, height: int, width: int, embedding_dim: int, base_channels: int,
                 n_down: int | None):
        super().__init__()
        most = halvings(min(height, width), until=1)
        n_down = automatic_n_down(height, width) if n_down is None else n_down
        if not 0 <= n_down <= most:
            raise ConfigError(f"model_params.embedder.n_down {n_down} does not fit the {height}x{width} "
                              f"representation; use 0 to {most} or leave it out (automatic)")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(n_down):
            out_channels = min(base_channels * 2 ** i, MAX_CHANNELS)
            layers += [nn.Conv2d(channels, out_channels, 4, stride=2, padding=1), ActNorm(out_channels),
                       nn.LeakyReLU(0.2)]
            channels, height, width = out_channels, height // 2, width // 2
        layers.append(nn.Conv2d(channels, embedding_dim, kernel_size=(height, width)))
        self.net = nn.Sequential(*layers)

    def forward(self, representation: torch.Tensor) -> torch.Tensor:
        return self.net(representation).flatten(1)


def build_embedder(representation_shape: tuple[int, ...], params: EmbedderParams) -> nn.Module:
    """The embedder for representations of ``representation_shape`` (without N): dense for ``(C,)`` and
    ``(C, 1, 1)``, convolutional for ``(C, H, W)`` maps; :class:`ConfigError` for other shapes."""
    shape = tuple(int(s) for s in representation_shape)
    if len(shape) == 1 or (len(shape) == 3 and shape[1:] == (1, 1)):
        return DenseEmbedder(shape[0], params.embedding_dim, params.depth)
    if len(shape) == 3:
        return ConvEmbedder(shape[0], shape[1], shape[2], params.embedding_dim, params.base_channels, params.n_down)
    raise ConfigError(f"the network's representation has shape {shape} (without the batch); the embedder takes a "
                      f"vector (C,) or a feature map (C, H, W): choose another model_params.network.layer "
                      f"(a {len(shape)}-d output of {math.prod(shape)} numbers cannot be embedded)")
