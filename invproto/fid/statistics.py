"""Inception features of image sets, their Gaussian statistics, FID between them, and the on-disk cache.

An *image source* is either

* an indexable dataset whose examples are dicts with key ``"image"``: float
  (H, W, C) in [-1, 1] (every invproto dataset; of a factor-pair dataset, the
  first image of each pair, ``"image1"``), or
* an array / tensor of images, (N, H, W, C) or (N, C, H, W), float in [-1, 1].

:class:`FeatureStatistics` holds what FID and KID need of an image set: its
pool3 features (KID) and their mean and covariance (FID).

Cache files are ``.npz`` archives with ``features`` (N, D) float32, ``mu`` (D,)
and ``sigma`` (D, D) float64, and ``key``: the JSON of the :class:`StatsKey`
they were computed for, checked whenever a file is reused. They live in
:func:`fid_cache_dir` and take 8 KiB per image plus 32 MiB for ``sigma``
(about 110 MB for 10000 images). Features are always stored: KID needs them,
and reference sets are at most a split (10000 images in the standard
protocol). Files written before features were stored hold only ``mu`` and
``sigma``; they are recomputed (with a warning) and overwritten.

Under ``torchrun`` the functions that extract features (:func:`compute_statistics`,
:func:`reference_statistics`, :func:`cached_statistics` on a miss) are
collective: every rank calls them with the same images, each extracts its
share (:mod:`invproto.fid.sharding`), and rank 0 gets the statistics -- the
other ranks get None. Rank 0 alone reads and writes the cache and tells the
others whether it hit. With one process nothing of this shows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from invproto import distributed
from invproto.fid.features import FEATURE_NETWORK_ID, InceptionFeatures
from invproto.fid.frechet import frechet_distance, frechet_distance_of_features, gaussian_statistics
from invproto.fid.sharding import extract_in_shards

ImageSource = Union[Sequence[Mapping[str, Any]], np.ndarray, torch.Tensor]


def image_batches(source: ImageSource, n: int, batch_size: int, start: int = 0) -> Iterator[torch.Tensor]:
    """Yield images ``start .. n - 1`` of ``source`` (the first ``n``) as float tensors of at most ``batch_size``."""
    for first in range(start, n, batch_size):
        stop = min(first + batch_size, n)
        if isinstance(source, (np.ndarray, torch.Tensor)):
            yield torch.as_tensor(source[first:stop])
        else:
            yield torch.as_tensor(np.stack([np.asarray(example_image(source[i])) for i in range(first, stop)]))


def example_image(example: Mapping[str, Any]):
    """An example's ``image``; a factor pair's first image, ``image1`` (the images such a pair dataset
    contributes to FID: those its models are evaluated on, see :func:`invproto.data.pairs.first_of_pair`)."""
    return example["image"] if "image" in example else example["image1"]


def resolve_count(source: ImageSource, n: int | None) -> int:
    """Number of images to use: all of ``source`` when ``n`` is None, else ``n`` (checked)."""
    available = len(source)
    if n is None:
        return available
    if not 2 <= n <= available:
        raise ValueError(f"asked for {n} images, the source has {available} (need 2 <= n <= {available})")
    return n


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureStatistics:
    """The pool3 features of an image set and the Gaussian fitted to them.

    ``features``: float32 (N, D); ``mu``: float64 (D,); ``sigma``: float64
    (D, D), the unbiased covariance of ``features``.
    """

    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> "FeatureStatistics":
        """Statistics of (N, D) features, N >= 2."""
        mu, sigma = gaussian_statistics(features)
        return cls(np.asarray(features, dtype=np.float32), mu, sigma)

    def __len__(self) -> int:
        return len(self.features)


def compute_statistics(source: ImageSource, features: InceptionFeatures, n: int | None = None,
                       batch_size: int = 50, progress: bool = True) -> FeatureStatistics | None:
    """Features and (mu, sigma) of the first ``n`` images of ``source`` (all when None).

    Under torchrun every rank calls it with the same images and extracts its
    share; rank 0 gets the statistics, the other ranks None.
    """
    n = resolve_count(source, n)
    extracted = extract_in_shards(features, n, lambda start, stop: image_batches(source, stop, batch_size, start),
                                  progress)
    return None if extracted is None else FeatureStatistics.of(extracted)


def fid_from_statistics(stats1: FeatureStatistics, stats2: FeatureStatistics) -> float:
    """FID between two image sets.

    Through the features (an (N1, N2) singular value decomposition) when both
    sets are smaller than the feature dimension, else through (mu, sigma)
    (two (D, D) eigendecompositions); both routes give the same number to
    round-off.
    """
    if max(len(stats1), len(stats2)) < stats1.features.shape[1]:
        return frechet_distance_of_features(stats1.features, stats2.features)
    return frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)


@dataclasses.dataclass(frozen=True)
class StatsKey:
    """What a cached statistics file was computed from."""

    dataset: str
    split: str
    n_images: int
    network: str = FEATURE_NETWORK_ID

    @property
    def filename(self) -> str:
        """e.g. ``mnist-test-n10000-tf_inception_2015_12_05_pool3.npz``."""
        safe = [re.sub(r"[^A-Za-z0-9_.]+", "_", part) for part in (self.dataset, self.split)]
        return f"{safe[0]}-{safe[1]}-n{self.n_images}-{self.network}.npz"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def fid_cache_dir() -> Path:
    """``$INVPROTO_FID_CACHE``, else ``$XDG_CACHE_HOME/invproto/fid_stats`` (``~/.cache/...``).

    A cache, not data: never inside the dataset root, which may be shared and read-only.
    """
    if os.environ.get("INVPROTO_FID_CACHE"):
        return Path(os.environ["INVPROTO_FID_CACHE"]).expanduser()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "invproto" / "fid_stats"


def save_statistics(path: Path, key: StatsKey, stats: FeatureStatistics) -> None:
    """Write a statistics file atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, features=stats.features, mu=stats.mu, sigma=stats.sigma, key=np.array(key.to_json()))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_statistics(path: Path, key: StatsKey) -> FeatureStatistics | None:
    """The statistics in ``path`` if it exists, was computed for ``key`` and holds features, else None."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as archive:
        stored = str(archive["key"]) if "key" in archive.files else None
        if stored != key.to_json():
            warnings.warn(f"FID statistics {path} were computed for {stored}, not {key.to_json()}; recomputing")
            return None
        if "features" not in archive.files:
            warnings.warn(f"FID statistics {path} hold no features (an older format, without KID); recomputing")
            return None
        return FeatureStatistics(archive["features"], archive["mu"], archive["sigma"])


def cached_statistics(key: StatsKey, compute: Callable[[], FeatureStatistics | None],
                      cache_dir: Path | None = None) -> FeatureStatistics | None:
    """The statistics cached for ``key``; on a miss, ``compute()``, cached for the next call.

    Under torchrun every rank calls it with the same ``key``, and on a miss
    every rank runs ``compute`` (which may be collective, as
    :func:`compute_statistics` is). Rank 0 alone reads the cache and sends
    the others whether it hit -- a rank that looked for itself could find the
    file rank 0 has just written and skip the extraction rank 0 waits for --
    and rank 0 alone writes the file. Rank 0 gets the statistics, the other
    ranks None.
    """
    path = (cache_dir or fid_cache_dir()) / key.filename
    cached = load_statistics(path, key) if distributed.is_main_process() else None
    if distributed.broadcast_from_main(cached is not None):
        return cached
    stats = compute()
    if not distributed.is_main_process():
        return None
    save_statistics(path, key, stats)
    return stats


def reference_statistics(source: ImageSource, dataset: str, split: str, n: int | None = None,
                         features: InceptionFeatures | None = None, batch_size: int = 50,
                         cache_dir: Path | None = None, progress: bool = True) -> FeatureStatistics | None:
    """Cached statistics of the first ``n`` images of ``source`` (all when None).

    ``dataset`` and ``split`` name the source in the cache key; the network is
    only built (when ``features`` is None) and run on a cache miss. Under
    torchrun every rank calls it and takes part on a miss; rank 0 gets the
    statistics, the other ranks None (:func:`cached_statistics`).
    """
    key = StatsKey(dataset, split, resolve_count(source, n))

    def compute() -> FeatureStatistics | None:
        network = features if features is not None else InceptionFeatures()
        return compute_statistics(source, network, key.n_images, batch_size, progress)

    return cached_statistics(key, compute, cache_dir)
