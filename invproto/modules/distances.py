"""Distances between points and prototypes: one definition for every prototype model.

* :func:`pairwise_distances` -- ``(..., D)`` points to ``(P, D)`` prototypes,
  the vector case (prototypeDL, metric-guided prototypes) and, on unfolded
  patches, the part-prototype case;
* :func:`patch_distances` -- every ``K x K`` patch of a latent map to ``(D, K, K)``
  prototypes (ProtoPNet/PixPNet);
* :func:`distance_to_similarity` -- ProtoPNet's ``log`` and the ``linear`` similarity.

Kinds of distance:

* ``euclidean``: ``||z - p||``, computed from the differences (not the matmul
  expansion), so it is exact and has a finite gradient even where it is 0;
* ``squared``: ``||z - p||^2`` by the expansion ``|z|^2 - 2 z.p + |p|^2``
  clamped at 0 -- one matrix product, as prototypeDL and ProtoPNet compute it;
* ``cosine``: ``1 - cos(z, p)`` in [0, 2].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("euclidean", "squared", "cosine")
PATCH_DISTANCES = {"l2": "squared", "cosine": "cosine"}  # part-prototype names (ProtoPNet's l2 is squared)
SIMILARITIES = ("log", "linear")


def pairwise_distances(points: torch.Tensor, prototypes: torch.Tensor, kind: str) -> torch.Tensor:
    """``(..., D)`` points, ``(P, D)`` prototypes -> ``(..., P)`` distances of ``kind`` (module docstring)."""
    if kind == "euclidean":
        flat = points.reshape(-1, points.shape[-1])
        distance = torch.cdist(flat, prototypes, compute_mode="donot_use_mm_for_euclid_dist")
        return distance.reshape(*points.shape[:-1], len(prototypes))
    if kind == "squared":
        squared = points.pow(2).sum(-1, keepdim=True) - 2 * points @ prototypes.T + prototypes.pow(2).sum(-1)
        return squared.clamp(min=0)
    if kind == "cosine":
        return 1 - (F.normalize(points, dim=-1) @ F.normalize(prototypes, dim=-1).T).clamp(-1, 1)
    raise ValueError(f"distance must be one of {', '.join(KINDS)}, got {kind!r}")


def patch_distances(z: torch.Tensor, prototypes: torch.Tensor, distance: str) -> torch.Tensor:
    """``(N, D, Hf, Wf)`` latents, ``(P, D, K, K)`` prototypes -> ``(N, P, Hc, Wc)`` patch distances.

    ``distance`` is a part-prototype name (``l2`` or ``cosine``, :data:`PATCH_DISTANCES`);
    ``Hc = Hf - K + 1`` (stride 1, no padding).
    """
    if distance not in PATCH_DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(PATCH_DISTANCES)}, got {distance!r}")
    n, _, height, width = z.shape
    kernel = prototypes.shape[-1]
    patches = F.unfold(z, kernel).transpose(1, 2)  # (N, L, D*K*K), L = Hc * Wc
    result = pairwise_distances(patches, prototypes.flatten(1), PATCH_DISTANCES[distance])  # (N, L, P)
    return result.transpose(1, 2).reshape(n, len(prototypes), height - kernel + 1, width - kernel + 1)


def distance_to_similarity(distances: torch.Tensor, similarity: str, distance: str, epsilon: float) -> torch.Tensor:
    """Patch distances -> similarities, same shape.

    ``log``: ``log((d + 1) / (d + epsilon))`` (ProtoPNet); ``linear``: ``-d`` for
    ``l2``, ``1 - d`` (the cosine) for ``cosine``.
    """
    if similarity == "log":
        return torch.log1p(1 / (distances + epsilon))  # = log((d + 1) / (d + eps)) + O(eps), stable for d -> 0
    if similarity == "linear":
        return 1 - distances if distance == "cosine" else -distances
    raise ValueError(f"similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
