"""ProtoPNet's training objective for part prototypes.

For ``N`` images with labels ``y``, the ``(N, P)`` distances ``d[i, p]`` of
each prototype to its nearest patch and the head's ``(C, P)`` weights ``W``:

* ``cluster`` = mean_i min_{p of class y_i} d[i, p]: every image has a patch
  close to some prototype of its class,
* ``separation`` = mean_i min_{p not of class y_i} d[i, p]: and none close to
  a prototype of another class,
* ``l1`` = sum_{c, p not of class c} |W[c, p]|: the head does not reason with
  other classes' prototypes (zero for the sparse and proto heads),

    loss = CE(logits, y) + cluster_weight * cluster - separation_weight * separation + l1_weight * l1

(ProtoPNet writes the separation coefficient as -0.08; here the weight is
positive and the sign is in the formula.) Defaults are ProtoPNet's: 0.8,
0.08, 1e-4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _own_class(target: torch.Tensor, prototype_class: torch.Tensor) -> torch.Tensor:
    """bool ``(N, P)``: prototype ``p`` belongs to image ``i``'s class."""
    return target[:, None] == prototype_class[None, :]


def cluster_cost(min_distances: torch.Tensor, target: torch.Tensor, prototype_class: torch.Tensor) -> torch.Tensor:
    """Mean over images of the distance to the nearest prototype of the own class."""
    return min_distances.masked_fill(~_own_class(target, prototype_class), torch.inf).amin(dim=1).mean()


def separation_cost(min_distances: torch.Tensor, target: torch.Tensor, prototype_class: torch.Tensor) -> torch.Tensor:
    """Mean over images of the distance to the nearest prototype of another class."""
    return min_distances.masked_fill(_own_class(target, prototype_class), torch.inf).amin(dim=1).mean()


def off_class_l1(head_weight: torch.Tensor, prototype_class: torch.Tensor) -> torch.Tensor:
    """Sum of ``|W[c, p]|`` over the ``(C, P)`` head weights of prototypes not of class ``c``."""
    classes = torch.arange(head_weight.shape[0], device=head_weight.device)
    return head_weight.abs().masked_fill(classes[:, None] == prototype_class[None, :], 0).sum()


class PartPrototypeLoss:
    """The weighted objective of the module docstring; returns ``(loss, scalars)``."""

    def __init__(self, cluster_weight: float = 0.8, separation_weight: float = 0.08, l1_weight: float = 1e-4):
        self.cluster_weight, self.separation_weight, self.l1_weight = cluster_weight, separation_weight, l1_weight

    def __call__(self, logits: torch.Tensor, min_distances: torch.Tensor, target: torch.Tensor,
                 prototype_class: torch.Tensor, head_weight: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cross_entropy = F.cross_entropy(logits, target)
        cluster = cluster_cost(min_distances, target, prototype_class)
        separation = separation_cost(min_distances, target, prototype_class)
        l1 = off_class_l1(head_weight, prototype_class)
        loss = (cross_entropy + self.cluster_weight * cluster - self.separation_weight * separation
                + self.l1_weight * l1)
        return loss, {"cross_entropy": cross_entropy.detach(), "cluster": cluster.detach(),
                      "separation": separation.detach(), "l1": l1.detach(),
                      "accuracy": (logits.argmax(1) == target).float().mean().detach()}
