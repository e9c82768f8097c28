"""How close two representations of a network are, per example.

For representations ``a`` (of an image) and ``b`` (of another image meant to
look the same to the network), both ``(N, ...)``, flattened per example:

* :func:`relative_error` -- ``‖b − a‖₂ / ‖a‖₂``: 0 when equal, about 1.4 for
  unrelated representations of equal norm and no correlation;
* :func:`cosine` -- cosine similarity of ``a`` and ``b``, in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORM_EPS = 1e-12


def relative_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` representations -> ``(N,)`` relative L2 errors ``‖b − a‖ / ‖a‖``."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    return (b - a).norm(dim=1) / a.norm(dim=1).clamp(min=NORM_EPS)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` representations -> ``(N,)`` cosine similarities."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=NORM_EPS)
