"""Classifier training: softmax cross-entropy, accuracy evaluated each epoch."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from invproto.callbacks.accuracy import accuracy
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.pictures import to_hwc


class ClassifierIterator(Iterator):
    """Trains ``model(images) -> logits`` on ``class`` labels."""

    callbacks = {"eval_op": {"accuracy": accuracy}}

    def trainable_parameters(self):
        """Every parameter that takes gradients (a linear probe's frozen network does not)."""
        return (p for p in self.model.parameters() if p.requires_grad)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits, batch["class"])
        return loss, {"accuracy": (logits.argmax(1) == batch["class"]).float().mean()}

    def log_step(self, batch: Batch) -> dict:
        logits = self.model(batch["image"])
        return {
            "scalars": {"loss": float(F.cross_entropy(logits, batch["class"])),
                        "accuracy": float((logits.argmax(1) == batch["class"]).float().mean())},
            "images": {"inputs": to_hwc(batch["image"][:16])},
        }

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        return {"logits": self.model(batch["image"]).float().cpu().numpy(),
                "target": batch["class"].cpu().numpy()}
