"""Classification metrics of a classifier's logits on the evaluation split.

Expects the iterator's ``eval_op`` to return ``labels: {"logits": (N, K)
float, "target": (N,) int}``. Metrics (torchmetrics):

* ``accuracy`` and ``top5_accuracy`` (fractions in [0, 1]),
* ``nll`` -- mean softmax cross-entropy in nats,
* ``ece`` and ``mce`` -- expected / maximum calibration error, 15 bins.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from invproto.callbacks.base import evaluation_callback


def classification_metrics(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Metrics of ``(N, K)`` logits against ``(N,)`` integer targets."""
    # imported here: torchmetrics takes seconds to import, config errors must not wait for it
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

    n_classes = logits.shape[1]
    probabilities = logits.softmax(dim=1)
    metrics = {
        "accuracy": multiclass_accuracy(logits, target, n_classes, average="micro"),
        "nll": F.cross_entropy(logits, target),
        "ece": multiclass_calibration_error(probabilities, target, n_classes, n_bins=15, norm="l1"),
        "mce": multiclass_calibration_error(probabilities, target, n_classes, n_bins=15, norm="max"),
    }
    if n_classes > 5:
        metrics["top5_accuracy"] = multiclass_accuracy(logits, target, n_classes, average="micro", top_k=5)
    return {name: float(value) for name, value in metrics.items()}


@evaluation_callback
def accuracy(root, data_in, data_out, config):
    logits = torch.from_numpy(np.asarray(data_out.labels["logits"], dtype=np.float32))
    target = torch.from_numpy(np.asarray(data_out.labels["target"], dtype=np.int64))
    return classification_metrics(logits, target)
