"""The image sets ``invproto-fid`` compares, read and checked before any Inception work.

An image set is

* a folder of ``.png`` / ``.jpg`` / ``.jpeg`` files (searched recursively, any
  size and mode, read as 8-bit RGB), or
* one array in an ``.npy`` / ``.npz`` file, (N, H, W) grey or (N, H, W, C) /
  (N, C, H, W) with C = 1 (grey) or 3 (RGB), of dtype uint8 (values 0..255)
  or float (finite values in [-1, 1]). An ``.npz`` must hold a single array
  or one named ``images``.

Anything else -- another dtype, floats outside [-1, 1] (such as [0, 255]),
NaN or infinity, another channel count, an unreadable file -- raises
:class:`InputError`, whose one-line message names the file (and image) at
fault and how to fix it. :meth:`check` reads the images a run will use, so
such errors surface before the Inception network is loaded.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from invproto.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CHECK_CHUNK = 256  # images per block when an array's values are checked
UNIT_RANGE_FIX = "store uint8 in [0, 255] or floats in [-1, 1] (x / 127.5 - 1 from [0, 255], 2 * x - 1 from [0, 1])"


class InputError(DataError):
    """An input the command cannot use; its message is one line naming the culprit and the fix."""


def one_line(error: BaseException) -> str:
    """An exception's message with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(error).split()) or type(error).__name__


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """Checked uint8 [0, 255] or float [-1, 1] images -> float32 tensor in [-1, 1]; (N, H, W) gains C=1."""
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 127.5 - 1)
    return torch.from_numpy(np.asarray(images, dtype=np.float32))


def read_image(file: Path) -> np.ndarray:
    """The (H, W, 3) uint8 RGB pixels of an image file; :class:`InputError` if it cannot be decoded."""
    try:
        with PIL.Image.open(file) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise InputError(f"{file} is not a readable image ({one_line(error)}); replace or remove it") from None


class FolderImages:
    """The image files under a folder, sorted by path."""

    def __init__(self, folder: Path) -> None:
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputError(f"no {'/'.join(IMAGE_SUFFIXES)} images in folder {folder}")

    def __len__(self) -> int:
        return len(self.files)

    def check(self, n: int) -> None:
        """Decode the first ``n`` files once, so that an unreadable one stops the run before it starts."""
        for file in self.files[:n]:
            read_image(file)

    def batches(self, n: int, batch_size: int) -> Iterator[torch.Tensor]:
        """The first ``n`` images as (B, H, W, 3) batches; a batch ends early where the size changes."""
        batch: list[np.ndarray] = []
        for file in self.files[:n]:
            pixels = read_image(file)
            if batch and (len(batch) == batch_size or pixels.shape != batch[0].shape):
                yield to_unit_range(np.stack(batch))
                batch = []
            batch.append(pixels)
        yield to_unit_range(np.stack(batch))


def load_array(path: Path) -> tuple[np.ndarray, str]:
    """The image array in an .npy (memory-mapped) or .npz file, and the name messages give it."""
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r"), str(path)
        with np.load(path) as archive:
            names = archive.files if len(archive.files) == 1 else [n for n in archive.files if n == "images"]
            if not names:
                raise InputError(f"{path} holds arrays {archive.files}; save one array or one named 'images'")
            return archive[names[0]], f"{path}['{names[0]}']"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise InputError(f"{path} is not a readable {path.suffix} array ({one_line(error)}); "
                         "save it again with numpy.save or numpy.savez") from None


class ArrayImages:
    """Images stored as one array in an ``.npy`` or ``.npz`` file; shape and dtype are checked on opening."""

    def __init__(self, path: Path) -> None:
        self.array, self.name = load_array(path)
        shape, dtype = self.array.shape, self.array.dtype
        if self.array.ndim not in (3, 4) or len(self.array) == 0:
            raise InputError(f"{self.name} has shape {shape}, not a non-empty (N, H, W), (N, H, W, C) or "
                             "(N, C, H, W) image batch; save the images stacked along a first axis")
        if self.array.ndim == 4 and shape[1] not in (1, 3) and shape[-1] not in (1, 3):
            raise InputError(f"{self.name} has shape {shape}: no axis of 1 or 3 channels at position 1 or -1; "
                             "save grey (C = 1) or RGB (C = 3) images")
        if dtype != np.uint8 and dtype.kind != "f":
            raise InputError(f"{self.name} has dtype {dtype}, which invproto-fid does not read; {UNIT_RANGE_FIX}")

    def __len__(self) -> int:
        return len(self.array)

    def check(self, n: int) -> None:
        """Check the values of the first ``n`` float images: finite and in [-1, 1] (uint8 needs no check)."""
        if self.array.dtype == np.uint8:
            return
        for start in range(0, n, CHECK_CHUNK):
            block = np.asarray(self.array[start:min(start + CHECK_CHUNK, n)])
            finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not finite.all():
                raise InputError(f"{self.name}: image {start + int(np.argmin(finite))} holds NaN or infinite "
                                 "values; replace or remove the images with non-finite values")
            outside = ((block < -1) | (block > 1)).reshape(len(block), -1).any(axis=1)
            if outside.any():
                i = int(np.argmax(outside))
                raise InputError(f"{self.name}: image {start + i} has float values in [{block[i].min():g}, "
                                 f"{block[i].max():g}], outside [-1, 1]; {UNIT_RANGE_FIX}")

    def batches(self, n: int, batch_size: int) -> Iterator[torch.Tensor]:
        """The first ``n`` images in batches of ``batch_size``, as float32 tensors in [-1, 1]."""
        for start in range(0, n, batch_size):
            yield to_unit_range(np.asarray(self.array[start:min(start + batch_size, n)]))


def open_images(location: str) -> FolderImages | ArrayImages:
    """The image set at ``location``: a folder or an .npy/.npz file."""
    path = Path(location)
    if path.is_dir():
        return FolderImages(path)
    if path.is_file() and path.suffix in (".npy", ".npz"):
        return ArrayImages(path)
    if path.exists():
        raise InputError(f"{path} is neither a folder of images nor an .npy/.npz file")
    raise InputError(f"no such folder or file: {path}")
