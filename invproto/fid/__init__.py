"""Frechet Inception Distance and Kernel Inception Distance with the standard TF-Inception (2015-12-05) pool3 features.

Typical use in an evaluation step::

    from invproto.fid import (InceptionFeatures, compute_statistics, fid_from_statistics,
                              kernel_inception_distance, reference_statistics)

    net = InceptionFeatures()                                    # CUDA when available
    ref = reference_statistics(test_set, "mnist", "test", n=10000, features=net)   # cached on disk
    gen = compute_statistics(generated_images, net)              # (N, H, W, C) in [-1, 1]
    fid = fid_from_statistics(ref, gen)
    kid = kernel_inception_distance(ref.features, gen.features)  # kid.mean, kid.std

From the shell: ``python -m invproto.fid FOLDER_OR_NPZ FOLDER_OR_NPZ``.
"""

from invproto.fid.features import FEATURE_DIM, FEATURE_NETWORK_ID, InceptionFeatures
from invproto.fid.frechet import frechet_distance, frechet_distance_of_features, gaussian_statistics
from invproto.fid.kid import KernelDistance, kernel_inception_distance
from invproto.fid.statistics import (
    FeatureStatistics,
    ImageSource,
    StatsKey,
    cached_statistics,
    compute_statistics,
    fid_cache_dir,
    fid_from_statistics,
    reference_statistics,
)

__all__ = [
    "FEATURE_DIM",
    "FEATURE_NETWORK_ID",
    "FeatureStatistics",
    "ImageSource",
    "InceptionFeatures",
    "KernelDistance",
    "StatsKey",
    "cached_statistics",
    "compute_statistics",
    "fid_cache_dir",
    "fid_from_statistics",
    "frechet_distance",
    "frechet_distance_of_features",
    "gaussian_statistics",
    "kernel_inception_distance",
    "reference_statistics",
]
