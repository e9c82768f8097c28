"""Variational autoencoder after the IIN reference (the first stage the IIN interprets).

Encoder: ``n_down`` strided 4x4 convolutions with ActNorm and LeakyReLU(0.2)
(:class:`~invproto.models.layers.ConvEncoder`) to the parameters of a diagonal
Gaussian over a ``z_dim`` latent (mean || logvar). Decoder: the mirror image,
4x4 transposed convolutions with stride 2, ending in tanh, so that decoded
images lie in [-1, 1] like the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from invproto.models.base import Model
from invproto.models.layers import ActNorm, ConvEncoder

LOGVAR_MIN, LOGVAR_MAX = -30.0, 10.0  # clamp of the posterior's log-variance (reference values)


class DiagonalGaussian:
    """Gaussian ``N(mean, diag(exp(logvar)))`` per example.

    ``parameters`` is ``(N, 2 * D)``: mean ``(N, D)`` followed by log-variance
    ``(N, D)``; the log-variance is clamped to ``[LOGVAR_MIN, LOGVAR_MAX]``.
    """

    def __init__(self, parameters: torch.Tensor):
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised sample ``mean + std * eps``, ``(N, D)``; differentiable."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        """The mean, ``(N, D)``."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """``KL(self || N(0, I))`` per example in nats, ``(N,)``."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=1)


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


class Autoencoder(Model):
    @dataclass
    class Params:
        in_channels: int = 1  # image channels C (1 grayscale, 3 RGB)
        in_size: int = 28  # image height = width S in pixels (28, 32, 64, ...)
        n_down: int = 3  # strided convolutions; 3 for 28 px (-> 3 px), 4 for 32 px (-> 2 px)
        base_channels: int = 64  # channels of the first convolution, doubled per block
        z_dim: int = 64  # latent dimension D (the encoder outputs mean and log-variance: 2 D)

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        self.encoder = ConvEncoder(p.in_channels, p.in_size, p.n_down, p.base_channels, 2 * p.z_dim)
        self.decoder = ConvDecoder(p.in_channels, p.in_size, p.n_down, p.base_channels, p.z_dim)

    @property
    def last_layer_weight(self) -> nn.Parameter:
        """Weight of the decoder's last layer, where the GAN weight is calibrated."""
        return self.decoder.last_layer.weight

    def encode(self, images: torch.Tensor) -> DiagonalGaussian:
        """``(N, C, S, S)`` images in [-1, 1] -> posterior over ``(N, z_dim)`` codes."""
        return DiagonalGaussian(self.encoder(images))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, z_dim)`` codes -> ``(N, C, S, S)`` images in [-1, 1]."""
        return self.decoder(z)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction: decode the posterior mean."""
        return self.decode(self.encode(images).mode())
