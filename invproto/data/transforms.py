"""Image transforms shared by the datasets: uint8 -> [-1, 1], resize/crop, dequantization.

IIN's 32 px pipeline (``Base32`` in CompVis/iin) scales the shorter side to
32 px, centre-crops 32x32 and adds uniform dequantization noise before
dividing by 256. Here the resize runs once per dataset on the whole uint8
array (:func:`resize_center_crop`, torch, no PIL per example) and the noise is
optional and drawn only for the training split (:class:`Dequantized`):
validation and test images stay exact, so evaluation is deterministic.
CelebA, decoded per example, uses :func:`center_crop_resize` (PIL) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from invproto.config.run import component_params
from invproto.data.base import ImageDataset, LabelledImages
from invproto.errors import ConfigError

DEQUANTIZATION_MODES = ("off", "pixel", "image")


def to_signed(image: np.ndarray) -> np.ndarray:
    """uint8 values 0..255 -> float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    return image.astype(np.float32) / 127.5 - 1.0


def dequantize(image: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 image -> float32 in [-1, 1) with uniform dequantization noise.

    ``mode`` is ``"pixel"`` (independent U(0, 1) per value, the textbook
    dequantization) or ``"image"`` (one U(0, 1) offset for the whole image, as
    IIN does); the result is ``(image + u) / 256 * 2 - 1``. ``"off"`` returns
    :func:`to_signed`.
    """
    if mode == "off":
        return to_signed(image)
    noise = rng.random(image.shape) if mode == "pixel" else rng.random()
    return ((image + noise) / 128.0 - 1.0).astype(np.float32)


def resize_center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Scale the shorter side to ``size`` (bilinear, antialiased), then centre-crop.

    ``images`` is uint8 ``(N, H, W, C)``; returns uint8 ``(N, size, size, C)``
    (the input itself when it already has that size). Uses torch's uint8
    kernel, which works on the NHWC memory as is (~1 s for 70000 MNIST digits).
    """
    _, height, width, _ = images.shape
    if height == width == size:
        return images
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    batch = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)  # NCHW view, channels-last memory
    resized = F.interpolate(batch, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    return np.ascontiguousarray(resized[:, :, top:top + size, left:left + size].permute(0, 2, 3, 1).numpy())


def center_crop_resize(image: Image.Image, crop: int, size: int) -> np.ndarray:
    """Centre-crop a PIL image to ``crop`` x ``crop``, resize to ``size`` x ``size``.

    Returns uint8 ``(size, size, 3)`` (RGB; PIL's resize antialiases when shrinking).
    """
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    square = image.convert("RGB").crop((left, top, left + crop, top + crop))
    return np.asarray(square.resize((size, size), Image.BILINEAR))


@dataclass
class DequantizationParams:
    """``dataset_params`` of the IIN-style 32 px datasets."""

    dequantization: str = "off"  # off | pixel | image (IIN); training split only


def check_dequantization(mode: str) -> str:
    if mode not in DEQUANTIZATION_MODES:
        raise ConfigError(f"invproto: dataset_params.dequantization must be one of "
                          f"{', '.join(DEQUANTIZATION_MODES)}, got {mode!r}")
    return mode


class Dequantized(ImageDataset):
    """Mixin: optional dequantization noise on the training split's images.

    Put it before the concrete dataset, e.g. ``class X(Dequantized, MNIST)``.
    The noise comes from fresh OS entropy on every access (see
    :mod:`invproto.data.pairs` for why training randomness is not seeded).
    """

    Params: ClassVar[type] = DequantizationParams

    def __init__(self, config):
        super().__init__(config)
        mode = check_dequantization(component_params(config, "dataset_params", type(self)).dequantization)
        self.dequantization = mode if self.split == "train" else "off"

    def get_example(self, i: int) -> dict:
        example = super().get_example(i)
        if self.dequantization != "off":
            example["image"] = dequantize(self.arrays.images[i], self.dequantization, np.random.default_rng())
        return example


class Resized(ImageDataset):
    """Mixin: images resized and centre-cropped to ``size`` x ``size`` once, at load time."""

    size: ClassVar[int] = 32

    @classmethod
    def load(cls, root: Path, download: bool) -> dict[str, LabelledImages]:
        return {split: LabelledImages(resize_center_crop(data.images, cls.size), data.labels)
                for split, data in super().load(root, download).items()}
