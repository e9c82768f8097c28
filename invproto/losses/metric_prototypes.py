"""Losses of metric-guided prototype learning (Sainte Fare Garnot & Landrieu 2020) and its baselines.

A prototype classifier scores an embedding by its negative distance to one
prototype per class (and, with hierarchical inference, per internal tree node).
Its training objective is a *data term* on the class scores plus optional
terms that shape the prototypes after a target metric ``D`` between them (the
tree distance of a :class:`~invproto.data.hierarchy.ClassHierarchy`):

* :class:`DistortionLoss` -- mean squared relative error between the
  prototypes' Euclidean distances, optimally rescaled, and ``D``: the paper's
  metric guidance,
* :class:`RankLoss` -- a logistic loss asking every triplet of prototypes to
  order its distances as ``D`` does,
* data terms (:class:`MetricPrototypeLoss`): cross-entropy; soft labels
  (Bertinetto et al. 2020): cross-entropy against ``softmax(-beta D[y] / max D)``;
  hierarchical cross-entropy (HXE, Bertinetto et al. 2020): the conditional
  log-probabilities of a tree softmax along the true path, node ``v`` weighted
  by ``exp(-alpha * height(v))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from invproto.config.validation import ConfigError
from invproto.data.hierarchy import ClassHierarchy, mean_cost
from invproto.models.metric_prototypes import HierarchicalInference, PrototypeOutput
from invproto.modules.distances import pairwise_distances

DATA_TERMS = ("cross_entropy", "soft_labels", "hierarchical_cross_entropy")


def _off_diagonal(matrix: torch.Tensor) -> torch.Tensor:
    """The ``K*(K-1)`` off-diagonal entries of a ``(K, K)`` matrix."""
    k = matrix.shape[0]
    return matrix[~torch.eye(k, dtype=torch.bool, device=matrix.device)]


def _checked_metric(cost: torch.Tensor) -> torch.Tensor:
    cost = torch.as_tensor(cost, dtype=torch.float32)
    if cost.dim() != 2 or cost.shape[0] != cost.shape[1] or cost.shape[0] < 2:
        raise ValueError(f"the target metric must be a (K, K) matrix with K >= 2, got shape {tuple(cost.shape)}")
    if not (_off_diagonal(cost) > 0).all():
        raise ValueError("the target metric must be positive between distinct prototypes")
    return cost


class DistortionLoss(nn.Module):
    """Distortion of the prototypes' Euclidean distances ``d`` w.r.t. a target metric ``D`` (``(K, K)``).

    With ratios ``a_ij = d_ij / D_ij`` over the ``K(K-1)`` pairs ``i != j``::

        distortion = mean_{i != j} (s * a_ij - 1)^2 = mean_{i != j} ((s d_ij - D_ij) / D_ij)^2

    where ``s = sum(a) / sum(a^2)`` minimises it over all scales (``scale_free``,
    the default): the loss then ignores the size of the embedding, only its
    shape counts. With ``scale_free=False``, ``s = 1``. Unitless.
    """

    def __init__(self, cost: torch.Tensor, scale_free: bool = True):
        super().__init__()
        self.register_buffer("cost", _checked_metric(cost))
        self.scale_free = scale_free

    def forward(self, prototypes: torch.Tensor) -> torch.Tensor:
        """``(K, D)`` prototypes -> scalar distortion."""
        ratio = _off_diagonal(pairwise_distances(prototypes, prototypes, "euclidean")) / _off_diagonal(self.cost)
        scale = ratio.sum() / ratio.square().sum() if self.scale_free else 1.0
        return (scale * ratio - 1).square().mean()


class RankLoss(nn.Module):
    """Logistic ranking loss: every triplet of prototypes orders its distances as ``D`` does.

    For all triplets ``(i, j, k)`` of distinct prototypes with ``D_ij != D_ik``
    (all of them, not a random sample as in the reference code -- there are
    only ``K^3`` with ``K`` prototypes), with ``t = sign(D_ij - D_ik)``::

        rank = mean log(1 + exp(-t (d_ij - d_ik)))

    ``d`` is the Euclidean distance between prototypes, in embedding units.
    """

    def __init__(self, cost: torch.Tensor):
        super().__init__()
        cost = _checked_metric(cost)
        i, j, k = torch.meshgrid(*[torch.arange(len(cost))] * 3, indexing="ij")
        order = torch.sign(cost[i, j] - cost[i, k])
        keep = (order != 0) & (i != j) & (i != k) & (j != k)
        if not keep.any():
            raise ValueError("the target metric ranks no triplet: all its distances are equal")
        self.register_buffer("triplets", torch.stack([i[keep], j[keep], k[keep]]))
        self.register_buffer("order", order[keep])

    def forward(self, prototypes: torch.Tensor) -> torch.Tensor:
        """``(K, D)`` prototypes -> scalar mean logistic loss."""
        d = pairwise_distances(prototypes, prototypes, "euclidean")
        i, j, k = self.triplets
        return F.softplus(-self.order * (d[i, j] - d[i, k])).mean()


def soft_labels(cost: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """``(N, C)`` soft targets ``softmax(-beta * cost[y] / max(cost))`` of ``(N,)`` labels (Bertinetto et al.)."""
    return (-beta * cost[target] / cost.max()).softmax(dim=1)


def hierarchical_cross_entropy(conditional_log_probs: torch.Tensor, target: torch.Tensor,
                               ancestry: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean HXE: ``-sum_{v on y's path} weights[v] * log p(v | parent(v))``.

    ``conditional_log_probs``: ``(N, V-1)`` per-node conditional log-probabilities;
    ``ancestry``: ``(C, V-1)`` path membership; ``weights``: ``(V-1,)``.
    """
    return -(conditional_log_probs * ancestry[target] * weights).sum(dim=1).mean()


class MetricPrototypeLoss(nn.Module):
    """Training objective of a prototype classifier: data term + metric guidance of its prototypes.

    ``loss = data_term + distortion_weight * distortion + rank_weight * rank``

    The data term is in nats; distortion and rank compare the model's
    prototypes with the tree distance between the nodes they stand for (the
    classes, and the internal nodes with hierarchical inference). The
    distortion is reported even when its weight is 0. ``hierarchy`` and
    ``prototype_nodes`` (the tree node of each prototype) come from the model,
    the rest from ``loss.params`` (:class:`Params`).
    """

    @dataclass
    class Params:
        data_term: str = "cross_entropy"  # cross_entropy | soft_labels | hierarchical_cross_entropy
        distortion_weight: float = 1.0  # the paper's metric guidance; 0 (and rank 0): free learnt prototypes
        scale_free: bool = True  # distortion up to the optimal scale of the prototypes
        rank_weight: float = 0.0  # logistic triplet ranking loss instead of / besides the distortion
        soft_labels_beta: float = 10.0  # soft_labels: sharpness of softmax(-beta * cost[y] / max cost)
        hxe_alpha: float = 0.1  # hierarchical_cross_entropy: node weight exp(-alpha * height)

    def __init__(self, hierarchy: ClassHierarchy, prototype_nodes: list[int], **params):
        super().__init__()
        p = self.params = self.Params(**params)
        if p.data_term not in DATA_TERMS:
            raise ConfigError(f"loss.params.data_term must be one of {', '.join(DATA_TERMS)}, got {p.data_term!r}")
        hierarchical = len(prototype_nodes) == hierarchy.n_nodes - 1
        if p.data_term == "hierarchical_cross_entropy" and not hierarchical:
            raise ConfigError("loss.params.data_term hierarchical_cross_entropy needs one prototype per tree node; "
                              "set model_params.hierarchical_inference to true")
        self.register_buffer("cost", hierarchy.cost_matrix())
        metric = hierarchy.node_distances()[prototype_nodes][:, prototype_nodes]
        self.distortion = DistortionLoss(metric, p.scale_free)
        self.rank = RankLoss(metric) if p.rank_weight else None
        if hierarchical:
            self.inference = HierarchicalInference(hierarchy)
            self.register_buffer("hxe_weights", torch.exp(-p.hxe_alpha * hierarchy.height()[:-1]))

    def data_loss(self, output: PrototypeOutput, target: torch.Tensor) -> torch.Tensor:
        if self.params.data_term == "soft_labels":
            return F.cross_entropy(output.logits, soft_labels(self.cost, target, self.params.soft_labels_beta))
        if self.params.data_term == "hierarchical_cross_entropy":
            return hierarchical_cross_entropy(self.inference.conditional_log_probs(output.scores), target,
                                              self.inference.ancestry, self.hxe_weights)
        return F.cross_entropy(output.logits, target)

    def forward(self, output: PrototypeOutput, target: torch.Tensor,
                prototypes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Model output on a batch, ``(N,)`` labels, ``(P, D)`` prototypes -> ``(loss, scalars)``."""
        data = self.data_loss(output, target)
        distortion = self.distortion(prototypes)  # reported also when it is not trained
        loss = data + self.params.distortion_weight * distortion
        scalars = {self.params.data_term: data.detach(), "distortion": distortion.detach()}
        if self.rank is not None:
            rank = self.rank(prototypes)
            loss = loss + self.params.rank_weight * rank
            scalars["rank"] = rank.detach()
        predicted = output.logits.argmax(dim=1)
        scalars["accuracy"] = (predicted == target).float().mean()
        scalars["average_cost"] = mean_cost(self.cost, target, predicted)
        return loss, scalars
