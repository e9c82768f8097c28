"""Base class of every invproto image dataset.

Images are loaded once per process into memory as uint8 ``(N, H, W, C)`` and
converted on access; no per-example PIL round-trips. Examples are edflow dicts::

    {"image": float32 (H, W, C) in [-1, 1], "class": int}

Concrete datasets implement :meth:`ImageDataset.load`, which returns the
official ``train`` and ``test`` arrays; this base carves the validation split
out of ``train`` (``data.validation_size``, ``data.split_seed``) and selects
the split named by the subclass attribute ``split``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np
from edflow.data.dataset_mixin import DatasetMixin

from invproto.config.run import data_params, prepare_run
from invproto.data.checks import CheckedDataset
from invproto.data.root import check_root, data_root
from invproto.data.splits import SPLITS, split_indices


@dataclass(frozen=True)
class LabelledImages:
    """Images as uint8 ``(N, H, W, C)`` with integer class labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def subset(self, indices: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[indices], self.labels[indices])


class ImageDataset(DatasetMixin, metaclass=CheckedDataset):
    """An in-memory labelled image dataset, one split of it.

    Subclasses set ``split`` ("train", "validation" or "test"), ``class_names``
    and implement :meth:`load`. The selected arrays are ``self.arrays`` (not
    ``self.data``: edflow's DatasetMixin delegates to an attribute of that name).
    Once built, a dataset is checked against the run's model (:mod:`invproto.data.checks`).
    """

    split: ClassVar[str]
    class_names: ClassVar[tuple[str, ...]]

    def __init__(self, config: Mapping):
        prepare_run(config)
        if self.split not in SPLITS:
            raise ValueError(f"{type(self).__name__}.split must be one of {SPLITS}")
        params = data_params(config)
        self.arrays = self._select_split(check_root(data_root(config)), params.validation_size,
                                       params.split_seed, params.download)
        self.labels = {"class": self.arrays.labels}

    def _select_split(self, root: Path, validation_size: int, seed: int, download: bool) -> LabelledImages:
        if self.split == "test":
            return self._cached_load(root, download)["test"]
        train = self._cached_load(root, download)["train"]
        indices = split_indices(len(train.labels), validation_size, seed)[self.split]
        return train.subset(indices)

    @classmethod
    def _cached_load(cls, root: Path, download: bool) -> dict[str, LabelledImages]:
        # Split classes (MNISTTrain, MNISTValidation, ...) only set ``split``; they share
        # the arrays of the dataset class above them, which is the cache key.
        dataset_class = next(k for k in cls.__mro__ if "split" not in vars(k))
        return _load_once(dataset_class.load, root.resolve(), download)

    @classmethod
    def load(cls, root: Path, download: bool) -> dict[str, LabelledImages]:
        """Return ``{"train": LabelledImages, "test": LabelledImages}`` from ``root``."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.arrays.labels)

    def get_example(self, i: int) -> dict:
        image = self.arrays.images[i].astype(np.float32) / 127.5 - 1.0
        return {"image": image, "class": int(self.arrays.labels[i])}

    def get_batch(self, indices: np.ndarray) -> dict:
        """The examples ``indices`` stacked: ``image`` (B, H, W, C) float32, ``class`` (B,) int64.

        Used by :mod:`invproto.data.batches` instead of one ``get_example`` per example.
        """
        images = self.arrays.images[indices].astype(np.float32) / 127.5 - 1.0
        return {"image": images, "class": self.arrays.labels[indices]}

    def __init_subclass__(cls, **kwargs):
        """A class whose ``get_example`` is newer than its ``get_batch`` batches example by example."""
        super().__init_subclass__(**kwargs)
        example_owner = next(k for k in cls.__mro__ if "get_example" in vars(k))
        batch_owner = next(k for k in cls.__mro__ if "get_batch" in vars(k))
        if not issubclass(batch_owner, example_owner):
            cls.get_batch = None


@functools.lru_cache(maxsize=8)
def _load_once(load, root: Path, download: bool) -> dict[str, LabelledImages]:
    """Load a dataset's arrays once per process (train/validation share them)."""
    return load(root, download)


def dataset_examples(dataset, indices: np.ndarray) -> dict[str, np.ndarray]:
    """``image`` ``(B, H, W, C)`` and ``class`` ``(B,)`` of ``indices``, batched when the dataset can."""
    if getattr(dataset, "get_batch", None) is not None:
        return dataset.get_batch(indices)
    examples = [dataset[int(i)] for i in indices]
    return {"image": np.stack([e["image"] for e in examples]), "class": np.array([e["class"] for e in examples])}
