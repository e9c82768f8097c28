"""A perceptual distance in the feature space of a trained invproto encoder.

LPIPS needs ImageNet VGG weights plus learned linear heads, neither of which
can be had offline, so the feature network here is configurable: any invproto
model whose ``encoder`` is a :class:`~invproto.modules.convnets.ConvEncoder`
(the classifier, the autoencoder), loaded frozen from one of its
checkpoints -- e.g. a classifier trained on the same dataset. The distance is
LPIPS's unlearned form ("baseline" in Zhang et al. 2018): for every encoder
stage ``l`` (the output of each LeakyReLU), channel-normalised features ``f̂``
give ``d_l = mean_{h,w} sum_c (f̂_l(x) - f̂_l(y))^2``, and ``d = sum_l d_l``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from invproto.errors import ConfigError
from invproto.models.first_stages import FirstStageParams, load_first_stage

NORM_EPS = 1e-10


class EncoderPerceptualDistance(nn.Module):
    """``(N, C, S, S)`` image pairs -> ``(N,)`` perceptual distances (gradients reach the images only)."""

    def __init__(self, network: FirstStageParams):
        super().__init__()
        model = load_first_stage(network, "loss.params.perceptual").network
        stages = getattr(getattr(model, "encoder", None), "net", None)
        if not isinstance(stages, nn.Sequential):
            raise ConfigError(f"loss.params.perceptual.model {network.model} has no convolutional "
                              f"encoder (model.encoder.net); use an invproto classifier or autoencoder")
        self.stages = stages

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised ``(N, C_l, S_l, S_l)`` activations after every LeakyReLU of the encoder."""
        features, x = [], images
        for layer in self.stages:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x / (x.square().sum(1, keepdim=True).sqrt() + NORM_EPS))
        return features

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum((fx - fy).square().sum(1).mean((1, 2)) for fx, fy in zip(self.features(x), self.features(y)))

    def train(self, mode: bool = True) -> "EncoderPerceptualDistance":
        """The feature network stays frozen in eval mode."""
        return super().train(False)
