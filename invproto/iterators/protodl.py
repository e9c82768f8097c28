"""Training prototypeDL (Li et al. 2018): autoencoder + prototype classifier in one objective.

The model is a :class:`~invproto.models.protodl.ProtoDL`; the loss is
``config["loss"]``, by default :class:`~invproto.losses.protodl.ProtoDLLoss`
with the paper's weights. Logged: the loss terms, inputs, their
reconstructions and the decoded prototypes. Optional augmentation: random
horizontal flips (``iterator_params.horizontal_flip``; garments, not digits). After every epoch the validation
split is scored by ``prototype_accuracy``; select the checkpoint on those
scores, and evaluate only the selected one on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from invproto.callbacks.prototypes import prototype_accuracy, prototype_labels
from invproto.config import instantiate
from invproto.iterators.base import Batch, Iterator, to_hwc


def random_horizontal_flip(images: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> the same with each image mirrored left-right with probability 1/2, independently.

    (torchvision's ``RandomHorizontalFlip`` draws one decision per call, i.e. per batch.)
    """
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class ProtoDLIterator(Iterator):
    """Trains ``model(images) -> ProtoDLOutput`` with ``loss(output, images, labels)``."""

    @dataclass
    class Params:
        n_log_images: int = 16  # inputs / reconstructions per logged grid
        horizontal_flip: bool = False  # mirror each training image with probability 1/2 (not for digits)

    callbacks = {"eval_op": {"prototype_accuracy": prototype_accuracy}}
    default_loss = {"target": "invproto.losses.protodl.ProtoDLLoss"}

    def __init__(self, config, root, model, *args, **kwargs):
        super().__init__(config, root, model, *args, **kwargs)
        self.params = self.Params(**self.settings.iterator_params)
        self.loss = instantiate(self.settings.loss if self.settings.loss is not None else self.default_loss, "loss")

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        images = random_horizontal_flip(batch["image"]) if self.params.horizontal_flip else batch["image"]
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
