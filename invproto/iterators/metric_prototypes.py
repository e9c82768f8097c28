"""Training prototype classifiers with metric guidance (Sainte Fare Garnot & Landrieu 2020).

The model is a :class:`~invproto.models.metric_prototypes.PrototypeClassifier`
(learnt, hyperspherical or DeepNCM prototypes on any backbone); the loss is
``config["loss"]``, by default
:class:`~invproto.losses.metric_prototypes.MetricPrototypeLoss` (cross-entropy
+ distortion w.r.t. the model's class tree). After every epoch the validation
split is scored by ``prototype_accuracy`` (accuracy, calibration, prototype
usage) and ``average_cost`` (mean tree distance between prediction and truth).
While training, each class prototype's nearest training image of the epoch is
kept in the model (its :meth:`prototype_images`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from invproto.callbacks.average_cost import average_cost
from invproto.callbacks.prototypes import prototype_accuracy, prototype_labels
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.pictures import to_hwc


class MetricPrototypeIterator(Iterator):
    """Trains ``model(images, labels) -> PrototypeOutput`` with ``loss(output, labels, prototypes)``."""

    @dataclass
    class Params:
        n_log_images: int = 16  # input images per logged grid

    callbacks = {"eval_op": {"prototype_accuracy": prototype_accuracy, "average_cost": average_cost}}
    default_loss = {"target": "invproto.losses.metric_prototypes.MetricPrototypeLoss"}

    def build_components(self) -> None:
        self.loss = self.build_loss(hierarchy=self.model.hierarchy, prototype_nodes=self.model.prototype_nodes)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        output = self.model(batch["image"], batch["class"])
        class_distances = -output.scores[:, :self.model.params.n_classes]
        self.model.nearest_images.offer(batch["image"], class_distances, self.get_epoch_step())
        return self.loss(output, batch["class"], self.model.prototypes())

    def log_step(self, batch: Batch) -> dict:
        _, scalars = self.loss(self.model(batch["image"]), batch["class"], self.model.prototypes())
        images = {"inputs": to_hwc(batch["image"][:self.params.n_log_images])}
        if self.model.nearest_images.images.numel():
            images["prototype_images"] = to_hwc(self.model.prototype_images())
        return {"scalars": scalars, "images": images}

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        return prototype_labels(self.model.explain(batch["image"]), batch["class"], self.model.prototype_class)
