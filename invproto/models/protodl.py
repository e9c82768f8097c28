"""prototypeDL: case-based reasoning through prototypes (Li, Liu, Chen & Rudin, AAAI 2018).

A convolutional autoencoder maps an image to a latent vector ``z = f(x)``
(the flattened last feature map); ``P`` prototypes ``p_j`` live in that latent
space. The classifier reads their squared distances per latent dimension,
``d_j = ||z - p_j||^2 / L``::

    logits = W (-d) + b

Li et al. write the linear layer on ``d`` itself; reading ``-d`` is the same
model with ``W`` negated, chosen so that a prototype *supports* the classes
it has positive weights for. Prototypes are not assigned to classes by
construction: :attr:`ProtoDL.prototype_class` is, for each prototype, the class
with the largest (most positive) weight ``W[c, j]``, read from the current
weights. The decoder ``g`` turns latents back into images, which makes every
prototype visible: :meth:`ProtoDL.prototype_images` decodes them.

Architecture (after the paper and p-kar/pytorch-prototypeDL): ``len(channels)``
blocks of [3x3 conv, stride 2, padding 1, ReLU] (28 px -> 14 -> 7 -> 4 -> 2 with
four blocks); the decoder mirrors them with either transposed convolutions
(``deconv``) or nearest-neighbour upsampling to the encoder's sizes followed by
a 3x3 convolution (``upconv``, the better one in the reference's table), ReLU
between blocks and a linear output: a ``tanh`` (or the paper's sigmoid) output
saturates on the constant -1 background within the first steps and the decoder
stops learning. Reconstructions are trained unclamped; the images this model
shows (:meth:`ProtoDL.prototype_images`) are clamped to [-1, 1].
Prototypes start uniform in [0, 1) as in the paper (the latent is a ReLU
output, so non-negative).

``batch_norm`` (default on) departs from the paper for speed of training: every
encoder convolution is followed by BatchNorm, and the last block drops its
ReLU, so the latent is standardised per channel and the prototypes start at
its scale, ``N(0, 1)``. The paper's plain encoder starts with latents ~100x
smaller than the prototypes, so that every image is almost equally far from
each prototype; it needs the paper's 1500 epochs, while the normalised one
learns at a plain CNN's pace (measured on MNIST: 73% vs 18% validation accuracy
after 66 steps of classification alone).

The distances are divided by ``L`` (a mean squared difference per latent
dimension): a standardised latent puts ``||z - p||^2`` near ``2 L``, so
unnormalised the logits start huge (cross-entropy ~20) and ``R1``/``R2``
outweigh the classification term by an amount that grows with the encoder's
width. Per dimension they stay O(1) at any width, as the paper's 40-d
sigmoid latent kept them, and its loss weights keep their balance (measured
on Fashion-MNIST, 4 epochs: 0.898 vs 0.888 validation accuracy).

Shapes: ``N`` images ``(N, C_img, S, S)``, ``L`` latent dimensions
(``channels[-1] * s * s``), ``P`` prototypes, ``K`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn

from invproto.config.run import abort_cleanly
from invproto.config.validation import ConfigError
from invproto.models.base import Model
from invproto.models.prototype_model import Explanation, PrototypeModel
from invproto.modules.distances import pairwise_distances

DECODERS = ("upconv", "deconv")


@dataclass
class ProtoDLOutput:
    """``latent`` ``(N, L)``, ``reconstruction`` ``(N, C_img, S, S)`` (unclamped),
    ``distances`` ``(N, P)`` squared latent distances to the prototypes per dimension, ``logits`` ``(N, K)``."""

    latent: torch.Tensor
    reconstruction: torch.Tensor
    distances: torch.Tensor
    logits: torch.Tensor


def encoder_sizes(in_size: int, n_blocks: int) -> list[int]:
    """Feature-map sizes ``[S, ceil(S/2), ...]`` of ``n_blocks`` stride-2, padding-1, 3x3 convolutions."""
    sizes = [in_size]
    for _ in range(n_blocks):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


def _decoder_block(in_channels: int, out_channels: int, in_size: int, out_size: int, kind: str) -> nn.Module:
    """One upsampling step ``(N, in_channels, in_size^2) -> (N, out_channels, out_size^2)``."""
    if kind == "upconv":
        return nn.Sequential(nn.Upsample(size=out_size, mode="nearest"),
                             nn.Conv2d(in_channels, out_channels, 3, padding=1))
    output_padding = out_size - (2 * in_size - 1)  # ConvTranspose2d(k=3, s=2, p=1) gives 2 * in - 1 + output_padding
    return nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=output_padding)


class ProtoDL(Model, PrototypeModel):
    @dataclass
    class Params:
        in_channels: int = 1  # image channels
        in_size: int = 28  # image height = width, pixels
        n_classes: int = 10  # K
        channels: List[int] = field(default_factory=lambda: [32, 32, 32, 10])  # encoder widths; last = latent channels
        n_prototypes: int = 15  # P
        decoder: str = "upconv"  # upconv | deconv
        batch_norm: bool = True  # BatchNorm after every encoder conv, standardised latent (see module doc)

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        sizes = encoder_sizes(p.in_size, len(p.channels))
        with abort_cleanly():
            if p.decoder not in DECODERS:
                raise ConfigError(f"model_params.decoder must be one of {', '.join(DECODERS)}, got {p.decoder!r}")
            if not p.channels or sizes[-1] < 1:
                raise ConfigError(f"model_params.channels {p.channels} must name at least one block and at most "
                                  f"as many as halve in_size {p.in_size} to 1 px")
        widths = [p.in_channels, *p.channels]
        encoder: list[nn.Module] = []
        decoder: list[nn.Module] = []
        for i in range(len(p.channels)):
            encoder += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1),
                        *([nn.BatchNorm2d(widths[i + 1])] if p.batch_norm else []), nn.ReLU()]
            decoder = [_decoder_block(widths[i + 1], widths[i], sizes[i + 1], sizes[i], p.decoder),
                       *([nn.ReLU()] if i else []), *decoder]
        if p.batch_norm:
            encoder.pop()  # the latent is the last BatchNorm's output, standardised, not rectified
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)
        self.latent_shape = (p.channels[-1], sizes[-1], sizes[-1])
        initial = torch.randn if p.batch_norm else torch.rand  # at the latent's scale, see module doc
        self.prototypes = nn.Parameter(initial(p.n_prototypes, self.latent_dim))
        self.classifier = nn.Linear(p.n_prototypes, p.n_classes)

    @property
    def latent_dim(self) -> int:
        channels, height, width = self.latent_shape
        return channels * height * width

    @property
    def prototype_class(self) -> torch.Tensor:
        """``(P,)`` for each prototype the class of its largest last-layer weight."""
        return self.classifier.weight.detach().argmax(dim=0)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C_img, S, S)`` images in [-1, 1] -> ``(N, L)`` latents."""
        return self.encoder(images).flatten(1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """``(N, L)`` latents -> ``(N, C_img, S, S)`` reconstructions (unclamped; data lie in [-1, 1])."""
        return self.decoder(latent.view(-1, *self.latent_shape))

    def prototype_distances(self, latent: torch.Tensor) -> torch.Tensor:
        """``(N, L)`` latents -> ``(N, P)`` squared Euclidean distances to the prototypes, divided by ``L``."""
        return pairwise_distances(latent, self.prototypes, "squared") / self.latent_dim

    def forward(self, images: torch.Tensor) -> ProtoDLOutput:
        latent = self.encode(images)
        distances = self.prototype_distances(latent)
        return ProtoDLOutput(latent=latent, reconstruction=self.decode(latent), distances=distances,
                             logits=self.classifier(-distances))

    def explain(self, images: torch.Tensor) -> Explanation:
        distances = self.prototype_distances(self.encode(images))
        return Explanation(logits=self.classifier(-distances), similarity=-distances)

    def prototype_images(self) -> torch.Tensor:
        """``(P, C_img, S, S)`` the decoded prototypes, clamped to [-1, 1]."""
        return self.decode(self.prototypes).clamp(-1, 1)
