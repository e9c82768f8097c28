"""Training prototypeDL (Li et al. 2018): autoencoder + prototype classifier in one objective.

The model is a :class:`~invproto.models.protodl.ProtoDL`; the loss is
``config["loss"]``, by default :class:`~invproto.losses.protodl.ProtoDLLoss`
with the paper's weights. Logged: the loss terms, inputs, their
reconstructions and the decoded prototypes. Optional augmentation: each
training image shifted by up to ``augment_shift`` pixels (the paper trained
on elastically deformed MNIST digits); the autoencoder reconstructs the
shifted image. After every epoch the validation
split is scored by ``prototype_accuracy``; select the checkpoint on those
scores, and evaluate only the selected one on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from invproto.callbacks.prototypes import prototype_accuracy, prototype_labels
from invproto.data.augment import augment
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.pictures import to_hwc


class ProtoDLIterator(Iterator):
    """Trains ``model(images) -> ProtoDLOutput`` with ``loss(output, images, labels)``."""

    @dataclass
    class Params:
        n_log_images: int = 16  # inputs / reconstructions per logged grid
        renamed_keys: ClassVar[dict[str, tuple[str, str]]] = {  # old key: (new key, how to convert)
            "classifier_lr_factor": ("classifier_lr_multiple", "the same number under the name every rate uses")}
        classifier_lr_multiple: float = 10.0  # learning rate of the last (linear) layer / optimizer.lr
        augment_shift: int = 0  # random shift of each training image, up to this many pixels per axis

    callbacks = {"eval_op": {"prototype_accuracy": prototype_accuracy}}
    default_loss = {"target": "invproto.losses.protodl.ProtoDLLoss"}

    def build_components(self) -> None:
        self.loss = self.build_loss()

    def parameter_groups(self) -> list[dict]:
        """The last layer learns ``classifier_lr_multiple`` times faster than the rest.

        It reads distances per latent dimension, which are O(1): to separate
        classes confidently its weights must grow to O(10), which at the
        shared learning rate takes most of a short training (MNIST, one epoch:
        0.956 validation accuracy with a 10x rate for it, 0.903 without).
        Prototype networks commonly give their last layer a rate of its own.
        """
        classifier = list(self.model.classifier.parameters())
        rest = [p for p in self.model.parameters() if all(p is not q for q in classifier)]
        return [{"params": rest},
                {"params": classifier, "lr_multiple": self.params.classifier_lr_multiple}]

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        images = augment(batch["image"], self.params.augment_shift, flip=False)
        return self.loss(self.model(images), images, batch["class"])

    def log_step(self, batch: Batch) -> dict:
        output = self.model(batch["image"])
        _, scalars = self.loss(output, batch["image"], batch["class"])
        n = self.params.n_log_images
        return {"scalars": scalars,
                "images": {"inputs": to_hwc(batch["image"][:n]),
                           "reconstructions": to_hwc(output.reconstruction[:n].clamp(-1, 1)),
                           "prototypes": to_hwc(self.model.prototype_images())}}

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        return prototype_labels(self.model.explain(batch["image"]), batch["class"], self.model.prototype_class)
