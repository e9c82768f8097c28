"""Images between the models and the page: tensors to pictures, validation examples and uploads to tensors.

Models see ``(N, C, H, W)`` float tensors in [-1, 1]; the page shows uint8
pictures, small ones enlarged by an integer factor (nearest neighbour, so
pixels stay sharp).
"""

from __future__ import annotations

from typing import BinaryIO, Iterable

import numpy as np
import torch
from PIL import Image

from invproto.data.pairs import as_single
from invproto.pictures import to_uint8_hwc

DISPLAY_SIZE = 96  # pixels: smaller images are enlarged by the largest integer factor that stays within it


def pictures(images: torch.Tensor) -> list[np.ndarray]:
    """``(N, C, H, W)`` in [-1, 1] -> ``N`` uint8 pictures, ``(H', W', 3)`` or ``(H', W')`` for one channel."""
    arrays = to_uint8_hwc(images.detach().cpu())
    factor = max(1, DISPLAY_SIZE // max(arrays.shape[1:3]))
    arrays = arrays.repeat(factor, axis=1).repeat(factor, axis=2)
    return [array[..., 0] if array.shape[-1] == 1 else array for array in arrays]


def validation_example(dataset, index: int) -> tuple[torch.Tensor, int | None]:
    """Image ``(1, C, H, W)`` and class (``None`` without one) of example ``index``; for a pair
    dataset, the pair's first image (as the model sees it: ColorfulMNIST colours it)."""
    example = as_single(dataset.get_example(index))
    image = torch.from_numpy(np.ascontiguousarray(example["image"], dtype=np.float32)).permute(2, 0, 1)[None]
    label = example.get("class")
    return image, None if label is None else int(label)


def validation_images(dataset, indices: Iterable[int]) -> torch.Tensor:
    """``(N, C, H, W)`` images of the examples ``indices``."""
    return torch.cat([validation_example(dataset, i)[0] for i in indices])


def uploaded_image(file: BinaryIO, shape: tuple[int, int, int]) -> torch.Tensor:
    """An uploaded picture (PNG, JPEG, ...) as ``(1, C, H, W)`` in [-1, 1] for ``shape = (C, H, W)``:
    converted to grayscale or RGB as ``C`` says and resized to ``H x W`` (bilinear)."""
    channels, height, width = shape
    with Image.open(file) as picture:
        picture = picture.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
        array = np.asarray(picture, dtype=np.float32) / 127.5 - 1.0
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
