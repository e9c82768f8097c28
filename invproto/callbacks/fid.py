"""Evaluation callbacks of autoencoders: reconstruction error, FID of reconstructions and of samples.

They read what :class:`~invproto.iterators.autoencoder.AutoencoderIterator`'s
``eval_op`` stored per validation example: ``kl`` and ``l1`` (floats) and
``reconstruction`` / ``sample``, uint8 ``(H, W, C)`` images.

FID compares the first ``n_images`` generated images with the first
``n_images`` images of the evaluated split (``data_in``). The split's
reference statistics are computed once and cached on disk
(:func:`invproto.fid.reference_statistics`, keyed by the dataset's import
path, a description of its split, ``n_images`` and the feature network); the
Inception network is built once per process, on CUDA when available.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Iterator, Mapping

import numpy as np

from invproto.callbacks.base import evaluation_callback
from invproto.config.run import data_params
from invproto.fid import InceptionFeatures, fid_from_statistics, gaussian_statistics, reference_statistics

DEFAULT_N_IMAGES = 10000  # the standard FID sample size (capped at the split's size)
BATCH_SIZE = 50

_inception: InceptionFeatures | None = None


def inception() -> InceptionFeatures:
    """The process-wide Inception feature network (built on first use)."""
    global _inception
    if _inception is None:
        _inception = InceptionFeatures()
    return _inception


def split_description(data_in, config: Mapping) -> str:
    """The evaluated split in the FID cache key: its name and a digest of every config value selecting its images.

    e.g. ``validation-1a2b3c4d``: ``data`` (validation size, split seed) and
    ``dataset_params`` (for generated datasets) decide which images a split holds.
    """
    data = dataclasses.asdict(data_params(config))
    selection = {"data": {k: v for k, v in data.items() if k not in ("root", "download")},
                 "dataset_params": config.get("dataset_params")}
    digest = hashlib.sha1(json.dumps(selection, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{getattr(data_in, 'split', 'unknown')}-{digest}"


def uint8_batches(images: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """The first ``n`` uint8 ``(N, H, W, C)`` images as float32 batches in [-1, 1] (exactly the 8-bit levels)."""
    for start in range(0, n, BATCH_SIZE):
        yield np.asarray(images[start:min(start + BATCH_SIZE, n)], dtype=np.float32) / 127.5 - 1.0


def fid_of_outputs(key: str, data_in, data_out, config: Mapping, n_images: int) -> float:
    """FID between the first ``n_images`` stored ``data_out.labels[key]`` images and as many of ``data_in``."""
    n = min(n_images, len(data_in))
    net = inception()
    reference = reference_statistics(data_in, config["datasets"]["validation"], split_description(data_in, config),
                                     n=n, features=net)
    generated = gaussian_statistics(net.extract(uint8_batches(data_out.labels[key], n), total=n))
    return fid_from_statistics(reference, generated)


@evaluation_callback
def fid_reconstruction(root, data_in, data_out, config, n_images: int = DEFAULT_N_IMAGES):
    """FID of the reconstructions (decoded posterior means) of the evaluated split."""
    return {"fid_reconstruction": fid_of_outputs("reconstruction", data_in, data_out, config, n_images)}


@evaluation_callback
def fid_samples(root, data_in, data_out, config, n_images: int = DEFAULT_N_IMAGES):
    """FID of decoded N(0, I) samples, one per example of the evaluated split (none for models that
    cannot decode, e.g. an IIN on a classifier)."""
    if "sample" not in data_out.labels:
        return {}
    return {"fid_samples": fid_of_outputs("sample", data_in, data_out, config, n_images)}


@evaluation_callback
def reconstruction(root, data_in, data_out, config):
    """Mean KL of the posterior to N(0, I) (nats) and mean L1 error per pixel (images in [-1, 1])."""
    return {"kl": float(np.mean(data_out.labels["kl"])), "l1": float(np.mean(data_out.labels["l1"]))}
