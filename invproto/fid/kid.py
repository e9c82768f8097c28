"""Kernel Inception Distance (KID, Binkowski et al. 2018) between two sets of features.

KID is the squared maximum mean discrepancy (MMD^2) between the feature
distributions of two image sets under the cubic polynomial kernel

    k(x, y) = (x . y / d + 1)^3        (d: feature dimension, 2048 for pool3),

estimated without bias from ``m`` features ``x_i`` of one set and ``m``
features ``y_j`` of the other:

    MMD^2_u = sum_{i != i'} k(x_i, x_i') / (m (m - 1)) + sum_{j != j'} k(y_j, y_j') / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

(torchmetrics' ``poly_mmd``, computed here in float64). As in the standard
implementations (Binkowski et al.'s code, torch-fidelity, StyleGAN2-ADA,
clean-fid), KID is the mean of this estimate over 100 random subsets of
``m = min(1000, n_1, n_2)`` features of each set, drawn without replacement;
its spread is the population standard deviation over the subsets, as
torchmetrics and torch-fidelity report it. Values are raw MMD^2 (papers often
print KID x 1000).

Unlike FID, whose small-sample bias grows as the number of images shrinks,
KID's expectation does not depend on it: KID on 200 images estimates the same
number as KID on 10000, only with more noise. When ``m`` equals both set sizes
every subset is the whole of both sets, so the estimate is computed once and
its spread over subsets is 0 -- which says nothing about the estimate's
sampling error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # largest subset; smaller sets use all their features


@dataclass(frozen=True)
class KernelDistance:
    """KID: mean and population standard deviation of MMD^2_u over the subsets (dimensionless)."""

    mean: float
    std: float


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, subsets: int = KID_SUBSETS,
                              max_subset_size: int = KID_SUBSET_SIZE, seed: int = 0,
                              device: str | torch.device = "cpu") -> KernelDistance:
    """KID between feature sets ``features1`` (N1, D) and ``features2`` (N2, D), N1, N2 >= 2.

    Each of ``subsets`` subsets takes ``m = min(max_subset_size, N1, N2)``
    rows of each set without replacement, drawn from
    ``numpy.random.default_rng(seed)``: the same inputs give the same KID.
    The kernels are evaluated in float64 on ``device``.
    """
    features1, features2 = np.asarray(features1), np.asarray(features2)
    if features1.ndim != 2 or features2.ndim != 2 or features1.shape[1] != features2.shape[1]:
        raise ValueError(f"need two (N, D) feature arrays of equal D, got shapes {features1.shape} "
                         f"and {features2.shape}")
    if min(len(features1), len(features2), max_subset_size) < 2 or subsets < 1:
        raise ValueError(f"need at least 2 features per set and per subset and one subset, got sets of "
                         f"{len(features1)} and {len(features2)}, max_subset_size {max_subset_size}, "
                         f"subsets {subsets}")
    from torchmetrics.image.kid import poly_mmd  # here, not at the top: importing torchmetrics takes seconds

    m = min(max_subset_size, len(features1), len(features2))
    if m == len(features1) == len(features2):
        subsets = 1  # every subset would be all of both sets
    rng = np.random.default_rng(seed)
    x_all = torch.as_tensor(features1, dtype=torch.float64, device=device)
    y_all = torch.as_tensor(features2, dtype=torch.float64, device=device)
    estimates = []
    for _ in range(subsets):
        x = x_all[torch.from_numpy(rng.choice(len(x_all), m, replace=False)).to(device)]
        y = y_all[torch.from_numpy(rng.choice(len(y_all), m, replace=False)).to(device)]
        estimates.append(float(poly_mmd(x, y)))
    return KernelDistance(float(np.mean(estimates)), float(np.std(estimates)))
