"""Base class of invproto models.

edflow builds the model as ``Model(config)`` from the import path in the
config's ``model`` key. Each invproto model declares its typed parameters as a
dataclass ``Params``; the ``model_params`` section of the config is validated
against it and available as ``self.params``. Outside edflow (tests, a frozen
first stage) use :meth:`Model.from_params`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
import torch.nn as nn

from invproto.config.run import component_params
from invproto.errors import CheckpointError
from invproto.io import load_weights


class Model(nn.Module):
    Params: ClassVar[type]
    outputs_logits: ClassVar[bool] = False  # forward(images) gives (N, K) class logits (a classifier)

    def __init__(self, config: Mapping):
        super().__init__()
        self.params = component_params(config, "model_params", type(self))

    @classmethod
    def from_params(cls, **params) -> "Model":
        return cls({"model_params": params})

    def describe(self) -> dict:
        """Import path and parameters: what a checkpoint must match to be loaded."""
        return {"model": f"{type(self).__module__}.{type(self).__qualname__}",
                "model_params": dataclasses.asdict(self.params)}

    def encode_and_forward(self, images: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """``encode(images)`` and ``forward(images)``; a model whose forward pass runs ``encode`` overrides
        this to compute both in that one pass."""
        return self.encode(images), self(images)


class HeadClassifier(Model):
    """A classifier whose ``(N, K)`` logits are ``head(encode(images))``: a code, then a class read-out."""

    outputs_logits = True
    head: nn.Module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, n_classes)`` logits."""
        return self.head(self.encode(images))

    def encode_and_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes and logits of one pass through the encoder."""
        codes = self.encode(images)
        return codes, self.head(codes)


def load_checkpoint(path: str | Path, model: Model, what: str, fix: str,
                    map_location: str | torch.device = "cpu") -> dict:
    """The state dict of an invproto checkpoint written for ``model`` (safe loading only).

    Raises a :class:`~invproto.errors.CheckpointError` -- ``<what> <path> ...; <fix>`` -- when the
    file is missing or unreadable, or holds another model than ``model``
    (its ``describe()`` differs).
    """
    state = load_weights(path, what, fix, map_location)
    if state.get("describe") != model.describe():
        raise CheckpointError(f"{what} {path} holds {state.get('describe')}, but the config "
                              f"describes {model.describe()}; {fix}")
    return state
