"""What every prototype model offers, whatever its kind.

ProtoFlow (Gaussian-mixture prototypes in a flow's latent space), prototypeDL,
metric-guided prototypes and part prototypes (ProtoPNet/PixPNet) differ in
what a prototype *is*, but each has ``P`` prototypes, each owned by a class,
and can say how strongly each prototype explains an image. That shared view
is :class:`PrototypeModel`; the ``prototype_accuracy`` callback and the demo
use nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Explanation:
    """A prototype model's reading of ``N`` images.

    ``logits``: ``(N, C)`` class scores; their softmax is the predicted class distribution.
    ``similarity``: ``(N, P)`` how strongly each prototype explains each image, higher
    is closer (a weighted component log-density in nats for ProtoFlow, a negative
    distance for prototypeDL, a patch similarity for part prototypes).
    """

    logits: torch.Tensor
    similarity: torch.Tensor


class PrototypeModel:
    """Mixin of models with class-owned prototypes.

    Implementations set :attr:`prototype_class` (a ``(P,)`` long tensor, the
    class of each prototype, in prototype order) and implement :meth:`explain`
    and :meth:`prototype_images`.
    """

    prototype_class: torch.Tensor

    @property
    def n_prototypes(self) -> int:
        return int(self.prototype_class.numel())

    def explain(self, images: torch.Tensor) -> Explanation:
        """``(N, C, H, W)`` images in [-1, 1] -> their :class:`Explanation`."""
        raise NotImplementedError

    def prototype_images(self) -> torch.Tensor:
        """``(P, C, H, W)`` one image per prototype in [-1, 1] (a decoded mean, a pushed patch's image)."""
        raise NotImplementedError
