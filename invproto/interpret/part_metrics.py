"""Consistency and stability of part prototypes against annotated object parts.

The metrics of Huang et al. (arXiv 2212.05946) as PixPNet evaluates them. A
prototype's *region* in an image is the square of half-width ``radius``
pixels centred on the peak of its heat map (the mean position of tied
maxima); an annotated part (a keypoint) is *hit* when it lies inside, i.e.
its Chebyshev distance to the peak is at most ``radius``. Only the
prototypes of an image's own class are evaluated on it.

* **consistency**: per prototype, the hit rate of every part over the images
  of its class; the prototype's score is its best part's rate.
  ``consistency`` is the mean score over prototypes, ``consistency_hard`` the
  fraction of prototypes scoring at least 0.8.
* **stability**: the same images with Gaussian noise added. Per prototype, the
  fraction of images whose set of hit parts is unchanged (``stability``) and
  the mean Jaccard overlap of the two sets (``stability_soft``; 1 when both
  are empty, where PixPNet's 0/0 gives NaN); both averaged over prototypes.

Arrays: ``N`` images, ``M`` prototypes per image (those of its class), ``K``
parts; ``prototypes`` ``(N, M)`` says which prototype each slot is, so every
prototype is averaged over the images it was evaluated on.
"""

from __future__ import annotations

import numpy as np
import torch

CONSISTENT = 0.8  # a prototype hitting one part in at least this share of its class's images is consistent


def peak_positions(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` heat maps -> ``(..., 2)`` float ``(x, y)`` of each map's maximum (mean of ties)."""
    height, width = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    is_peak = (flat == flat.amax(dim=-1, keepdim=True)).to(heatmaps.dtype)
    pixel = torch.arange(height * width, device=heatmaps.device)
    x, y = (pixel % width).to(heatmaps.dtype), (pixel // width).to(heatmaps.dtype)
    count = is_peak.sum(-1)
    return torch.stack([(is_peak * x).sum(-1) / count, (is_peak * y).sum(-1) / count], dim=-1)


def parts_hit(peaks: np.ndarray, keypoints: np.ndarray, radius: float) -> np.ndarray:
    """``(N, M, 2)`` peaks and ``(N, K, 2)`` keypoints, ``(x, y)`` -> bool ``(N, M, K)``: ``k`` in ``m``'s region."""
    distance = np.abs(peaks[:, :, None, :] - keypoints[:, None, :, :]).max(axis=-1)
    return distance <= radius


def _per_prototype_mean(values: np.ndarray, prototypes: np.ndarray, n_prototypes: int) -> np.ndarray:
    """``(N, M, ...)`` values -> ``(P, ...)`` mean over the slots of each prototype; NaN for unseen prototypes."""
    sums = np.zeros((n_prototypes, *values.shape[2:]))
    counts = np.zeros(n_prototypes)
    np.add.at(sums, prototypes.ravel(), values.reshape(-1, *values.shape[2:]))
    np.add.at(counts, prototypes.ravel(), 1)
    with np.errstate(invalid="ignore"):
        return sums / counts.reshape(-1, *[1] * (values.ndim - 2))


def consistency(hits: np.ndarray, prototypes: np.ndarray, n_prototypes: int) -> dict[str, float]:
    """``consistency`` and ``consistency_hard`` of ``(N, M, K)`` hits (module docstring)."""
    scores = _per_prototype_mean(hits.astype(np.float64), prototypes, n_prototypes).max(axis=1)
    seen = scores[~np.isnan(scores)]
    return {"consistency": float(seen.mean()), "consistency_hard": float((seen >= CONSISTENT).mean())}


def stability(hits: np.ndarray, noisy_hits: np.ndarray, prototypes: np.ndarray,
              n_prototypes: int) -> dict[str, float]:
    """``stability`` and ``stability_soft`` of hits without / with input noise (module docstring)."""
    unchanged = (hits == noisy_hits).all(axis=-1).astype(np.float64)
    union = (hits | noisy_hits).sum(axis=-1)
    jaccard = np.where(union > 0, (hits & noisy_hits).sum(axis=-1) / np.maximum(union, 1), 1.0)
    return {"stability": float(np.nanmean(_per_prototype_mean(unchanged, prototypes, n_prototypes))),
            "stability_soft": float(np.nanmean(_per_prototype_mean(jaccard, prototypes, n_prototypes)))}
