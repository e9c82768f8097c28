"""Prototype classifiers on any backbone: metric-guided prototypes and their baselines.

After Sainte Fare Garnot & Landrieu, *Leveraging Class Hierarchies with
Metric-Guided Prototype Learning* (2020). A backbone maps an image to an
embedding ``z`` (``(N, D)``); every class owns one prototype ``pi_c`` in that
space and scores ``-distance(z, pi_c) / temperature``. How the prototypes come
about is what distinguishes the models here:

* :class:`LearntPrototypes` -- free parameters, trained with the classifier;
  with the :class:`~invproto.losses.metric_prototypes.DistortionLoss` on a
  class cost matrix these are the paper's *metric-guided prototypes*;
* :class:`HypersphericalPrototypes` -- fixed, maximally separated unit vectors
  (Mettes et al. 2019), computed once at construction;
* :class:`DeepNCM` -- running means of each class's embeddings (Guerriero et
  al. 2018), no parameters.

With ``hierarchical_inference`` every internal node of the class tree but the
root gets a prototype too, and class probabilities come from a tree softmax
(:class:`HierarchicalInference`, YOLOv2-style) instead of a flat one.

There is no decoder: :meth:`PrototypeClassifier.prototype_images` shows, for
each class prototype, the training image of the last epoch whose embedding came
nearest to it (:class:`NearestImages`, filled by the iterator and saved with
the checkpoint).

Shapes: ``N`` images, ``C`` classes, ``V`` tree nodes (root last), ``P``
prototypes (``C``, or ``V - 1`` with hierarchical inference; class prototypes
first), ``D`` embedding dimensions. Distances are in embedding units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from invproto.config import instantiate
from invproto.config.run import abort_cleanly
from invproto.config.schema import ComponentSpec
from invproto.config.validation import ConfigError
from invproto.data.hierarchy import ClassHierarchy, hierarchy_by_name
from invproto.models.base import Model
from invproto.models.prototype_model import Explanation, PrototypeModel
from invproto.modules.distances import KINDS, pairwise_distances


@dataclass
class PrototypeOutput:
    """A prototype classifier's output on ``N`` images.

    ``embedding``: ``(N, D)``; ``scores``: ``(N, P)`` ``-distance / temperature``
    to every prototype; ``logits``: ``(N, C)`` class scores whose softmax is the
    predicted distribution (with hierarchical inference: normalised log-probabilities).
    """

    embedding: torch.Tensor
    scores: torch.Tensor
    logits: torch.Tensor


class HierarchicalInference(nn.Module):
    """Tree softmax (YOLOv2): class log-probabilities from one score per non-root node.

    The scores of each sibling group are normalised by a softmax, giving
    ``log p(v | parent(v))``; a class's log-probability is the sum of these
    along its path to the root. The ``C`` class probabilities sum to 1.
    """

    def __init__(self, hierarchy: ClassHierarchy):
        super().__init__()
        self.groups = hierarchy.sibling_groups()
        self.register_buffer("ancestry", hierarchy.ancestry())

    def conditional_log_probs(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N, V-1)`` node scores -> ``(N, V-1)`` ``log p(v | parent(v))``."""
        conditional = torch.empty_like(scores)
        for group in self.groups:
            conditional[:, group] = scores[:, group].log_softmax(dim=1)
        return conditional

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N, V-1)`` node scores -> ``(N, C)`` class log-probabilities."""
        return self.conditional_log_probs(scores) @ self.ancestry.T


class NearestImages(nn.Module):
    """For each of ``P`` prototypes, the image nearest to it among those offered since the last reset.

    Buffers (saved with the model): ``images`` ``(P, C, H, W)`` (empty until
    the first offer), ``distance`` ``(P,)`` and the ``epoch`` they were collected
    in; offering images of a new epoch starts the search afresh.
    """

    def __init__(self, n_prototypes: int):
        super().__init__()
        self.register_buffer("images", torch.empty(0))
        self.register_buffer("distance", torch.full((n_prototypes,), math.inf))
        self.register_buffer("epoch", torch.tensor(-1))
        self._epoch_seen: int | None = None  # host copy of ``epoch`` (reading the buffer would wait for the device)

    @torch.no_grad()
    def offer(self, images: torch.Tensor, distances: torch.Tensor, epoch: int) -> None:
        """``(N, C, H, W)`` images with their ``(N, P)`` distances to the prototypes, seen in ``epoch``."""
        if self._epoch_seen is None:
            self._epoch_seen = int(self.epoch)
        if self._epoch_seen != epoch or self.images.shape[1:] != images.shape[1:]:
            self.images = images.new_zeros((len(self.distance), *images.shape[1:]))
            self.distance.fill_(math.inf)
            self.epoch.fill_(epoch)
            self._epoch_seen = epoch
        nearest, index = distances.min(dim=0)
        closer = nearest < self.distance  # (P,); selected with where(), as a boolean index would wait for the device
        self.distance.copy_(torch.where(closer, nearest, self.distance))
        self.images.copy_(torch.where(closer.view(-1, *[1] * (images.dim() - 1)), images[index], self.images))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "images")
        if saved is not None:
            self.images = self.images.new_empty(saved.shape)  # its shape is known only once filled
        self._epoch_seen = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _default_backbone() -> ComponentSpec:
    """The classifier's encoder of ``configs/mnist_clf.yaml``: 28 px grayscale -> 64-d."""
    return ComponentSpec(target="invproto.modules.convnets.ConvEncoder",
                         params={"in_channels": 1, "in_size": 28, "n_down": 3, "base_channels": 64, "out_dim": 64})


class PrototypeClassifier(Model, PrototypeModel):
    """Backbone + one prototype per class (and per internal node): the shared base.

    Subclasses implement :meth:`prototypes`. Prototypes ``0 .. C-1`` belong to
    the classes (``prototype_class[c] = c``) and are the ones an
    :class:`Explanation` and :meth:`prototype_images` show.
    """

    @dataclass
    class Params:
        backbone: ComponentSpec = field(default_factory=_default_backbone)  # images -> (N, embedding_dim)
        embedding_dim: int = 64  # D, the backbone's output size
        n_classes: int = 10  # C
        distance: str = "euclidean"  # euclidean (the paper's) | squared | cosine
        temperature: float = 1.0  # scores are -distance / temperature
        hierarchy: str = "flat"  # class tree of the cost matrix: flat | fashion_mnist | cifar10
        hierarchical_inference: bool = False  # tree softmax over one prototype per non-root node

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        with abort_cleanly():
            if p.distance not in KINDS:
                raise ConfigError(f"model_params.distance must be one of {', '.join(KINDS)}, got {p.distance!r}")
            if not p.temperature > 0:
                raise ConfigError(f"model_params.temperature must be positive, got {p.temperature}")
            try:
                self.hierarchy = hierarchy_by_name(p.hierarchy, p.n_classes)
            except ValueError as error:
                raise ConfigError(f"model_params.hierarchy: {error}") from None
        self.backbone = instantiate(p.backbone, "model_params.backbone")
        n_prototypes = self.hierarchy.n_nodes - 1 if p.hierarchical_inference else p.n_classes
        self.prototype_nodes = list(range(n_prototypes))  # tree node of each prototype
        self.inference = HierarchicalInference(self.hierarchy) if p.hierarchical_inference else None
        self.register_buffer("prototype_class", torch.arange(p.n_classes))
        self.nearest_images = NearestImages(p.n_classes)

    def prototypes(self) -> torch.Tensor:
        """``(P, D)`` all prototypes, class prototypes first."""
        raise NotImplementedError

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images in [-1, 1] -> ``(N, D)`` embeddings."""
        z = self.backbone(images)
        if z.dim() != 2 or z.shape[1] != self.params.embedding_dim:
            raise ValueError(f"the backbone returns shape {tuple(z.shape)}, not (N, {self.params.embedding_dim}); "
                             f"make model_params.embedding_dim its output size")
        return z

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` embeddings -> ``(N, P)`` ``-distance / temperature`` to every prototype."""
        return -pairwise_distances(z, self.prototypes(), self.params.distance) / self.params.temperature

    def classify(self, z: torch.Tensor, target: torch.Tensor | None = None) -> PrototypeOutput:
        """``(N, D)`` embeddings -> :class:`PrototypeOutput`; ``(N,)`` labels only matter to :class:`DeepNCM`."""
        scores = self.scores(z)
        logits = self.inference(scores) if self.inference is not None else scores
        return PrototypeOutput(embedding=z, scores=scores, logits=logits)

    def forward(self, images: torch.Tensor, target: torch.Tensor | None = None) -> PrototypeOutput:
        """``(N, C, H, W)`` images in [-1, 1] (and, in training, their ``(N,)`` labels) -> output."""
        return self.classify(self.embed(images), target)

    def explain(self, images: torch.Tensor) -> Explanation:
        output = self(images)
        return Explanation(logits=output.logits, similarity=output.scores[:, :self.params.n_classes])

    def prototype_images(self) -> torch.Tensor:
        """``(C, C_img, H, W)``: per class prototype, the nearest training image of the last epoch."""
        if self.nearest_images.images.numel() == 0:
            raise RuntimeError("no prototype images yet: they are collected during training (load a "
                               "checkpoint written after at least one training step)")
        return self.nearest_images.images


class LearntPrototypes(PrototypeClassifier):
    """Prototypes as free parameters, ``N(0, init_std^2)`` at the start.

    Trained with cross-entropy alone they are the "learnt prototypes" baseline;
    with the distortion loss they are metric-guided.
    """

    @dataclass
    class Params(PrototypeClassifier.Params):
        init_std: float = 1.0  # std of the initial prototype coordinates

    def __init__(self, config):
        super().__init__(config)
        shape = (len(self.prototype_nodes), self.params.embedding_dim)
        self.prototype_vectors = nn.Parameter(torch.randn(shape) * self.params.init_std)

    def prototypes(self) -> torch.Tensor:
        return self.prototype_vectors


def hyperspherical_prototypes(n: int, dim: int, steps: int = 1000, lr: float = 0.01, sharpness: float = 20.0,
                              seed: int = 0) -> torch.Tensor:
    """``(n, dim)`` unit vectors spread over the sphere (Mettes et al. 2019).

    Mettes et al. minimise the mean over prototypes of their largest cosine
    similarity to another one. That maximum is not smooth and plain SGD on it
    oscillates; here it is replaced by its smooth upper bound
    ``logsumexp(sharpness * cos) / sharpness`` and minimised with Adam and a
    cosine learning-rate decay. For ``n <= dim + 1`` the optimum is a regular
    simplex, every cosine ``-1 / (n - 1)``, which this reaches to ~1e-7.
    """
    generator = torch.Generator().manual_seed(seed)
    points = nn.Parameter(torch.randn(n, dim, generator=generator))
    optimizer = torch.optim.Adam([points], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    for _ in range(steps):
        unit = F.normalize(points, dim=1)
        cosine = (unit @ unit.T)[off_diagonal].view(n, n - 1)
        loss = ((sharpness * cosine).logsumexp(dim=1) / sharpness).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return F.normalize(points.detach(), dim=1)


class HypersphericalPrototypes(PrototypeClassifier):
    """Fixed, maximally separated unit prototypes; only the backbone learns. Cosine distance by default."""

    @dataclass
    class Params(PrototypeClassifier.Params):
        distance: str = "cosine"
        temperature: float = 0.1  # cosine distances lie in [0, 2]: sharpen them for the softmax
        separation_steps: int = 1000  # gradient steps of the separation optimisation
        seed: int = 0  # of the prototypes' random start

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        self.register_buffer("fixed_prototypes", hyperspherical_prototypes(
            len(self.prototype_nodes), p.embedding_dim, steps=p.separation_steps, seed=p.seed))

    def prototypes(self) -> torch.Tensor:
        return self.fixed_prototypes


class DeepNCM(PrototypeClassifier):
    """Nearest class mean: prototypes are running means of embeddings, squared distance by default.

    In training mode, a forward pass with labels first moves each prototype
    towards the mean embedding of the batch's examples below its node
    (:meth:`update_means`, like batch norm's running statistics), then scores
    the batch against the updated means. With ``decay`` null the prototype is
    the exact mean of all embeddings it has seen (count-weighted); with a
    ``decay`` in (0, 1) it is an exponential moving average of the batch means,
    ``mean <- decay * mean + (1 - decay) * batch_mean`` (the first batch mean
    is taken as is). The means are buffers: they follow the model's device and
    are saved with it; gradients flow into the backbone only.
    """

    @dataclass
    class Params(PrototypeClassifier.Params):
        distance: str = "squared"
        decay: Optional[float] = 0.9  # null: exact running mean; else EMA factor of the old mean

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        if p.decay is not None and not 0 < p.decay < 1:
            with abort_cleanly():
                raise ConfigError(f"model_params.decay must be null or in (0, 1), got {p.decay}")
        n_prototypes = len(self.prototype_nodes)
        self.register_buffer("means", torch.zeros(n_prototypes, p.embedding_dim))
        self.register_buffer("counts", torch.zeros(n_prototypes))
        # membership[c, v] = 1 when prototype v's node is class c or one of its ancestors
        self.register_buffer("membership", self.hierarchy.ancestry()[:, :n_prototypes])

    def prototypes(self) -> torch.Tensor:
        return self.means

    def classify(self, z: torch.Tensor, target: torch.Tensor | None = None) -> PrototypeOutput:
        if self.training and target is not None:
            self.update_means(z, target)
        return super().classify(z)

    @torch.no_grad()
    def update_means(self, z: torch.Tensor, target: torch.Tensor) -> None:
        """Fold a batch of ``(N, D)`` embeddings with ``(N,)`` labels into the means."""
        weights = self.membership[target]  # (N, P): which prototypes each example counts for
        batch_counts = weights.sum(dim=0)
        seen = batch_counts > 0
        batch_means = (weights.T @ z.detach())[seen] / batch_counts[seen, None]
        if self.params.decay is None:
            step = batch_counts[seen] / (self.counts[seen] + batch_counts[seen])
        else:
            step = torch.where(self.counts[seen] > 0, 1 - self.params.decay, 1.0)
        self.means[seen] += step[:, None] * (batch_means - self.means[seen])
        self.counts[seen] += batch_counts[seen]
