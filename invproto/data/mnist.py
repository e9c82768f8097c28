"""MNIST and Fashion-MNIST from their IDX files.

Files are looked for, gzipped or not, in ``<root>/<folder>/`` (the layout of
``../shared/data`` and of Debian's ``dataset-fashion-mnist``) and in
``<root>/<TorchvisionName>/raw/`` (where torchvision downloads them). When
absent and ``data.download`` is true, torchvision downloads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from invproto.data.base import ImageDataset, LabelledImages
from invproto.data.idx import read_idx
from invproto.data.root import DataNotFoundError, missing_files_message

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}


class _IDXDataset(ImageDataset):
    """A 28x28 grayscale IDX dataset with 60000 train and 10000 test images."""

    folder: ClassVar[str]  # e.g. "mnist"
    torchvision_name: ClassVar[str]  # e.g. "MNIST"

    @classmethod
    def load(cls, root: Path, download: bool) -> dict[str, LabelledImages]:
        names = [name for images, labels, _ in _FILES.values() for name in (images, labels)]
        if any(cls._find(root, name) is None for name in names) and download:
            cls._download(root)
        missing = [name for name in names if cls._find(root, name) is None]
        if missing:
            raise DataNotFoundError(missing_files_message(
                cls.torchvision_name, [m + ".gz" for m in missing], cls._search_dirs(root),
                f"put them into {root / cls.folder} or set INVPROTO_DATA / data.root to a folder "
                f"that has them (data.download is {'on but failed' if download else 'off'})"))
        splits = {}
        for split, (images_name, labels_name, count) in _FILES.items():
            images = read_idx(cls._find(root, images_name), expected_count=count)
            labels = read_idx(cls._find(root, labels_name), expected_count=count)
            splits[split] = LabelledImages(images[..., None], labels.astype("int64"))
        return splits

    @classmethod
    def _search_dirs(cls, root: Path) -> list[Path]:
        return [root / cls.folder, root / cls.torchvision_name / "raw"]

    @classmethod
    def _find(cls, root: Path, name: str) -> Path | None:
        for directory in cls._search_dirs(root):
            for candidate in (directory / name, directory / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        return None

    @classmethod
    def _download(cls, root: Path) -> None:
        import torchvision

        try:
            getattr(torchvision.datasets, cls.torchvision_name)(str(root), train=True, download=True)
            getattr(torchvision.datasets, cls.torchvision_name)(str(root), train=False, download=True)
        except Exception as error:  # no network, mirror down, ...: report below
            print(f"invproto: downloading {cls.torchvision_name} into {root} failed: {error}")


class MNIST(_IDXDataset):
    folder = "mnist"
    torchvision_name = "MNIST"
    class_names = tuple(str(digit) for digit in range(10))


class FashionMNIST(_IDXDataset):
    folder = "fashion-mnist"
    torchvision_name = "FashionMNIST"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class MNISTTrain(MNIST):
    split = "train"


class MNISTValidation(MNIST):
    split = "validation"


class MNISTTest(MNIST):
    split = "test"


class FashionMNISTTrain(FashionMNIST):
    split = "train"


class FashionMNISTValidation(FashionMNIST):
    split = "validation"


class FashionMNISTTest(FashionMNIST):
    split = "test"
