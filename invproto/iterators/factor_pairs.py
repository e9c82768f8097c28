"""Iterators of single images on factor-pair validation data: their factor dimensionalities after every epoch.

A classifier or autoencoder whose validation dataset is a factor-pair dataset
(``image1``, ``image2``, ``factor``; :mod:`invproto.data.pairs`), e.g.
``cmnist_clf`` or ``sprites_ae_cpu``, is stepped on each pair's first image
(:func:`~invproto.data.pairs.first_of_pair`), and evaluation adds the codes of
both images (:func:`pair_codes`) for ``dim_callback``, which
:func:`with_dim_callback` adds to the iterator's callbacks: the factor
dimensionalities of its code are recorded after every epoch.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from invproto.callbacks.factor_dims import dim_callback
from invproto.config import get_obj_from_str
from invproto.data.pairs import FactorPairs
from invproto.models.first_stages import first_stage_codes


def pair_codes(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``za``, ``zb``: ``(N, D)`` codes (:func:`first_stage_codes`) of a batch of pairs' images; ``factor``:
    ``(N,)`` the factor each pair shares. What :func:`~invproto.callbacks.factor_dims.dim_callback` reads."""
    return {"za": first_stage_codes(model, batch["image1"]).float().cpu().numpy(),
            "zb": first_stage_codes(model, batch["image2"]).float().cpu().numpy(),
            "factor": batch["factor"].cpu().numpy()}


def validates_on_pairs(config: Mapping) -> bool:
    """Whether the config's validation dataset is a factor-pair dataset."""
    validation = (config.get("datasets") or {}).get("validation")
    return validation is not None and issubclass(get_obj_from_str(validation), FactorPairs)


def with_dim_callback(callbacks: Mapping) -> dict:
    """An iterator's ``callbacks`` with ``dim_callback`` among its evaluation callbacks."""
    return {**callbacks, "eval_op": {**callbacks.get("eval_op", {}), "dim_callback": dim_callback}}
