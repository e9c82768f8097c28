"""The prototypeDL objective (Li et al. 2018), with squared L2 norms as in the paper.

On a batch of ``N`` images with ``(N, P)`` squared latent distances
``d_ij = ||f(x_i) - p_j||^2 / L`` (per latent dimension, see
:mod:`invproto.models.protodl`)::

    loss = class_weight * CE + reconstruction_weight * R + r1_weight * R1 + r2_weight * R2

* ``CE``: softmax cross-entropy of the logits, nats;
* ``R = mean_i ||g(f(x_i)) - x_i||^2``: squared reconstruction error summed over
  pixels, measured on the [0, 1] intensity scale of the paper (our images are
  in [-1, 1], so the difference is halved first);
* ``R1 = mean_j min_i d_ij``: every prototype is near some encoded image
  (so that decoded prototypes look like data);
* ``R2 = mean_i min_j d_ij``: every encoded image is near some prototype.

The pytorch reference (p-kar/pytorch-prototypeDL) uses unsquared norms for all
three; the paper's weights are 20 / 1 / 1 / 1, the defaults here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invproto.models.protodl import ProtoDLOutput


def reconstruction_error(reconstruction: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``R``: mean over images of the squared L2 error in [0, 1] units, ``(N, C, S, S)`` in [-1, 1] each."""
    return ((reconstruction - images) / 2).square().flatten(1).sum(dim=1).mean()


def prototype_to_data(distances: torch.Tensor) -> torch.Tensor:
    """``R1`` of ``(N, P)`` squared distances: mean over prototypes of the nearest image's distance."""
    return distances.min(dim=0).values.mean()


def data_to_prototype(distances: torch.Tensor) -> torch.Tensor:
    """``R2`` of ``(N, P)`` squared distances: mean over images of the nearest prototype's distance."""
    return distances.min(dim=1).values.mean()


class ProtoDLLoss:
    def __init__(self, class_weight: float = 20.0, reconstruction_weight: float = 1.0, r1_weight: float = 1.0,
                 r2_weight: float = 1.0):
        self.class_weight, self.reconstruction_weight = class_weight, reconstruction_weight
        self.r1_weight, self.r2_weight = r1_weight, r2_weight

    def __call__(self, output: ProtoDLOutput, images: torch.Tensor,
                 target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Model output on ``(N, C, S, S)`` images with ``(N,)`` labels -> ``(loss, scalars)``."""
        terms = {"cross_entropy": F.cross_entropy(output.logits, target),
                 "reconstruction": reconstruction_error(output.reconstruction, images),
                 "r1": prototype_to_data(output.distances),
                 "r2": data_to_prototype(output.distances)}
        loss = (self.class_weight * terms["cross_entropy"] + self.reconstruction_weight * terms["reconstruction"]
                 + self.r1_weight * terms["r1"] + self.r2_weight * terms["r2"])
        scalars = {name: value.detach() for name, value in terms.items()}
        scalars["accuracy"] = (output.logits.argmax(dim=1) == target).float().mean()
        return loss, scalars
