"""``average_cost``: how costly a classifier's mistakes are under a class hierarchy.

Expects the iterator's ``eval_op`` to return ``labels: {"logits": (N, C),
"target": (N,)}`` -- any classifier does. The cost of predicting ``j`` for
``i`` is their tree distance in the named :class:`~invproto.data.hierarchy.ClassHierarchy`
(callback kwarg ``hierarchy``; by default the run's ``model_params.hierarchy``).
Metrics:

* ``average_cost`` -- mean cost of the argmax predictions over all images
  (Sainte Fare Garnot & Landrieu 2020), in tree edges; 0 when all are right,
* ``mistake_cost`` -- mean cost over the wrong predictions only (the severity
  of a mistake, Bertinetto et al. 2020); left out when there is none.

Add it to any classifier run with ``configs/fashionmnist_average_cost.yaml``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from invproto.callbacks.base import evaluation_callback
from invproto.data.hierarchy import hierarchy_by_name, mean_cost
from invproto.errors import ConfigError


def cost_metrics(cost: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """``average_cost`` and (if any prediction is wrong) ``mistake_cost`` of ``(N,)`` predictions."""
    metrics = {"average_cost": float(mean_cost(cost, target, predicted))}
    wrong = predicted != target
    if wrong.any():
        metrics["mistake_cost"] = float(mean_cost(cost, target[wrong], predicted[wrong]))
    return metrics


@evaluation_callback
def average_cost(root, data_in, data_out, config, hierarchy: Optional[str] = None):
    name = hierarchy or (config.get("model_params") or {}).get("hierarchy")
    logits = torch.from_numpy(np.asarray(data_out.labels["logits"], dtype=np.float32))
    target = torch.from_numpy(np.asarray(data_out.labels["target"], dtype=np.int64))
    try:
        cost = hierarchy_by_name(name, logits.shape[1]).cost_matrix()
    except ValueError as error:
        raise ConfigError(f"average_cost: {error}; set eval_pipeline.callback_kwargs.average_cost."
                          f"hierarchy (e.g. fashion_mnist)") from None
    return cost_metrics(cost, target, logits.argmax(dim=1))
