"""Classifier training: softmax cross-entropy, accuracy evaluated each epoch.

``iterator_params.blur_sigma`` > 0 blurs every training image by a Gaussian of
random width (:func:`~invproto.data.augment.random_blur`): a network then reads
its classes from decoded images too, which an autoencoder renders slightly soft
(the conditional INN's ground truth on Sprites, ``configs/sprites_clf.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from invproto.callbacks.accuracy import accuracy
from invproto.config.schema import checked
from invproto.data.augment import random_blur
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.iterators.seeding import step_generator
from invproto.pictures import to_hwc


class ClassifierIterator(Iterator):
    """Trains ``model(images) -> logits`` on ``class`` labels."""

    @dataclass
    class Params:
        blur_sigma: float = checked(0.0, ge=0)  # training images blurred with a Gaussian of width U(0, blur_sigma) px

    callbacks = {"eval_op": {"accuracy": accuracy}}

    def trainable_parameters(self):
        """Every parameter that takes gradients (a linear probe's frozen network does not)."""
        return (p for p in self.model.parameters() if p.requires_grad)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        logits = self.model(random_blur(batch["image"], self.params.blur_sigma, step_generator(self)))
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
