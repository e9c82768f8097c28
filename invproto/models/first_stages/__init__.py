"""First stages: the frozen network another model explains, from any source, read at a named layer.

:class:`FirstStage` is the one adapter behind every model that explains a
network -- IIN and dIIN (``model_params.first_stage``), the conditional INN
(``network``, ``autoencoder``), the linear probe, the factor-dimension
evaluation, ProtoFlow and the perceptual loss. It is built from
:class:`~invproto.models.first_stages.params.FirstStageParams` by
:func:`load_first_stage` and takes invproto's images, ``(N, C, S, S)`` in
[-1, 1]: it preprocesses them as declared
(:mod:`~invproto.models.first_stages.preprocessing`) and reads the
representation at ``layer`` (:mod:`~invproto.models.first_stages.layers`).
Sources (:mod:`~invproto.models.first_stages.sources`): an invproto model and
checkpoint, a torchvision model (name + weights enum or state-dict file), a
TorchScript file, any ``nn.Module`` class + state-dict file, and the
TF-Inception network shipped for FID (an ImageNet classifier, weights up to
``pool3``), which makes a genuinely pretrained network available offline.

The network is frozen (``requires_grad`` off) and in eval mode at
construction; its weights are part of the owning model's state dict (keys
``<owner>.network.*``), so that model's checkpoints are self-contained.
Representations stay differentiable with respect to the images (FGSM needs it).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn

from invproto.config.run import abort_cleanly
from invproto.errors import ConfigError
from invproto.models.first_stages.layers import first_stage_codes
from invproto.models.first_stages.params import FirstStageParams, PreprocessParams, describe_first_stage
from invproto.models.first_stages.preprocessing import Preprocess
from invproto.models.first_stages.sources import BUILDERS

__all__ = ["FirstStage", "FirstStageParams", "PreprocessParams", "describe_first_stage", "first_stage_codes",
           "load_first_stage"]


def as_params(params: FirstStageParams | Mapping) -> FirstStageParams:
    """``params`` as :class:`FirstStageParams` (a validated config section is a plain mapping)."""
    if isinstance(params, FirstStageParams):
        return params
    values = dict(params)
    values["preprocess"] = PreprocessParams(**(values.get("preprocess") or {}))
    return FirstStageParams(**values)


class FirstStage(nn.Module):
    """A frozen network read at a layer; see the module docstring.

    ``representation_shape``: the representation's shape without ``N``;
    ``can_classify``: whether the network's output is ``(N, K)`` logits;
    ``can_decode``: an invproto autoencoder read at its code (``layer`` null).
    """

    def __init__(self, params: FirstStageParams | Mapping, key: str = "model_params.first_stage"):
        super().__init__()
        self.params = params = as_params(params)
        if params.source not in BUILDERS:
            raise ConfigError(f"{key}.source must be one of {', '.join(BUILDERS)}, got '{params.source}'")
        network = BUILDERS[params.source](params, key)
        self.network = network.module
        self._tap = network.tap
        self._layer_names = network.layer_names
        preprocess = {**network.preprocess_defaults,
                      **{k: v for k, v in vars(params.preprocess).items() if v is not None}}
        self.preprocess = Preprocess(PreprocessParams(**preprocess))
        self.in_channels = params.in_channels or network.in_channels
        self.in_size = params.in_size or network.in_size
        if self.in_channels is None or self.in_size is None:
            missing = "in_channels" if self.in_channels is None else "in_size"
            raise ConfigError(f"missing config key '{key}.{missing}': the channels and side of the images the "
                              f"pipeline feeds this {params.source} network (e.g. 1 and 28 for MNIST)")
        self.can_decode = network.can_decode
        self.requires_grad_(False).eval()
        self.representation_shape, self.can_classify = self._probe(network.outputs_logits, key)
        self.register_load_state_dict_pre_hook(self._accept_unprefixed_keys)

    def _probe(self, outputs_logits: bool | None, key: str) -> tuple[tuple[int, ...], bool]:
        """Representation shape and whether the output is logits, from one blank image."""
        blank = torch.zeros(1, self.in_channels, self.in_size, self.in_size)
        try:
            with torch.no_grad():
                representation, output = self._tap(self.network, self.preprocess(blank), outputs_logits is not False)
        except (RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{key}: the network cannot take ({self.in_channels}, {self.in_size}, "
                              f"{self.in_size}) images after preprocessing ({first}); check in_channels, in_size "
                              f"and preprocess (size, channels)") from None
        if not isinstance(representation, torch.Tensor):
            raise ConfigError(f"{key}.layer '{self.params.layer}' gives a {type(representation).__name__}, "
                              f"not a tensor; choose a layer whose output is one tensor")
        can_classify = outputs_logits if outputs_logits is not None else (
            isinstance(output, torch.Tensor) and output.dim() == 2)
        return tuple(representation.shape[1:]), bool(can_classify)

    @staticmethod
    def _accept_unprefixed_keys(module, state_dict, prefix, *args) -> None:
        """Checkpoints written before first stages were wrapped hold ``<owner>.<weights>``: map them to
        ``<owner>.network.<weights>``."""
        for name in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + "network.")]:
            state_dict[prefix + "network." + name[len(prefix):]] = state_dict.pop(name)

    def layer_names(self) -> list[str]:
        """The valid ``layer`` values besides null: module names (torchvision: also graph nodes that are not
        modules; tf_inception: also ``pool3``), or a TorchScript file's exported methods."""
        return list(self._layer_names())

    @property
    def representation_dim(self) -> int:
        """Numbers per representation, ``prod(representation_shape)``."""
        return math.prod(self.representation_shape)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, *representation_shape)``."""
        return self._tap(self.network, self.preprocess(images), False)[0]

    def sample_code(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """An invproto autoencoder read at its code (``can_decode``): a posterior sample ``mean + std * eps``
        per image, ``(N, D)``; any other network: its representation, as :meth:`encode`."""
        if not self.can_decode:
            return self.encode(images)
        return self.network.encode(self.preprocess(images)).sample(generator)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, K)`` logits."""
        return self.encode_and_classify(images)[1]

    def encode_and_classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Representation and logits from one forward pass."""
        if not self.can_classify:
            raise ConfigError(f"the {self.params.source} network {self.params.model or ''} has no class outputs; "
                              f"it cannot classify (prediction agreement and attacks need a classifier)")
        return self._tap(self.network, self.preprocess(images), True)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` codes -> ``(N, C, S, S)`` images in [-1, 1] (an invproto autoencoder's decoder)."""
        if not self.can_decode:
            raise ConfigError(f"the first stage {self.params.model} read at layer {self.params.layer} cannot decode")
        return self.network.decode(codes)


def load_first_stage(params: FirstStageParams | Mapping, key: str = "model_params.first_stage") -> FirstStage:
    """:class:`FirstStage` built from ``params``; a refused configuration or checkpoint stops the run in one line
    (its fresh run directory removed)."""
    with abort_cleanly():
        return FirstStage(params, key)
