"""The configuration of a first stage: which network, which layer, and how images reach it.

A first stage is a frozen network whose representation of an image another
model explains (``model_params.first_stage`` of an IIN, ``network`` and
``autoencoder`` of a conditional INN, ``network`` of a linear probe)::

    first_stage:
      source: torchvision             # invproto | torchvision | torchscript | module | tf_inception
      model: resnet18                 # what to build (see FirstStageParams.model)
      weights: ResNet18_Weights.IMAGENET1K_V1
      layer: layer3                   # whose activation is the representation
      in_channels: 3                  # the images the pipeline feeds
      in_size: 32
      preprocess: {size: 224, value_range: [0, 1], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}

Configs written before the other sources existed (``model``, ``model_params``,
``checkpoint`` of an invproto model) mean exactly what they meant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from invproto.config.schema import checked

SOURCES = ("invproto", "torchvision", "torchscript", "module", "tf_inception")


@dataclass
class PreprocessParams:
    """From invproto's images, ``(N, C, S, S)`` in [-1, 1], to what the network expects; applied in this order."""

    channels: Optional[int] = None  # repeat a 1-channel image to this many channels (MNIST into an RGB network)
    value_range: Optional[List[float]] = None  # map [-1, 1] linearly onto [low, high]; None: the source's own
    #   ([-1, 0.9921875] for tf_inception, else unchanged)
    size: Optional[int] = None  # resize (bilinear, antialiased) so the shorter side has this many pixels
    crop: Optional[int] = None  # then centre-crop to crop x crop pixels
    mean: Optional[List[float]] = None  # then (x - mean) / std per channel (torchvision: ImageNet statistics)
    std: Optional[List[float]] = None


@dataclass
class FirstStageParams:
    """Which frozen network a model explains, cut at which layer."""

    source: str = checked("invproto", choices=SOURCES)  # where the network comes from
    model: Optional[str] = None  # invproto: import path of the Model; torchvision: builder name (resnet18);
    #   module: import path of an nn.Module class; unused for torchscript and tf_inception
    model_params: Dict[str, Any] = field(default_factory=dict)  # invproto: its Params as trained;
    #   torchvision / module: constructor keyword arguments (e.g. {num_classes: 10})
    checkpoint: Optional[str] = None  # invproto: its checkpoint; torchvision / module: a state-dict file;
    #   torchscript: the TorchScript file
    weights: Optional[str] = None  # torchvision only: a weights enum (ResNet18_Weights.IMAGENET1K_V1, DEFAULT)
    layer: Optional[str] = None  # the representation: a module name (or torchvision graph node, or a
    #   TorchScript method); None: an invproto model's encode(), else the network's output
    in_channels: Optional[int] = None  # the images the pipeline feeds: channels C ...
    in_size: Optional[int] = None  # ... and side S; invproto models take them from model_params
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)


def describe_first_stage(params: Dict[str, Any]) -> Dict[str, Any]:
    """What a checkpoint of a model with this first stage must match: ``params`` without its checkpoint path
    (the weights are in the model's checkpoint) and without fields left at their defaults, so models
    configured before a field existed keep their description."""
    defaults = dataclasses.asdict(FirstStageParams())
    return {key: value for key, value in params.items()
            if key != "checkpoint" and not (key in defaults and value == defaults[key])}
