"""Datasets, each an edflow ``DatasetMixin`` selectable by import path.

Examples are dicts with ``image`` (float32 HWC in [-1, 1]) and ``class`` (int).
"""

from invproto.data.mnist import (
    FashionMNISTTest,
    FashionMNISTTrain,
    FashionMNISTValidation,
    MNISTTest,
    MNISTTrain,
    MNISTValidation,
)

__all__ = [
    "MNISTTrain", "MNISTValidation", "MNISTTest",
    "FashionMNISTTrain", "FashionMNISTValidation", "FashionMNISTTest",
]
