"""``python -m invproto.fid A B``: FID and KID between two sets of images.

Each of A and B is

* a folder of ``.png`` / ``.jpg`` / ``.jpeg`` images (searched recursively,
  any size, read as RGB), or
* an ``.npy`` / ``.npz`` array of images, (N, H, W, C), (N, C, H, W) or
  (N, H, W), either uint8 in [0, 255] or float in [-1, 1]. An ``.npz`` must
  hold a single array or one named ``images``.

Prints ``FID: <value>`` and ``KID: <mean> (std over subsets <std>)`` (see
:mod:`invproto.fid.kid`) and exits 0; a missing or empty input exits 1 with a
one-line message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from invproto.fid.features import InceptionFeatures
from invproto.fid.kid import kernel_inception_distance
from invproto.fid.statistics import FeatureStatistics, fid_from_statistics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class InputError(Exception):
    """An input the command cannot use; its message is shown as one line."""


def to_unit_range(images: np.ndarray) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images -> float32 tensor in [-1, 1]; (N, H, W) gains C=1."""
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 127.5 - 1)
    return torch.from_numpy(np.asarray(images, dtype=np.float32))


class FolderImages:
    """The image files under a folder, sorted by path."""

    def __init__(self, folder: Path) -> None:
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise InputError(f"no {'/'.join(IMAGE_SUFFIXES)} images in folder {folder}")

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, n: int, batch_size: int) -> Iterator[torch.Tensor]:
        """The first ``n`` images as (B, H, W, 3) batches; a batch ends early where the size changes."""
        batch: list[np.ndarray] = []
        for file in self.files[:n]:
            with PIL.Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
            if batch and (len(batch) == batch_size or pixels.shape != batch[0].shape):
                yield to_unit_range(np.stack(batch))
                batch = []
            batch.append(pixels)
        yield to_unit_range(np.stack(batch))


class ArrayImages:
    """Images stored as one array in an ``.npy`` or ``.npz`` file."""

    def __init__(self, path: Path) -> None:
        if path.suffix == ".npy":
            self.array = np.load(path, mmap_mode="r")
        else:
            with np.load(path) as archive:
                names = archive.files if len(archive.files) == 1 else [n for n in archive.files if n == "images"]
                if not names:
                    raise InputError(f"{path} holds arrays {archive.files}; expected one array or one named 'images'")
                self.array = archive[names[0]]
        if self.array.ndim not in (3, 4) or len(self.array) == 0:
            raise InputError(f"{path} holds an array of shape {self.array.shape}, not a non-empty image batch")

    def __len__(self) -> int:
        return len(self.array)

    def batches(self, n: int, batch_size: int) -> Iterator[torch.Tensor]:
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="invproto-fid", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="folder of png/jpg images, or .npy/.npz image array")
    parser.add_argument("b", help="folder of png/jpg images, or .npy/.npz image array")
    parser.add_argument("--n", type=int, default=None, help="use the first N images of each set (default: all)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``invproto-fid``; returns the exit status."""
    args = parse_args(argv)
    try:
        image_sets = [open_images(args.a), open_images(args.b)]
        counts = [len(s) if args.n is None else args.n for s in image_sets]
        for location, image_set, n in zip((args.a, args.b), image_sets, counts):
            if not 2 <= n <= len(image_set):
                raise InputError(f"{location} has {len(image_set)} images; cannot use {n} (need at least 2)")
        network = InceptionFeatures(args.device)
        a, b = [FeatureStatistics.of(network.extract(s.batches(n, args.batch_size), total=n))
                for s, n in zip(image_sets, counts)]
    except InputError as error:
        print(f"invproto-fid: error: {error}", file=sys.stderr)
        return 1
    kid = kernel_inception_distance(a.features, b.features, device=network.device)
    print(f"FID: {fid_from_statistics(a, b):.6f}")
    print(f"KID: {kid.mean:.6f} (std over subsets {kid.std:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
