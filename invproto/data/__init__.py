"""Datasets, each an edflow ``DatasetMixin`` selectable by import path.

Single-image examples are dicts with ``image`` (float32 HWC in [-1, 1]) and,
where the dataset has classes, ``class`` (int); factor-pair examples have
``image1``, ``image2`` and ``factor`` (see :mod:`invproto.data.pairs`).

========================  ==================================================
module                    datasets
========================  ==================================================
``mnist``                 MNIST, Fashion-MNIST (28 px, grayscale)
``colorful_mnist``        MNIST32, FashionMNIST32 (IIN's 32 px), ColorfulMNIST
``synthetic``             Sprites: rendered offline, known factors and parts
``cifar``                 CIFAR-10 (32 px)
``celeba``                CelebA (64 or 32 px), FactorCelebA pairs
``image_folder``          ImageFolder: a folder of your own images
========================  ==================================================
"""

from invproto.data.celeba import (
    CelebA32Test,
    CelebA32Train,
    CelebA32Validation,
    CelebATest,
    CelebATrain,
    CelebAValidation,
    FactorCelebATest,
    FactorCelebATrain,
    FactorCelebAValidation,
)
from invproto.data.cifar import CIFAR10Test, CIFAR10Train, CIFAR10Validation
from invproto.data.colorful_mnist import (
    ColorfulMNISTTest,
    ColorfulMNISTTrain,
    ColorfulMNISTValidation,
    FashionMNIST32Test,
    FashionMNIST32Train,
    FashionMNIST32Validation,
    MNIST32Test,
    MNIST32Train,
    MNIST32Validation,
    SingleColorfulMNISTTest,
    SingleColorfulMNISTTrain,
    SingleColorfulMNISTValidation,
)
from invproto.data.image_folder import ImageFolderTest, ImageFolderTrain, ImageFolderValidation
from invproto.data.mnist import (
    FashionMNISTTest,
    FashionMNISTTrain,
    FashionMNISTValidation,
    MNISTTest,
    MNISTTrain,
    MNISTValidation,
)
from invproto.data.synthetic import (
    SpritesPairsTest,
    SpritesPairsTrain,
    SpritesPairsValidation,
    SpritesTest,
    SpritesTrain,
    SpritesValidation,
)

__all__ = [
    "MNISTTrain", "MNISTValidation", "MNISTTest",
    "FashionMNISTTrain", "FashionMNISTValidation", "FashionMNISTTest",
    "MNIST32Train", "MNIST32Validation", "MNIST32Test",
    "FashionMNIST32Train", "FashionMNIST32Validation", "FashionMNIST32Test",
    "SingleColorfulMNISTTrain", "SingleColorfulMNISTValidation", "SingleColorfulMNISTTest",
    "ColorfulMNISTTrain", "ColorfulMNISTValidation", "ColorfulMNISTTest",
    "SpritesTrain", "SpritesValidation", "SpritesTest",
    "SpritesPairsTrain", "SpritesPairsValidation", "SpritesPairsTest",
    "CIFAR10Train", "CIFAR10Validation", "CIFAR10Test",
    "CelebATrain", "CelebAValidation", "CelebATest",
    "CelebA32Train", "CelebA32Validation", "CelebA32Test",
    "FactorCelebATrain", "FactorCelebAValidation", "FactorCelebATest",
    "ImageFolderTrain", "ImageFolderValidation", "ImageFolderTest",
]
