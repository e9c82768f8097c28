"""CIFAR-10 from the official python pickles.

Files: ``<root>/cifar-10-batches-py/data_batch_{1..5}`` (train, 50000 images)
and ``test_batch`` (10000), as extracted from ``cifar-10-python.tar.gz`` -- also
where torchvision downloads them when ``data.download`` is on. Each file is a
pickled dict with ``b"data"``: uint8 ``(n, 3072)``, every row one image as
channel-major 32x32 planes (R, G, B), and ``b"labels"``: ``n`` ints in 0..9.

Images are 32x32 already, the size IIN trains on; ``dataset_params.dequantization``
adds IIN's dequantization noise to the training split
(:mod:`invproto.data.transforms`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from invproto.data.base import LabelledImages
from invproto.data.root import CorruptDataError, DataNotFoundError, missing_files_message, unreadable
from invproto.data.transforms import Dequantized

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_FILES = ("test_batch",)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only, never arbitrary callables.

    ``_codecs.encode`` is how protocol-2 pickles written by Python 3 store bytes.
    """

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> LabelledImages:
    """One CIFAR-10 batch file -> uint8 ``(n, 32, 32, 3)`` images and int64 labels."""
    try:
        file = open(path, "rb")
    except OSError as error:  # permissions, a folder of that name, I/O: not the file's content
        raise unreadable(error, "CIFAR-10") from None
    try:
        with file:
            batch = _NumpyOnlyUnpickler(file, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"b'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
        if labels.shape != (len(data),) or not np.all((labels >= 0) & (labels < len(CLASS_NAMES))):
            raise ValueError(f"b'labels' must be {len(data)} ints in 0..9")
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as error:
        raise CorruptDataError(f"invproto: {path} is not a CIFAR-10 python batch ({error}); "
                               "delete it and download it again") from None
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return LabelledImages(np.ascontiguousarray(images), labels)


class CIFAR10(Dequantized):
    """CIFAR-10; the validation split is carved from the 50000 training images."""

    class_names = CLASS_NAMES

    @classmethod
    def load(cls, root: Path, download: bool) -> dict[str, LabelledImages]:
        folder = root / FOLDER
        if download and not all((folder / name).is_file() for name in TRAIN_FILES + TEST_FILES):
            _download(root)
        missing = [name for name in TRAIN_FILES + TEST_FILES if not (folder / name).is_file()]
        if missing:
            raise DataNotFoundError(missing_files_message(
                "CIFAR-10", missing, [folder],
                f"extract cifar-10-python.tar.gz into {root} or set INVPROTO_DATA / data.root to a "
                f"folder that has {FOLDER}/ (data.download is {'on but failed' if download else 'off'})"))
        return {split: _concatenate([read_batch(folder / name) for name in names])
                for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES))}


def _concatenate(parts: list[LabelledImages]) -> LabelledImages:
    return LabelledImages(np.concatenate([p.images for p in parts]),
                          np.concatenate([p.labels for p in parts]))


def _download(root: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as error:  # no network, mirror down, ...: reported by the caller
        print(f"invproto: downloading CIFAR-10 into {root} failed: {error}")


class CIFAR10Train(CIFAR10):
    split = "train"


class CIFAR10Validation(CIFAR10):
    split = "validation"


class CIFAR10Test(CIFAR10):
    split = "test"
