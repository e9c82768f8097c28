"""Convolutional backbones cut at a named layer (part-prototype networks' feature extractors).

A backbone (``model_params.backbone``) is

* ``vgg``: the stack ``features``, VGG style: an integer is a 3x3 convolution
  (padding 1) with that many channels + BatchNorm + ReLU, ``"M"`` a 2x2
  max-pool;
* the name of a torchvision classification model (``vgg11_bn``, ``resnet18``,
  ...), built with ``weights`` (``null``: random initialisation, no
  download). Grayscale images are repeated to 3 channels; with ``weights``
  they are normalised to the ImageNet statistics the weights expect.

``cut`` is the dotted name of the last backbone layer kept (``features.20``,
``layer2``; ``"5"`` in the ``vgg`` stack, whose layers are numbered); the
backbone runs the model's children in order up to it, so the model's forward
must be that sequence up to the cut (VGG, AlexNet, ResNet up to ``layer4``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch.nn as nn

from invproto.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # what torchvision's weights expect


def vgg_stack(in_channels: int, features: List[Any]) -> nn.Sequential:
    """VGG-style layers: ``int`` -> Conv 3x3 (padding 1) + BatchNorm + ReLU, ``"M"`` -> MaxPool 2x2."""
    layers: list[nn.Module] = []
    channels = in_channels
    for entry in features:
        if entry == "M":
            layers.append(nn.MaxPool2d(2))
        elif isinstance(entry, int) and not isinstance(entry, bool) and entry > 0:
            layers += [nn.Conv2d(channels, entry, 3, padding=1), nn.BatchNorm2d(entry), nn.ReLU(inplace=True)]
            channels = entry
        else:
            raise ConfigError(f"model_params.features entries must be channel counts (positive int) "
                             f"or 'M' (2x2 max-pool), got {entry!r}")
    return nn.Sequential(*layers)


def modules_until(module: nn.Module, cut: str) -> tuple[list[nn.Module], bool]:
    """The children of ``module`` executed up to and including the one named ``cut`` (dotted), and whether it exists."""
    kept: list[nn.Module] = []
    for name, child in module.named_children():
        if name == cut:
            return kept + [child], True
        if cut.startswith(name + "."):
            inner, found = modules_until(child, cut[len(name) + 1:])
            return kept + inner, found
        kept.append(child)
    return kept, False


def truncate(module: nn.Module, cut: Optional[str]) -> nn.Sequential:
    """``module``'s layers up to ``cut`` as one ``nn.Sequential`` (all of them when ``cut`` is null)."""
    if cut is None:
        return module if isinstance(module, nn.Sequential) else nn.Sequential(*module.children())
    layers, found = modules_until(module, cut)
    if not found:
        names = [name for name, _ in module.named_modules() if name][:40]
        raise ConfigError(f"model_params.cut '{cut}' is not a layer of the backbone; "
                         f"layers are: {', '.join(names)}")
    return nn.Sequential(*layers)


def build_backbone(backbone: str, in_channels: int, features: List[Any], cut: Optional[str],
                   weights: Optional[str]) -> nn.Sequential:
    if backbone == "vgg":
        return truncate(vgg_stack(in_channels, features), cut)
    import torchvision

    if backbone not in torchvision.models.list_models():
        raise ConfigError(f"model_params.backbone must be 'vgg' or a torchvision model name "
                         f"(e.g. vgg11_bn, resnet18), got '{backbone}'")
    if cut is None:
        raise ConfigError(f"model_params.cut is required for the torchvision backbone '{backbone}' "
                         "(the last layer kept, e.g. features.20 or layer2)")
    return truncate(torchvision.models.get_model(backbone, weights=weights), cut)
