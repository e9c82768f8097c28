"""Training and evaluating prototype flows (any :class:`~invproto.models.protoflow.PrototypeFlow`).

Per training step the batch (view 1, randomly shifted/flipped when
``augment_shift``/``augment_flip`` are set) goes through the model's
:meth:`~invproto.models.protoflow.PrototypeFlow.latent`; the loss
(``config["loss"]``, default :class:`~invproto.losses.protoflow.ProtoFlowLoss`)
combines cross-entropy of the class scores, the class-conditional NLL in
bits/dim, the ramped consistency term (pseudo-labels from a second augmented
view) and the prototype diversity term, plus the backbone's own
:meth:`~invproto.models.protoflow.PrototypeFlow.auxiliary_loss` (cross-entropy
and reconstruction when a latent flow fine-tunes its autoencoder).

* Optimizer groups: the mixture head at ``iterator_params.head_lr_multiple x
  optimizer.lr`` and no weight decay; every other parameter that requires grad (the flow, and the
  first stage when it is trained) with ``optimizer``.
* Initialisation: at step 0 of a fresh run (never on resume) the means,
  variances and weights are set by k-means on the latents of
  ``kmeans_batches x batch_size`` training images (``kmeans_init``).
* Evaluation (``prototype_accuracy``): accuracy, NLL, ECE, prototype usage and
  ``bits_per_dim = -(logsumexp_c log p(x|c) - log C) / (ln 2 * dims)`` of the
  un-augmented image. With ``tta_num = n > 1`` the class scores (and prototype
  similarities) are averaged over the image and ``n - 1`` augmented views.
* Dead prototypes: with ``revive_every > 0`` every ``revive_every`` steps the
  components that explained under ``revive_min_share`` of their class's
  training latents move onto random recent latents of their class
  (:mod:`~invproto.iterators.prototype_revival`).
* Prototype pictures: each log step logs the decoded prototype means and
  draws; after every epoch ``<run>/prototypes/step-<N>/`` receives
  ``means.png`` (one row per class), ``samples.png`` and ``nearest.png`` (one
  row per prototype: its draws, resp. the training images of a fixed pool it
  explains best).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from edflow.hooks.hook import Hook

from invproto.callbacks.prototypes import prototype_accuracy, prototype_labels
from invproto.config.run import abort_cleanly
from invproto.data.augment import augment
from invproto.data.base import dataset_examples
from invproto.errors import ConfigError
from invproto.io import save_grid
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.iterators.prototype_revival import PrototypeRevival
from invproto.iterators.seeding import keyed_generator
from invproto.losses.protoflow import bits_per_dim, marginal_log_likelihood
from invproto.models.prototype_model import Explanation
from invproto.pictures import to_hwc


class ProtoFlowIterator(Iterator):
    """Trains and evaluates a :class:`~invproto.models.protoflow.PrototypeFlow`; see the module docstring."""

    default_loss = {"target": "invproto.losses.protoflow.ProtoFlowLoss"}

    @dataclass
    class Params:
        renamed_keys: ClassVar[dict[str, tuple[str, str]]] = {  # old key: (new key, how to convert)
            "head_lr": ("head_lr_multiple", "a multiple of optimizer.lr (the old head_lr / optimizer.lr)")}
        head_lr_multiple: float = 1.0  # learning rate of the mixture head (weight decay 0) / optimizer.lr
        augment_shift: int = 0  # random shift of training/TTA views, up to this many pixels per axis
        augment_flip: bool = False  # random horizontal flips of training/TTA views (natural images only)
        tta_num: int = 1  # evaluation: class scores averaged over the image and tta_num - 1 augmented views
        kmeans_init: bool = True  # step 0 of a fresh run: means by k-means on training latents
        kmeans_batches: int = 20  # training batches (of batch_size images) the k-means init encodes
        n_prototype_samples: int = 8  # decoded draws per prototype in logged and saved grids
        n_nearest: int = 8  # training images per prototype in nearest.png
        nearest_pool: int = 2000  # fixed random training images searched for the nearest ones
        sample_seed: int = 0  # seed of the draws, the pools and the TTA views
        revive_every: int = 0  # steps between revivals of dead prototypes; 0: never
        revive_min_share: float = 0.02  # a prototype explaining less of its class's training latents is dead
        revive_pool: int = 1024  # recent training latents the revived prototypes are drawn from

    callbacks = {"eval_op": {"prototype_accuracy": prototype_accuracy}}

    def build_components(self) -> None:
        self.loss = self.build_loss()
        self._check_views()
        self.revival = PrototypeRevival(self.model.head, self.params.revive_every, self.params.revive_min_share,
                                        self.params.revive_pool, seed=self.params.sample_seed)
        if not self.config.get("test_mode", False):
            self.epoch_hooks.append(_PrototypeImagesHook(self))

    def _check_views(self) -> None:
        p = self.params
        augments = p.augment_shift > 0 or p.augment_flip
        with abort_cleanly():
            if (self.loss.uses_second_view or p.tta_num > 1) and not augments:
                raise ConfigError("loss.params.consistency_weight > 0 and iterator_params.tta_num > 1 "
                                  "need augmented views; set iterator_params.augment_shift > 0 or augment_flip")
            if p.tta_num < 1:
                raise ConfigError(f"iterator_params.tta_num must be >= 1, got {p.tta_num}")

    # --- optimization --------------------------------------------------------
    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def parameter_groups(self) -> list[dict]:
        """The head (own lr, no weight decay) and everything else that trains."""
        head = list(self.model.head.parameters())
        head_ids = {id(p) for p in head}
        backbone = [p for p in self.trainable_parameters() if id(p) not in head_ids]
        return [{"params": backbone},
                {"params": head, "weight_decay": 0.0, "lr_multiple": self.params.head_lr_multiple}]

    # --- training ------------------------------------------------------------
    def training_view(self, images: torch.Tensor) -> torch.Tensor:
        return augment(images, self.params.augment_shift, self.params.augment_flip)

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        if self.params.kmeans_init and self.get_global_step() == 0:
            self.initialize_prototypes()
        revived = self.revival.maybe_revive(self.get_global_step())
        if revived:
            self.logger.info(f"revived {revived} dead prototypes at step {self.get_global_step()}")
        images = self.training_view(batch["image"])
        second_view_scores = None
        if self.loss.uses_second_view:
            with torch.no_grad():
                second_view_scores = self.model.class_scores(self.model.latent(self.training_view(batch["image"]))[0])
        z, log_det = self.model.latent(images)
        self.revival.observe(z, batch["class"])
        loss, scalars = self._loss(z, log_det, batch["class"], second_view_scores)
        auxiliary = self.model.auxiliary_loss(images, batch["class"])
        if auxiliary is not None:
            loss, scalars = loss + auxiliary[0], {**scalars, **auxiliary[1]}
        return loss, scalars

    def _loss(self, z: torch.Tensor, log_det: torch.Tensor, target: torch.Tensor,
              second_view_scores: torch.Tensor | None = None) -> tuple[torch.Tensor, Scalars]:
        return self.loss(self.model.class_scores(z), self.model.latent_class_log_likelihood(z, log_det), target,
                         self.model.data_dims, self.get_global_step(), self.model.head.diversity_loss(),
                         second_view_scores)

    @torch.no_grad()
    def initialize_prototypes(self) -> None:
        """Means, variances, weights by k-means on the latents of random training images.

        The flow runs in training mode, so its ActNorm layers initialise on the first of these batches.
        """
        dataset = self.datasets["train"]
        batch_size = self.settings.batch_size
        n = min(len(dataset), self.params.kmeans_batches * batch_size)
        indices = np.sort(np.random.default_rng(self.params.sample_seed).choice(len(dataset), n, replace=False))
        self.model.train()
        latents, labels = [], []
        for start in range(0, n, batch_size):
            batch = self.to_tensors(dataset_examples(dataset, indices[start:start + batch_size]))
            latents.append(self.model.latent(batch["image"])[0])
            labels.append(batch["class"])
        self.model.head.init_kmeans(torch.cat(latents), torch.cat(labels), seed=self.settings.seed)

    # --- logging ---------------------------------------------------------------
    def log_step(self, batch: Batch) -> dict:
        _, scalars = self._loss(*self.model.latent(batch["image"]), batch["class"])
        samples = self.model.prototype_samples(self.params.n_prototype_samples, self._generator())
        return {"scalars": scalars,
                "images": {"inputs": to_hwc(batch["image"][:16]),
                           "prototype_means": to_hwc(self.model.prototype_images()),
                           "prototype_samples": to_hwc(samples.flatten(0, 1))}}

    def _generator(self, offset: int = 0) -> torch.Generator:
        return keyed_generator(self.params.sample_seed, offset)

    @torch.no_grad()
    def nearest_training_images(self) -> torch.Tensor:
        """``(P, n_nearest, C, H, W)``: per prototype, the pool images of highest weighted component log-density."""
        dataset = self.datasets["train"]
        n = min(len(dataset), self.params.nearest_pool)
        indices = np.sort(np.random.default_rng(self.params.sample_seed + 1).choice(len(dataset), n, replace=False))
        images, similarity = [], []
        batch_size = self.settings.batch_size
        for start in range(0, n, batch_size):
            batch = self.to_tensors(dataset_examples(dataset, indices[start:start + batch_size]))
            images.append(batch["image"])
            similarity.append(self.model.explain(batch["image"]).similarity)
        k = min(self.params.n_nearest, n)
        best = torch.cat(similarity).topk(k, dim=0).indices.T
        return torch.cat(images)[best]

    @torch.no_grad()
    def save_prototype_images(self) -> Path:
        """``means.png``, ``samples.png`` and ``nearest.png`` in ``<run>/prototypes/step-<N>/``."""
        self.model.eval()
        folder = self.artifacts.root / "prototypes" / f"step-{self.get_global_step()}"
        save_grid(self.model.prototype_images(), folder / "means.png", nrow=self.model.head.protos_per_class)
        samples = self.model.prototype_samples(self.params.n_prototype_samples, self._generator())
        save_grid(samples.flatten(0, 1), folder / "samples.png", nrow=samples.shape[1])
        nearest = self.nearest_training_images()
        save_grid(nearest.flatten(0, 1), folder / "nearest.png", nrow=nearest.shape[1])
        return folder

    # --- evaluation -----------------------------------------------------------
    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        images = batch["image"]
        z, log_det = self.model.latent(images)
        marginal = marginal_log_likelihood(self.model.latent_class_log_likelihood(z, log_det))
        explanation = self.test_time_explanation(images, self.model.explanation(z), int(batch["index_"][0]))
        labels = prototype_labels(explanation, batch["class"], self.model.prototype_class)
        labels["bits_per_dim"] = bits_per_dim(marginal, self.model.data_dims).float().cpu().numpy()
        return labels

    def test_time_explanation(self, images: torch.Tensor, explanation: Explanation, seed: int) -> Explanation:
        """``explanation`` of ``images`` averaged with those of ``tta_num - 1`` augmented views.

        The class scores are log-likelihoods up to a class-independent term, so
        averaging them averages the class log-likelihoods. The views are
        drawn from the key ``(sample_seed, seed)`` (``seed``: the batch's first index): reproducible.
        """
        n_views = self.params.tta_num
        if n_views == 1:
            return explanation
        generator = self._generator(seed)
        views = [explanation] + [self.model.explain(augment(images, self.params.augment_shift,
                                                            self.params.augment_flip, generator))
                                 for _ in range(n_views - 1)]
        return Explanation(logits=torch.stack([v.logits for v in views]).mean(0),
                           similarity=torch.stack([v.similarity for v in views]).mean(0))


class _PrototypeImagesHook(Hook):
    """Saves the prototype grids after every training epoch."""

    def __init__(self, iterator: ProtoFlowIterator):
        self.iterator = iterator

    def after_epoch(self, epoch):
        self.iterator.save_prototype_images()
