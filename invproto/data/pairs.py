"""Factor pairs for disentangling flows (IIN's ``FactorTrainer``).

A pair dataset names its factors ``factor_names`` (e.g. ``("digit", "color")``).
Each example is::

    {"image1": float32 (H, W, C) in [-1, 1], "image2": same, "factor": int, ...}

plus every other key of the two single-image examples with the suffix 1 or 2
(e.g. ``class1``, ``class2``), where ``factor = k < len(factor_names)`` means the two images share the value of
factor ``k`` and every other factor is drawn independently. The model splits
its code into ``n_factors = len(factor_names) + 1`` parts; the last one,
``residual_index``, holds whatever the named factors do not explain. As in IIN
the residual is never drawn as the shared factor: nothing in a pair is forced
to be equal on it.

Randomness:

* evaluation splits (validation, test) are fixed: example ``i`` draws all its
  choices from a generator seeded with ``(EVALUATION_SEED, i)`` -- the same in
  every run, worker process and access, whatever the run's ``seed``;
* the training split draws from fresh OS entropy on every access, so every
  epoch sees new partners and edflow's forked data workers never repeat each
  other's draws (a generator copied into each fork would). Training pairs are
  therefore not reproducible, by design.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from edflow.data.dataset_mixin import DatasetMixin

EVALUATION_SEED = 1
PAIR_KEYS = ("image1", "image2", "factor")  # what makes an example (or a batch) a factor pair


def factor_labels(dataset, n_factors: int) -> list[str] | None:
    """The names of a factor model's ``n_factors`` code parts on ``dataset``'s pairs: its ``factor_names``, then
    ``residual``; None when the dataset names no factors or another number of them."""
    names = [*getattr(dataset, "factor_names", ()), "residual"]
    return names if len(names) == n_factors else None


def is_pair_example(example) -> bool:
    """Whether ``example`` (an example or a batch: a mapping) is a factor pair (see the module docstring)."""
    return all(key in example for key in PAIR_KEYS)


def as_single(example: dict) -> dict:
    """``example`` itself, or for a factor pair its first image's example (:func:`first_of_pair`)."""
    return first_of_pair(example) if is_pair_example(example) else example


def first_of_pair(example: dict) -> dict:
    """The single-image example (or batch) of a pair's first image: ``image1`` -> ``image``, ``class1`` ->
    ``class``, ... ; keys of the second image are dropped, unsuffixed keys (``index_``, ``factor``) kept. Any
    pair dataset thereby also serves as a single-image dataset of its first images."""
    return {(key[:-1] if key.endswith("1") else key): value for key, value in example.items()
            if not key.endswith("2")}


def example_rng(split: str, index: int) -> np.random.Generator:
    """The generator of example ``index``'s random choices in ``split`` (see module doc)."""
    if split == "train":
        return np.random.default_rng()
    return np.random.default_rng([EVALUATION_SEED, index])


class FactorPairs(DatasetMixin):
    """Mixin for pair datasets; put it before the image dataset it pairs.

    Subclasses provide ``split``, ``factor_names`` and :meth:`pair`, which
    builds on :meth:`single`, the paired image dataset's own examples.
    """

    split: ClassVar[str]
    factor_names: tuple[str, ...]

    @property
    def n_factors(self) -> int:
        return len(self.factor_names) + 1

    @property
    def residual_index(self) -> int:
        return len(self.factor_names)

    def single(self, i: int) -> dict:
        """Example ``i`` of the image dataset this mixin pairs (next in the MRO)."""
        return super().get_example(i)

    def pair(self, i: int, factor: int, rng: np.random.Generator) -> tuple[dict, dict]:
        """Single-image examples ``(example1, example2)``: ``i`` and a partner sharing ``factor``."""
        raise NotImplementedError

    def get_example(self, i: int) -> dict:
        rng = example_rng(self.split, i)
        factor = int(rng.integers(len(self.factor_names)))
        example1, example2 = self.pair(i, factor, rng)
        return {"factor": factor, **{f"{key}{n}": value for n, example in ((1, example1), (2, example2))
                                     for key, value in example.items()}}
