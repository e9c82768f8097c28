"""``prototype_accuracy``: how well, and by which prototypes, a prototype model classifies.

The iterator's ``eval_op`` returns :func:`prototype_labels` of the model's
:class:`~invproto.models.prototype_model.Explanation`, optionally with a
per-example ``bits_per_dim`` (flows: ``-log2 p(x) / dims`` with ``log p(x)``
the exact marginal under the uniform class prior). Metrics:

* ``accuracy``, ``top5_accuracy``, ``nll``, ``ece``, ``mce`` (15 bins) as for
  any classifier (:func:`~invproto.callbacks.accuracy.classification_metrics`),
* ``bits_per_dim`` (mean) when the model is a density,
* prototype usage: each evaluation image is *explained* by its most similar
  prototype. ``dead_prototypes`` counts prototypes that explain no image,
  ``max_prototype_share`` is the largest fraction one prototype explains, and
  ``prototype_class_agreement`` the fraction of images whose explaining
  prototype belongs to their true class. The per-prototype counts are saved
  as ``prototype_usage.yaml`` in the evaluation folder (by rank 0 under torchrun).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from invproto import distributed
from invproto.callbacks.accuracy import classification_metrics
from invproto.callbacks.base import evaluation_callback
from invproto.io import atomic_write_text
from invproto.models.prototype_model import Explanation


def prototype_labels(explanation: Explanation, target: torch.Tensor,
                     prototype_class: torch.Tensor) -> dict[str, np.ndarray]:
    """What ``prototype_accuracy`` needs of one evaluation batch, as arrays of length ``N``."""
    explaining = explanation.similarity.argmax(dim=1)
    n = len(target)
    return {
        "logits": explanation.logits.float().cpu().numpy(),
        "target": target.cpu().numpy(),
        "prototype": explaining.cpu().numpy(),
        "prototype_class": prototype_class.to(explaining.device)[explaining].cpu().numpy(),
        "n_prototypes": np.full(n, explanation.similarity.shape[1]),
    }


def prototype_usage(explaining: np.ndarray, n_prototypes: int) -> np.ndarray:
    """``(N,)`` explaining-prototype indices -> ``(P,)`` number of images each prototype explains."""
    return np.bincount(explaining, minlength=n_prototypes)


@evaluation_callback
def prototype_accuracy(root, data_in, data_out, config):
    labels = data_out.labels
    logits = torch.from_numpy(np.asarray(labels["logits"], dtype=np.float32))
    target = torch.from_numpy(np.asarray(labels["target"], dtype=np.int64))
    metrics = classification_metrics(logits, target)
    if "bits_per_dim" in labels:
        metrics["bits_per_dim"] = float(np.mean(labels["bits_per_dim"]))
    explaining = np.asarray(labels["prototype"], dtype=np.int64)
    usage = prototype_usage(explaining, int(np.asarray(labels["n_prototypes"])[0]))
    metrics["dead_prototypes"] = int((usage == 0).sum())
    metrics["max_prototype_share"] = float(usage.max() / usage.sum())
    metrics["prototype_class_agreement"] = float(np.mean(np.asarray(labels["prototype_class"]) == target.numpy()))
    if distributed.is_main_process():  # under torchrun every rank computes the same usage
        atomic_write_text(Path(root) / "prototype_usage.yaml",
                          yaml.safe_dump({"images_explained": usage.tolist(),
                                          "dead": np.flatnonzero(usage == 0).tolist()}))
    return metrics
