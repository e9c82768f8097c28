"""Reference statistics (mu, sigma) of image sets, computed once and cached on disk.

An *image source* is either

* an indexable dataset whose examples are dicts with key ``"image"``: float
  (H, W, C) in [-1, 1] (every invproto dataset), or
* an array / tensor of images, (N, H, W, C) or (N, C, H, W), float in [-1, 1].

Cache files are ``.npz`` archives with ``mu`` (D,), ``sigma`` (D, D), both
float64, and ``key``: the JSON of the :class:`StatsKey` they were computed for,
checked whenever a file is reused. They live in :func:`fid_cache_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from invproto.fid.features import FEATURE_NETWORK_ID, InceptionFeatures
from invproto.fid.frechet import gaussian_statistics

ImageSource = Union[Sequence[Mapping[str, Any]], np.ndarray, torch.Tensor]


def image_batches(source: ImageSource, n: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield the first ``n`` images of ``source`` as float tensors of at most ``batch_size``."""
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if isinstance(source, (np.ndarray, torch.Tensor)):
            yield torch.as_tensor(source[start:stop])
        else:
            yield torch.as_tensor(np.stack([np.asarray(source[i]["image"]) for i in range(start, stop)]))


def resolve_count(source: ImageSource, n: int | None) -> int:
    """Number of images to use: all of ``source`` when ``n`` is None, else ``n`` (checked)."""
    available = len(source)
    if n is None:
        return available
    if not 2 <= n <= available:
        raise ValueError(f"asked for {n} images, the source has {available} (need 2 <= n <= {available})")
    return n


def compute_statistics(source: ImageSource, features: InceptionFeatures, n: int | None = None,
                       batch_size: int = 50, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma), float64, of the pool3 features of the first ``n`` images of ``source``."""
    n = resolve_count(source, n)
    return gaussian_statistics(features.extract(image_batches(source, n, batch_size), total=n, progress=progress))


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


def save_statistics(path: Path, key: StatsKey, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Write a statistics file atomically: a temporary file in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, mu=mu, sigma=sigma, key=np.array(key.to_json()))
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_statistics(path: Path, key: StatsKey) -> tuple[np.ndarray, np.ndarray] | None:
    """(mu, sigma) from ``path`` if it exists and was computed for ``key``, else None."""
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as archive:
        stored = str(archive["key"]) if "key" in archive.files else None
        if stored != key.to_json():
            warnings.warn(f"FID statistics {path} were computed for {stored}, not {key.to_json()}; recomputing")
            return None
        return archive["mu"], archive["sigma"]


def reference_statistics(source: ImageSource, dataset: str, split: str, n: int | None = None,
                         features: InceptionFeatures | None = None, batch_size: int = 50,
                         cache_dir: Path | None = None, progress: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Cached (mu, sigma) of the first ``n`` images of ``source`` (all when None).

    ``dataset`` and ``split`` name the source in the cache key; the network is
    only built (when ``features`` is None) and run on a cache miss.
    """
    key = StatsKey(dataset, split, resolve_count(source, n))
    path = (cache_dir or fid_cache_dir()) / key.filename
    cached = load_statistics(path, key)
    if cached is not None:
        return cached
    mu, sigma = compute_statistics(source, features if features is not None else InceptionFeatures(),
                                   key.n_images, batch_size, progress)
    save_statistics(path, key, mu, sigma)
    return mu, sigma
