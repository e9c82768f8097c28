"""Input preprocessing of a first stage: invproto's images in [-1, 1] to the network's input convention."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from invproto.errors import ConfigError
from invproto.models.first_stages.params import PreprocessParams


class Preprocess(nn.Module):
    """``(N, C, S, S)`` images in [-1, 1] -> the network's input, as :class:`PreprocessParams` declares.

    Steps, each skipped when not configured: repeat channels, map [-1, 1]
    onto ``value_range``, resize (bilinear, antialiased) the shorter side to
    ``size``, centre-crop to ``crop``, normalise ``(x - mean) / std``.
    Differentiable (FGSM takes gradients through it). ``mean`` and ``std`` are
    buffers outside the state dict: they are configuration, not weights.
    """

    def __init__(self, params: PreprocessParams):
        super().__init__()
        self.channels, self.size, self.crop = params.channels, params.size, params.crop
        low, high = params.value_range if params.value_range is not None else (-1.0, 1.0)
        if not high > low:
            raise ConfigError(f"preprocess.value_range must be [low, high] with high > low, got {[low, high]}")
        self.low, self.high = float(low), float(high)
        if (params.mean is None) != (params.std is None):
            raise ConfigError("preprocess.mean and preprocess.std go together: give both or neither")
        normalise = params.mean is not None
        self.register_buffer("mean", torch.tensor(params.mean if normalise else [0.0]).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(params.std if normalise else [1.0]).view(1, -1, 1, 1),
                             persistent=False)
        if normalise and (self.std <= 0).any():
            raise ConfigError(f"preprocess.std must be positive, got {params.std}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.channels is not None and x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise ConfigError(f"preprocess.channels {self.channels} repeats 1-channel images; these have "
                                  f"{x.shape[1]} channels")
            x = x.expand(-1, self.channels, -1, -1)
        if (self.low, self.high) != (-1.0, 1.0):
            x = (x + 1) * ((self.high - self.low) / 2) + self.low
        if self.size is not None and min(x.shape[-2:]) != self.size:
            height, width = x.shape[-2:]
            scale = self.size / min(height, width)
            x = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bilinear",
                              align_corners=False, antialias=True)
        if self.crop is not None:
            x = TF.center_crop(x, [self.crop, self.crop])
        return (x - self.mean) / self.std
