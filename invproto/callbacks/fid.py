"""Evaluation callbacks of autoencoders: reconstruction error, FID and KID of reconstructions and of samples.

They read what :class:`~invproto.iterators.autoencoder.AutoencoderIterator`'s
``eval_op`` stored per validation example: ``kl`` and ``l1`` (floats) and
``reconstruction`` / ``sample``, uint8 ``(H, W, C)`` images.

``fid_reconstruction`` and ``fid_samples`` compare the first ``n`` generated
images with the first ``n`` images of the evaluated split (``data_in``),
``n = min(n_images, len(data_in))``, and report for ``<kind>`` =
``reconstruction`` / ``samples``

* ``fid_<kind>``: the FID (TF-Inception pool3, :mod:`invproto.fid`);
* ``kid_<kind>``, ``kid_<kind>_std``: the KID, mean and spread over subsets
  (:mod:`invproto.fid.kid`; unbiased at any ``n``);
* ``fid_floor`` (``fid_samples`` only, when ``n`` is below the standard
  10000): the FID between the same ``n`` reference images and ``n`` other real
  images, the last ``n`` of the training split (``datasets.train``; disjoint
  from the reference even when the evaluated split is the training split, if
  it holds ``2n`` images). It is what a model whose samples were real images
  would score at this ``n``, i.e. FID's small-sample bias (real MNIST test vs
  train: 35.4 at n = 200, 9.5 at 2000, 1.6 at 10000): a sample FID close to it
  is as good as ``n`` images can tell, and only FIDs at ``n = 10000`` compare
  with published numbers. Reconstructions need no floor: perfect ones score 0
  at any ``n``.

The reference and floor statistics (features, mean, covariance) are computed
once and cached on disk (:func:`invproto.fid.cached_statistics`, keyed by the
dataset's import path, a description of its split, ``n`` and the feature
network), so after the first evaluation only the generated images go through
Inception. The network is built once per process, on CUDA when available.

Under ``torchrun`` these callbacks run on every rank with the same outputs
(:mod:`invproto.iterators.base`): each rank passes its contiguous share of
the images -- generated ones, and the real ones on a cache miss -- through
Inception (:mod:`invproto.fid.sharding`), rank 0 joins the features in order
and computes the scores, exactly those of one process; the other ranks return
``{}``. Rank 0 alone reads and writes the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Iterator, Mapping

import numpy as np
from torch.utils.data import Subset

from invproto.callbacks.base import evaluation_callback
from invproto.config import get_obj_from_str
from invproto.config.run import data_params
from invproto.fid import (
    FeatureStatistics,
    InceptionFeatures,
    StatsKey,
    cached_statistics,
    compute_statistics,
    fid_from_statistics,
    kernel_inception_distance,
    reference_statistics,
)
from invproto.fid.sharding import extract_in_shards

STANDARD_N_IMAGES = 10000  # the sample size of published FIDs; below it fid_samples also reports fid_floor
DEFAULT_N_IMAGES = STANDARD_N_IMAGES  # capped at the split's size
BATCH_SIZE = 50

_inception: InceptionFeatures | None = None


def inception() -> InceptionFeatures:
    """The process-wide Inception feature network (built on first use)."""
    global _inception
    if _inception is None:
        _inception = InceptionFeatures()
    return _inception


def split_description(dataset, config: Mapping) -> str:
    """A split in the FID cache key: its name and a digest of every config value selecting its images.

    ``dataset`` is a dataset or its class (``split`` names it), e.g.
    ``validation-1a2b3c4d``: ``data`` (validation size, split seed) and
    ``dataset_params`` (for generated datasets) decide which images a split holds.
    """
    data = dataclasses.asdict(data_params(config))
    selection = {"data": {k: v for k, v in data.items() if k not in ("root", "download")},
                 "dataset_params": config.get("dataset_params")}
    digest = hashlib.sha1(json.dumps(selection, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{getattr(dataset, 'split', 'unknown')}-{digest}"


def uint8_batches(images: np.ndarray, n: int, start: int = 0) -> Iterator[np.ndarray]:
    """Images ``start .. n - 1`` of uint8 ``(N, H, W, C)`` ``images`` as float32 batches in [-1, 1] (exactly the
    8-bit levels)."""
    for first in range(start, n, BATCH_SIZE):
        yield np.asarray(images[first:min(first + BATCH_SIZE, n)], dtype=np.float32) / 127.5 - 1.0


def compared_count(data_in, n_images: int) -> int:
    """How many images a score compares: ``min(n_images, len(data_in))``."""
    return min(n_images, len(data_in))


def evaluated_split_statistics(data_in, config: Mapping, n_images: int) -> FeatureStatistics | None:
    """Cached statistics of the first :func:`compared_count` images of the evaluated split (rank 0; None on the
    other ranks, which take part on a cache miss)."""
    return reference_statistics(data_in, config["datasets"]["validation"], split_description(data_in, config),
                                n=compared_count(data_in, n_images), features=inception())


def training_split_statistics(config: Mapping, n: int) -> FeatureStatistics | None:
    """Cached statistics of the last ``n`` images of the training split ``config["datasets"]["train"]``.

    The split is only built on a cache miss (on every rank under torchrun; rank
    0 gets the statistics, the other ranks None).
    """
    path = config["datasets"]["train"]
    dataset_class = get_obj_from_str(path)

    def compute() -> FeatureStatistics | None:
        train = dataset_class(config)
        if len(train) < n:
            raise ValueError(f"fid_floor needs {n} training images; {path} has {len(train)}")
        return compute_statistics(Subset(train, range(len(train) - n, len(train))), inception())

    return cached_statistics(StatsKey(path, f"{split_description(dataset_class, config)}-last", n), compute)


def generated_scores(kind: str, reference: FeatureStatistics | None, images: np.ndarray, n: int) -> dict[str, float]:
    """``fid_<kind>``, ``kid_<kind>`` and ``kid_<kind>_std`` of the first ``n`` uint8 ``images`` against
    ``reference`` (``n`` images); ``{}`` on ranks other than 0, which only extract their share."""
    net = inception()
    features = extract_in_shards(net, n, lambda start, stop: uint8_batches(images, stop, start))
    if features is None:
        return {}
    generated = FeatureStatistics.of(features)
    kid = kernel_inception_distance(reference.features, generated.features, device=net.device)
    return {f"fid_{kind}": fid_from_statistics(reference, generated), f"kid_{kind}": kid.mean,
            f"kid_{kind}_std": kid.std}


@evaluation_callback
def fid_reconstruction(root, data_in, data_out, config, n_images: int = DEFAULT_N_IMAGES):
    """FID and KID of the reconstructions (decoded posterior means) of the evaluated split."""
    reference = evaluated_split_statistics(data_in, config, n_images)
    return generated_scores("reconstruction", reference, data_out.labels["reconstruction"],
                            compared_count(data_in, n_images))


@evaluation_callback
def fid_samples(root, data_in, data_out, config, n_images: int = DEFAULT_N_IMAGES):
    """FID and KID of decoded N(0, I) samples, one per example of the evaluated split, and below the
    standard n the FID floor (none for models that cannot decode, e.g. an IIN on a classifier)."""
    if "sample" not in data_out.labels:
        return {}
    n = compared_count(data_in, n_images)
    reference = evaluated_split_statistics(data_in, config, n_images)
    scores = generated_scores("samples", reference, data_out.labels["sample"], n)
    if n < STANDARD_N_IMAGES:
        floor = training_split_statistics(config, n)
        if reference is not None:  # rank 0
            scores["fid_floor"] = fid_from_statistics(reference, floor)
    return scores


@evaluation_callback
def reconstruction(root, data_in, data_out, config):
    """Mean KL of the posterior to N(0, I) (nats) and mean L1 error per pixel (images in [-1, 1])."""
    return {"kl": float(np.mean(data_out.labels["kl"])), "l1": float(np.mean(data_out.labels["l1"]))}
