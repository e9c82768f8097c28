"""The MNIST family at 32 px as IIN uses it, and ColorfulMNIST built on it.

``MNIST32*`` / ``FashionMNIST32*``: the 28 px digits scaled to 32x32 once at
load time, with optional dequantization noise on the training split
(``dataset_params.dequantization``, see :mod:`invproto.data.transforms`).

ColorfulMNIST (IIN, "Disentangling by factor pairs"): a colour ``c ~ U(0, 1)^3``
multiplies the grayscale digit in [-1, 1], so the background becomes about
``-c`` and the stroke about ``+c``; images are float32 ``(32, 32, 3)`` in
[-1, 1]. Factors: 0 = digit class, 1 = colour, 2 = residual.

* ``SingleColorfulMNIST*``: ``{"image", "class", "color": float32 (3,)}``.
* ``ColorfulMNIST*`` pairs: ``{"image1", "image2", "factor", "class1", "class2",
  "color1", "color2"}``; factor 0 pairs
  the digit with another image of the same class and independent colours,
  factor 1 pairs it with any image of the split in the same colour.

Validation and test examples are fixed (every choice seeded by the example's
index); training draws new colours and partners on every access, see
:mod:`invproto.data.pairs`.
"""

from __future__ import annotations

import numpy as np

from invproto.data.mnist import MNIST, FashionMNIST
from invproto.data.pairs import FactorPairs, example_rng
from invproto.data.transforms import Dequantized, Resized


class MNIST32(Resized, Dequantized, MNIST):
    """MNIST at 32x32, IIN-style."""


class FashionMNIST32(Resized, Dequantized, FashionMNIST):
    """Fashion-MNIST at 32x32, IIN-style."""


class MNIST32Train(MNIST32):
    split = "train"


class MNIST32Validation(MNIST32):
    split = "validation"


class MNIST32Test(MNIST32):
    split = "test"


class FashionMNIST32Train(FashionMNIST32):
    split = "train"


class FashionMNIST32Validation(FashionMNIST32):
    split = "validation"


class FashionMNIST32Test(FashionMNIST32):
    split = "test"


class _Colorful(MNIST32):
    """MNIST32 split whose digits are coloured on access."""

    def __init__(self, config):
        super().__init__(config)
        self.indices_of_class = [np.flatnonzero(self.arrays.labels == c) for c in range(self.num_classes)]

    @staticmethod
    def colored(example: dict, color: np.ndarray) -> dict:
        """A grayscale MNIST32 example coloured: ``image`` (32, 32, 1) * ``color`` (3,) -> (32, 32, 3)."""
        return {**example, "image": example["image"] * color, "color": color}


class SingleColorfulMNIST(_Colorful):
    def get_example(self, i: int) -> dict:
        return self.colored(super().get_example(i), example_rng(self.split, i).random(3, dtype=np.float32))


class ColorfulMNIST(FactorPairs, _Colorful):
    factor_names = ("digit", "color")

    def pair(self, i: int, factor: int, rng: np.random.Generator) -> tuple[dict, dict]:
        color1 = rng.random(3, dtype=np.float32)
        if factor == 0:
            j = rng.choice(self.indices_of_class[self.arrays.labels[i]])
            color2 = rng.random(3, dtype=np.float32)
        else:
            j = rng.integers(len(self))
            color2 = color1
        return self.colored(self.single(i), color1), self.colored(self.single(int(j)), color2)


class SingleColorfulMNISTTrain(SingleColorfulMNIST):
    split = "train"


class SingleColorfulMNISTValidation(SingleColorfulMNIST):
    split = "validation"


class SingleColorfulMNISTTest(SingleColorfulMNIST):
    split = "test"


class ColorfulMNISTTrain(ColorfulMNIST):
    split = "train"


class ColorfulMNISTValidation(ColorfulMNIST):
    split = "validation"


class ColorfulMNISTTest(ColorfulMNIST):
    split = "test"
