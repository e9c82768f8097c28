"""PatchGAN discriminator (pix2pix) and the GAN losses of the autoencoder.

The discriminator maps ``(N, C, S, S)`` images in [-1, 1] to a map of logits
``(N, 1, s, s)``, one per overlapping patch ("real" is positive).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm as with_spectral_norm


class PatchDiscriminator(nn.Module):
    """pix2pix ``NLayerDiscriminator``.

    ``n_layers`` 4x4 convolutions with stride 2 (the first without
    normalisation), channels ``ndf * min(2**i, 8)``, then one stride-1
    convolution with BatchNorm and a stride-1 convolution to one logit per
    patch; LeakyReLU(0.2) in between. With ``spectral_norm`` every convolution
    is spectrally normalised. 28 px inputs give a 1x1 map with ``n_layers=3``,
    32 px a 2x2 map.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, spectral_norm: bool = False):
        super().__init__()
        norm = (lambda conv: with_spectral_norm(conv)) if spectral_norm else (lambda conv: conv)
        layers: list[nn.Module] = [norm(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        channels = ndf
        for i in range(1, n_layers + 1):
            out_channels = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [norm(nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=False)),
                       nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.2)]
            channels = out_channels
        layers.append(norm(nn.Conv2d(channels, 1, 4, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def hinge_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``½ [mean relu(1 - D(x)) + mean relu(1 + D(x̂))]`` of the logits of real and fake patches."""
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def softplus_discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``½ [mean softplus(-D(x)) + mean softplus(D(x̂))]``: the reference (non-saturating) loss."""
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


DISCRIMINATOR_LOSSES = {"hinge": hinge_discriminator_loss, "softplus": softplus_discriminator_loss}


def generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """``-mean D(x̂)``: the decoder's adversarial term, for both discriminator losses."""
    return -fake.mean()
