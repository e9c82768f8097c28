"""Image classifier after the IIN reference: conv encoder -> 64-d code -> linear head.

Trained with softmax cross-entropy (the reference used BCE on one-hot targets).
The 64-d code is what the invertible interpretation networks explain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from invproto.models.base import HeadClassifier
from invproto.modules.convnets import ConvEncoder


class Classifier(HeadClassifier):
    @dataclass
    class Params:
        in_channels: int = 1  # image channels C
        in_size: int = 28  # image height = width S, in pixels
        n_classes: int = 10
        n_down: int = 3  # strided convolutions (28 px -> 3 px with 3)
        base_channels: int = 64  # channels of the first convolution; doubled per block
        code_dim: int = 64  # size of the code the IIN interprets

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        self.encoder = ConvEncoder(p.in_channels, p.in_size, p.n_down, p.base_channels, p.code_dim)
        self.head = nn.Linear(p.code_dim, p.n_classes)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, code_dim)`` codes."""
        return self.encoder(images)
