"""Training and evaluating part-prototype networks (:class:`~invproto.models.part_prototypes.PartPrototypeNet`).

**Phases** (``iterator_params``), driven by the epoch:

* *warm-up* (the first ``warmup_epochs`` epochs): the backbone is frozen; the
  add-on layers, prototypes and head train (useful with pretrained weights);
* *joint*: everything trains. Optimizer groups: the backbone at
  ``backbone_lr_multiple x optimizer.lr`` (PixPNet fine-tunes a pretrained
  backbone at 1e-4 against 3e-3 for the rest: a multiple of ~1/30), the
  add-on at ``optimizer.lr``, prototypes and head at ``optimizer.lr``
  without weight decay; the schedule scales all alike;
* *push*, after epoch ``e`` (counted from 1) when ``e >= push_start`` and
  ``(e - push_start) % push_every == 0`` (``push_every`` 0: never), and
  always after the last epoch: :func:`~invproto.iterators.part_prototype_push.push_prototypes`
  over the push set -- the ``datasets.train`` split read without shuffling
  (invproto datasets are not augmented), or a fixed random subset of
  ``push_images`` of it -- with the ``duplicate_filter``;
* *last layer*, right after each push: ``last_layer_steps`` Adam steps
  (``last_layer_lr``, batches of ``batch_size``) on the head alone with
  cross-entropy + the loss's ``l1_weight`` times the off-class L1. With
  everything else frozen, the similarities of the push set are fixed, so
  they are computed once (eval mode). Skipped for the parameter-free
  ``proto`` head.

Push and last layer run in an epoch hook placed before edflow's checkpoint
hook: the checkpoint and the evaluation written after that epoch see the
pushed model, and a resumed run continues from it. Epochs ending before the
first push record each prototype's nearest patch instead (so
``prototype_images`` works from the first epoch on). After either,
``<run>/prototypes/step-<N>/`` receives ``boxes.png`` (each prototype's source
image with its receptive-field box), ``heatmap_rf.png`` and
``heatmap_upsample.png`` (the prototype's similarity on that image mapped to
pixels, over the image), one row per class.

**Evaluation** (each epoch and ``edflow -p``): ``prototype_accuracy`` and
``part_interpretability`` (:mod:`invproto.callbacks.part_interpretability`) of the
relevance, consistency and stability labels :meth:`PartPrototypeIterator.eval_step` computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional
from typing import Iterator as TypingIterator

import numpy as np
import torch
import torch.nn.functional as F
from edflow.hooks.hook import Hook

from invproto.callbacks.part_interpretability import part_interpretability
from invproto.callbacks.prototypes import prototype_accuracy, prototype_labels
from invproto.config.run import abort_cleanly
from invproto.data.base import dataset_examples
from invproto.errors import ConfigError
from invproto.interpret.part_metrics import parts_hit, peak_positions
from invproto.interpret.receptive_field import MAPPINGS, REDUCTIONS
from invproto.interpret.relevance import BASELINES, baseline_image, relevance_auc, relevance_curves
from invproto.io import save_grid
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.iterators.part_prototype_push import DUPLICATE_FILTERS, PushBatch, push_prototypes
from invproto.iterators.seeding import keyed_generator
from invproto.losses.part_prototypes import off_class_l1
from invproto.models.part_prototypes import PartPrototypeOutput
from invproto.models.prototype_model import Explanation
from invproto.pictures import boxed, heat_overlay, to_hwc


class PartPrototypeIterator(Iterator):
    """Trains and evaluates a :class:`~invproto.models.part_prototypes.PartPrototypeNet`; see the module docstring."""

    default_loss = {"target": "invproto.losses.part_prototypes.PartPrototypeLoss"}
    leaves_parameters_unused = True  # the backbone is frozen in the warm-up epochs

    @dataclass
    class Params:
        warmup_epochs: int = 0  # first epochs with the backbone frozen
        renamed_keys: ClassVar[dict[str, tuple[str, str]]] = {  # old key: (new key, how to convert)
            "fine_tune_lr": ("backbone_lr_multiple",
                             "a multiple of optimizer.lr (the old fine_tune_lr / optimizer.lr)")}
        backbone_lr_multiple: float = 1.0  # backbone learning rate / optimizer.lr (pretrained: ~1/30, see above)
        push_start: int = 1  # first epoch (counted from 1) after which prototypes are pushed
        push_every: int = 1  # then every this many epochs (0: only after the last epoch, which always pushes)
        push_images: Optional[int] = None  # size of the fixed random subset of the train split pushed on; null: all
        duplicate_filter: str = "sample"  # sample (no two prototypes from one image) | none
        last_layer_steps: int = 200  # head-only optimizer steps after each push (not for the proto head)
        last_layer_lr: float = 1.0e-3
        heatmap_reduction: str = "max"  # rf mapping: max | mean | sum over the cells covering a pixel
        sigma_factor: float = 1.0  # rf mapping: Gaussian sigma / receptive-field size
        relevance_images_per_batch: int = 1  # evaluation: images per batch in the relevance ordering test
        relevance_steps: int = 16  # pixel fractions 0, 1/steps, ..., 1 of the relevance curves
        relevance_baseline: str = "zero"  # zero | random: the image the pixels are pasted onto
        part_radius: int = 5  # half-width in pixels of a prototype's region (PixPNet: 36 of 224)
        noise_std: float = 0.2  # stability: std of the Gaussian noise added to the images
        seed: int = 0  # of the push subset, the last-layer batches, the random baseline and the noise

    callbacks = {"eval_op": {"prototype_accuracy": prototype_accuracy,
                             "part_interpretability": part_interpretability}}

    def __init__(self, config, root, model, *args, **kwargs):
        super().__init__(config, root, model, *args, **kwargs)
        if not self.config.get("test_mode", False):
            self.hooks.insert(0, _PushHook(self))  # before edflow's checkpoint hook

    def build_components(self) -> None:
        self.loss = self.build_loss()
        p = self.params
        with abort_cleanly():
            for key, value, allowed in [("duplicate_filter", p.duplicate_filter, DUPLICATE_FILTERS),
                                        ("heatmap_reduction", p.heatmap_reduction, REDUCTIONS),
                                        ("relevance_baseline", p.relevance_baseline, BASELINES)]:
                if value not in allowed:
                    raise ConfigError(f"iterator_params.{key} must be one of {', '.join(allowed)}, "
                                      f"got {value!r}")
            if p.push_every < 0 or p.push_start < 1:
                raise ConfigError("iterator_params.push_start must be >= 1 and push_every >= 0")

    def parameter_groups(self) -> list[dict]:
        """Backbone at ``backbone_lr_multiple``; add-on; prototypes and head without weight decay."""
        model = self.model
        groups = [{"params": list(model.backbone.parameters()), "lr_multiple": self.params.backbone_lr_multiple},
                  {"params": list(model.add_on.parameters())},
                  {"params": [model.prototypes, *model.head_parameters()], "weight_decay": 0.0}]
        return [group for group in groups if group["params"]]

    # --- training --------------------------------------------------------------------------------
    def _loss(self, output: PartPrototypeOutput, target: torch.Tensor) -> tuple[torch.Tensor, Scalars]:
        return self.loss(output.logits, output.min_distances, target, self.model.prototype_class,
                         self.model.head_weight())

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        self.model.backbone.requires_grad_(self.get_epoch_step() >= self.params.warmup_epochs)
        return self._loss(self.model(batch["image"]), batch["class"])

    def log_step(self, batch: Batch) -> dict:
        _, scalars = self._loss(self.model(batch["image"]), batch["class"])
        images = {"inputs": to_hwc(batch["image"][:16])}
        if bool((self.model.push_source >= 0).all()):
            images["prototypes"] = to_hwc(self.model.prototype_images())
        return {"scalars": scalars, "images": images}

    # --- push and last layer ----------------------------------------------------------------------
    def push_indices(self) -> np.ndarray:
        """Dataset indices of the push set: all of the train split, or a fixed sorted random subset."""
        n = len(self.datasets["train"])
        size = self.params.push_images
        if size is None or size >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng(self.params.seed).choice(n, size, replace=False))

    def push_batches(self) -> TypingIterator[PushBatch]:
        """The push set in order, as (images, labels, dataset indices) batches on the device."""
        indices, batch_size = self.push_indices(), self.config["batch_size"]
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            batch = self.to_tensors(dataset_examples(self.datasets["train"], chunk))
            yield batch["image"], batch["class"], torch.from_numpy(chunk)

    def fetch_images(self, indices: np.ndarray) -> torch.Tensor:
        return self.to_tensors(dataset_examples(self.datasets["train"], indices))["image"]

    def end_of_epoch(self, epoch: int) -> None:
        """Push (and fit the last layer) when the schedule says so; else record nearest patches until the first push."""
        p = self.params
        finished = epoch + 1
        last = finished >= self.num_epochs or self.get_global_step() >= self.config.get("num_steps", math.inf)
        due = last or (p.push_every > 0 and finished >= p.push_start and (finished - p.push_start) % p.push_every == 0)
        if not due and bool(self.model.pushed.any()):
            return
        distance = push_prototypes(self.model, self.push_batches(), self.fetch_images, p.duplicate_filter, move=due)
        moved = distance[torch.isfinite(distance)]
        print(f"invproto: {'pushed' if due else 'nearest patches of'} {len(moved)} prototypes at step "
              f"{self.get_global_step()} (mean distance {float(moved.mean()):.4g})", flush=True)
        self.artifacts.append_metrics({"step": self.get_global_step(), "phase": "push" if due else "nearest",
                                       "push_mean_distance": float(moved.mean())})
        if due and self.model.head_parameters() and p.last_layer_steps > 0:
            self.fit_last_layer()
        self.save_push_pictures()

    @torch.no_grad()
    def push_set_similarities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, P)`` prototype similarities and ``(n,)`` labels of the push set (eval mode)."""
        self.model.eval()
        similarity, labels = [], []
        for images, target, _ in self.push_batches():
            similarity.append(self.model(images).similarity)
            labels.append(target)
        return torch.cat(similarity), torch.cat(labels)

    def fit_last_layer(self) -> None:
        """``last_layer_steps`` Adam steps on the head: cross-entropy + ``l1_weight`` * off-class L1."""
        similarity, labels = self.push_set_similarities()
        model, p = self.model, self.params
        optimizer = torch.optim.Adam(model.head_parameters(), lr=p.last_layer_lr)
        generator = keyed_generator(p.seed, self.get_global_step())  # no rank: every replica fits the same head
        l1_weight = getattr(self.loss, "l1_weight", 0.0)
        for _ in range(p.last_layer_steps):
            rows = torch.randint(len(labels), (self.config["batch_size"],), generator=generator).to(labels.device)
            weight = model.head_weight()
            loss = F.cross_entropy(similarity[rows] @ weight.T, labels[rows]) + l1_weight * off_class_l1(
                weight, model.prototype_class)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def save_push_pictures(self) -> Path:
        """``boxes.png``, ``heatmap_rf.png``, ``heatmap_upsample.png`` in ``<run>/prototypes/step-<N>/``."""
        model = self.model.eval()
        folder = self.artifacts.root / "prototypes" / f"step-{self.get_global_step()}"
        images, own = model.push_image, torch.arange(model.n_prototypes, device=model.push_image.device)
        nrow = model.params.prototypes_per_class
        save_grid(boxed(images, model.push_box), folder / "boxes.png", nrow=nrow)
        maps = model(images).similarity_maps[own, own][:, None]  # (P, 1, Hc, Wc): each prototype on its image
        for mapping in MAPPINGS:
            heat = model.pixel_heatmaps(maps, mapping, self.params.sigma_factor, self.params.heatmap_reduction)
            save_grid(heat_overlay(images, heat[:, 0]), folder / f"heatmap_{mapping}.png", nrow=nrow)
        return folder

    # --- evaluation ----------------------------------------------------------------------------------
    def heatmaps(self, similarity_maps: torch.Tensor, mapping: str) -> torch.Tensor:
        return self.model.pixel_heatmaps(similarity_maps, mapping, self.params.sigma_factor,
                                         self.params.heatmap_reduction)

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        images, target = batch["image"], batch["class"]
        output = self.model(images)
        labels = prototype_labels(Explanation(output.logits, output.similarity), target, self.model.prototype_class)
        slots = self.model.class_prototypes(target)  # (N, m) the prototypes of each image's class
        labels.update(self.relevance_labels(images, output, slots))
        dataset = self.datasets["validation"]
        if hasattr(dataset, "part_keypoints"):
            keypoints = dataset.part_keypoints(batch["index_"].cpu().numpy())
            labels.update(self.part_labels(images, output, slots, keypoints, seed=int(batch["index_"][0])))
        return labels

    def relevance_labels(self, images: torch.Tensor, output: PartPrototypeOutput,
                         slots: torch.Tensor) -> dict[str, np.ndarray]:
        """``relevance_auc_<mapping>`` ``(N, m)``: AUCs of the first images' class prototypes, NaN for the rest."""
        p = self.params
        baseline = baseline_image(p.relevance_baseline, tuple(images.shape[1:]), p.seed)
        aucs = {m: np.full(tuple(slots.shape), np.nan, dtype=np.float32) for m in MAPPINGS}
        for i in range(min(p.relevance_images_per_batch, len(images))):
            maps = output.similarity_maps[i, slots[i]][None]  # (1, m, Hc, Wc)
            for mapping in MAPPINGS:
                heat = self.heatmaps(maps, mapping)[0]
                curves = relevance_curves(lambda x: self.model(x).similarity, images[i], heat, slots[i], baseline,
                                          p.relevance_steps)
                aucs[mapping][i] = relevance_auc(curves)
        return {f"relevance_auc_{m}": auc for m, auc in aucs.items()}

    def part_labels(self, images: torch.Tensor, output: PartPrototypeOutput, slots: torch.Tensor,
                    keypoints: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """Parts hit by the class prototypes' regions, without and with input noise, for both mappings."""
        generator = keyed_generator(self.params.seed, seed)
        noise = torch.randn(images.shape, generator=generator).to(images.device) * self.params.noise_std
        outputs = {"": output, "_noisy": self.model(images + noise)}
        labels = {"class_prototypes": slots.cpu().numpy()}
        index = slots[:, :, None, None].expand(-1, -1, *output.similarity_maps.shape[2:])
        for suffix, out in outputs.items():
            maps = out.similarity_maps.gather(1, index)  # (N, m, Hc, Wc)
            for mapping in MAPPINGS:
                peaks = peak_positions(self.heatmaps(maps, mapping)).cpu().numpy()
                labels[f"parts_hit_{mapping}{suffix}"] = parts_hit(peaks, keypoints, self.params.part_radius)
        return labels


class _PushHook(Hook):
    """Runs :meth:`PartPrototypeIterator.end_of_epoch` after every training epoch."""

    def __init__(self, iterator: PartPrototypeIterator):
        self.iterator = iterator

    def after_epoch(self, epoch):
        self.iterator.end_of_epoch(epoch)
