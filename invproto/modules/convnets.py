"""Strided convolutional encoder and its mirror decoder, after the IIN reference."""

from __future__ import annotations

import torch
import torch.nn as nn

from invproto.modules.actnorm import ActNorm


class ConvEncoder(nn.Module):
    """Strided 4x4 convolutions down to a vector, after the IIN reference.

    ``n_down`` blocks of [Conv 4x4 stride 2, ActNorm, LeakyReLU(0.2)] with
    ``base_channels * 2**i`` channels take ``(N, C, S, S)`` to
    ``(N, base_channels * 2**(n_down-1), s, s)`` with ``s = S // 2**n_down``;
    a final convolution with kernel ``s`` maps that to ``(N, out_dim)``.
    """

    def __init__(self, in_channels: int, in_size: int, n_down: int, base_channels: int, out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, in_size
        for i in range(n_down):
            out_channels = base_channels * 2 ** i
            layers += [nn.Conv2d(channels, out_channels, 4, stride=2, padding=1),
                       ActNorm(out_channels), nn.LeakyReLU(0.2)]
            channels, size = out_channels, size // 2
        if size < 1:
            raise ValueError(f"in_size {in_size} is too small for n_down={n_down}")
        layers.append(nn.Conv2d(channels, out_dim, kernel_size=size))
        self.net = nn.Sequential(*layers)
        self.bottleneck_size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def upsampling_sizes(in_size: int, n_down: int) -> list[int]:
    """Spatial sizes the encoder passes through, from the bottleneck up: 28, 3 -> [3, 7, 14, 28]."""
    sizes = [in_size]
    for _ in range(n_down):
        sizes.append(sizes[-1] // 2)
    return sizes[::-1]


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: ``(N, z_dim)`` -> ``(N, out_channels, S, S)`` in [-1, 1].

    A transposed convolution with kernel ``s`` (the bottleneck size) expands the
    code to ``s x s``; then ``n_down`` blocks of [ConvTranspose 4x4 stride 2,
    ActNorm, LeakyReLU(0.2)] halve the channels and double the size. Where the
    encoder floored an odd size (7 -> 3), the block adds ``output_padding=1``
    (3 -> 7), so every ``S`` is reproduced exactly. The last block ends in
    tanh instead of ActNorm + LeakyReLU.
    """

    def __init__(self, out_channels: int, out_size: int, n_down: int, base_channels: int, z_dim: int):
        super().__init__()
        sizes = upsampling_sizes(out_size, n_down)
        if sizes[0] < 1:
            raise ValueError(f"out_size {out_size} is too small for n_down={n_down}")
        channels = [base_channels * 2 ** i for i in reversed(range(n_down))] + [out_channels]
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, channels[0], kernel_size=sizes[0]),
                                   ActNorm(channels[0]), nn.LeakyReLU(0.2)]
        for i in range(n_down):
            output_padding = sizes[i + 1] - 2 * sizes[i]
            layers.append(nn.ConvTranspose2d(channels[i], channels[i + 1], 4, stride=2, padding=1,
                                             output_padding=output_padding))
            last = i == n_down - 1
            layers += [nn.Tanh()] if last else [ActNorm(channels[i + 1]), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.last_layer = layers[-2]  # the final transposed convolution (before tanh)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])
