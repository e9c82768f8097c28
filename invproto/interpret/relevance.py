"""The relevance ordering test: does a heat map rank first the pixels a prototype responds to?

For an image ``x``, a prototype ``p`` and a pixel heat map ``h`` of ``p`` on
``x``, the pixels of ``x`` are pasted onto a baseline image in the order of
decreasing ``h``; after a fraction ``f`` of the pixels (``f = 0, 1/S, ...,
1``) the prototype's similarity ``s(f)`` (its maximum over the patches) is
recorded. A faithful heat map restores the similarity early.

The curve is normalised to the similarity gained between the baseline and
the full image and capped to [0, 1], ``g(f) = clip((s(f) - s(0)) / (s(1) -
s(0)), 0, 1)``: the share of the gain restored after a fraction ``f``. Its
area ``AUC = integral_0^1 g(f) df`` (trapezoid rule) is 1 when the first
pixels already restore everything, about 1/2 for a steady rise, lower when
the relevant pixels come last. A pair whose full image is not more similar to
the prototype than the baseline (gain below ``1e-6``) says nothing about
pixel order and scores NaN. (PixPNet divides ``s(f)`` by ``s(1)`` instead:
that needs positive similarities, and pairs with a small gain dominate the
mean; the capped gain is offset- and scale-free and bounded.)

Baselines: ``zero`` (the all-zero image in the model's input scale, mid-grey
for images in [-1, 1]) or ``random`` (uniform noise in [-1, 1], seeded).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

BASELINES = ("zero", "random")
MIN_GAIN = 1e-6

SimilarityFn = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) images -> (B, P) similarities


def baseline_image(kind: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """The ``(C, H, W)`` image the pixels are pasted onto: ``zero`` or seeded ``random`` in [-1, 1]."""
    if kind == "zero":
        return torch.zeros(shape)
    if kind == "random":
        return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def revealed_images(image: torch.Tensor, heatmaps: torch.Tensor, baseline: torch.Tensor,
                    steps: int) -> torch.Tensor:
    """``(C, H, W)`` image, ``(M, H, W)`` heat maps -> ``(M, steps + 1, C, H, W)`` partially revealed images.

    Image ``[m, k]`` shows the ``round(k / steps * H * W)`` pixels ranked
    highest by heat map ``m`` (ties in pixel order) and the baseline elsewhere.
    """
    n_pixels = heatmaps[0].numel()
    order = heatmaps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n_pixels, device=order.device).expand_as(order))
    counts = torch.round(torch.linspace(0, n_pixels, steps + 1, device=order.device)).long()
    shown = (rank[:, None, :] < counts[None, :, None]).view(*heatmaps.shape[:1], steps + 1, 1, *heatmaps.shape[1:])
    return torch.where(shown, image, baseline)


def relevance_curves(similarity_fn: SimilarityFn, image: torch.Tensor, heatmaps: torch.Tensor,
                     prototypes: torch.Tensor, baseline: torch.Tensor, steps: int) -> torch.Tensor:
    """``(M, steps + 1)``: similarity of ``prototypes[m]`` as pixels are revealed in the order of ``heatmaps[m]``."""
    images = revealed_images(image, heatmaps, baseline.to(image), steps)
    similarity = similarity_fn(images.flatten(0, 1)).view(len(prototypes), steps + 1, -1)
    return similarity.gather(2, prototypes.to(similarity.device).view(-1, 1, 1).expand(-1, steps + 1, 1))[..., 0]


def relevance_auc(curves: torch.Tensor) -> np.ndarray:
    """``(M, S + 1)`` curves -> ``(M,)`` areas under the capped gain curves (module docstring).

    NaN where the gain ``s(1) - s(0)`` is below ``1e-6``.
    """
    curves = curves.double().cpu()
    gain = curves[:, -1] - curves[:, 0]
    restored = ((curves - curves[:, :1]) / gain[:, None]).clamp(0, 1)
    auc = torch.trapezoid(restored, dx=1.0 / (curves.shape[1] - 1), dim=1)
    return torch.where(gain >= MIN_GAIN, auc, torch.nan).numpy()
