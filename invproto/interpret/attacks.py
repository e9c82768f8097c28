"""Adversarial perturbations of a classifier's input: FGSM and its random-sign control.

Both move every pixel of an image in [-1, 1] by exactly ``epsilon`` (in the
same units, so ``epsilon = 2/255`` is one 8-bit grey level step per 255/2)
and clamp the result back to [-1, 1]:

* :func:`fgsm` -- the fast gradient sign method (Goodfellow et al., 2015):
  ``x' = x + epsilon * sign(grad_x CE(f(x), y))``, one step up the
  classification loss of the true labels ``y``;
* :func:`random_sign` -- ``x' = x + epsilon * s`` with seeded random signs
  ``s``: a perturbation of the same size in no chosen direction, the control
  showing that what FGSM does is not the effect of noise of that size.

:func:`perturbed_views` applies both to a conditional INN's network and
decodes the clean image's flow code under each perturbed representation:
what the attacked network "sees" (the reference's attack demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Classifier = Callable[[torch.Tensor], torch.Tensor]  # (N, C, H, W) in [-1, 1] -> (N, K) logits


def fgsm(classify: Classifier, images: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``(N, C, H, W)`` images in [-1, 1] and ``(N,)`` labels -> FGSM images, ``(N, C, H, W)`` in [-1, 1].

    Gradients are taken with autograd enabled even inside ``torch.no_grad`` /
    ``torch.inference_mode`` (the images are copied into a normal tensor).
    """
    with torch.inference_mode(False), torch.enable_grad():
        inputs = images.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(classify(inputs), labels.detach().clone())
        (gradient,) = torch.autograd.grad(loss, inputs)
    return (images + epsilon * gradient.sign()).clamp(-1, 1).detach()


def random_sign(images: torch.Tensor, epsilon: float, seed: int = 0) -> torch.Tensor:
    """``(N, C, H, W)`` images in [-1, 1] moved by ``epsilon`` along seeded random signs, clamped to [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, images.shape, generator=generator).to(images) * 2 - 1
    return (images + epsilon * signs).clamp(-1, 1)


@dataclass
class PerturbedView:
    """One version of ``N`` images as a conditional INN's network reads it."""

    images: torch.Tensor  # (N, C, H, W) in [-1, 1]
    classes: torch.Tensor  # (N,) the network's predictions for them
    decode: torch.Tensor  # (N, C, H, W) the clean images' flow codes decoded under their representation
    decode_classes: torch.Tensor  # (N,) the network's predictions for the decodes


def perturbed_views(model, images: torch.Tensor, labels: torch.Tensor, z: torch.Tensor, epsilon: float,
                    seed: int = 0) -> dict[str, PerturbedView]:
    """The ``clean``, ``attacked`` (FGSM on ``labels``) and ``random`` (random signs) views of ``images``.

    ``model`` is a conditional INN (:class:`~invproto.models.cinn.ConditionalIIN`: ``network`` with
    ``encode_and_classify`` / ``classify``, and ``decode(z, representation)``); ``z`` ``(N, D)`` are the
    clean images' flow codes. A decode that the network classifies as the perturbed image shows what the
    perturbation made the network see.
    """
    network = model.network
    versions = {"clean": images, "attacked": fgsm(network.classify, images, labels, epsilon),
                "random": random_sign(images, epsilon, seed)}
    views = {}
    for kind, version in versions.items():
        representation, logits = network.encode_and_classify(version)
        decode = model.decode(z, representation)
        views[kind] = PerturbedView(version, logits.argmax(1), decode, network.classify(decode).argmax(1))
    return views
