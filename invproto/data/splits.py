"""Deterministic train/validation split carved from a training set.

Model selection looks at the validation split only; the official test split is
kept for final numbers.
"""

from __future__ import annotations

import numpy as np

from invproto.errors import ConfigError

SPLITS = ("train", "validation", "test")


def split_indices(n_examples: int, validation_size: int, seed: int) -> dict[str, np.ndarray]:
    """Partition ``range(n_examples)`` into sorted train and validation indices.

    The partition depends only on ``(n_examples, validation_size, seed)``.
    """
    if not 0 <= validation_size < n_examples:
        raise ConfigError(f"invproto: data.validation_size={validation_size} must be in "
                          f"[0, {n_examples}) for a training set of {n_examples} examples")
    permutation = np.random.default_rng(seed).permutation(n_examples)
    return {
        "validation": np.sort(permutation[:validation_size]),
        "train": np.sort(permutation[validation_size:]),
    }
