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
from typing import ClassVar, Mapping

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
