"""Variational autoencoder after the IIN reference (the first stage the IIN interprets).

Encoder: ``n_down`` strided 4x4 convolutions with ActNorm and LeakyReLU(0.2)
(:class:`~invproto.modules.convnets.ConvEncoder`) to the parameters of a diagonal
Gaussian over a ``z_dim`` latent (mean || logvar). Decoder: the mirror image,
4x4 transposed convolutions with stride 2, ending in tanh, so that decoded
images lie in [-1, 1] like the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from invproto.models.base import Model
from invproto.modules.convnets import ConvDecoder, ConvEncoder
from invproto.modules.gaussian import DiagonalGaussian


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
