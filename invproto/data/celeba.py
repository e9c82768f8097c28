"""CelebA (aligned and cropped faces) with its official splits and 40 attributes.

Layout (torchvision's, also where it downloads to)::

    <root>/celeba/img_align_celeba/000001.jpg ...   178x218 RGB JPEGs
    <root>/celeba/list_attr_celeba.txt              count; 40 names; "name v1 .. v40" (v = -1 | 1)
    <root>/celeba/list_eval_partition.txt           "name p" (p = 0 train | 1 validation | 2 test)

Images are centre-cropped to 160x160 and resized to 64x64 (``CelebA*``) or
32x32 (``CelebA32*``), as in IIN. Examples::

    {"image": float32 (size, size, 3) in [-1, 1], "attributes": int64 (40,) in {0, 1}}

Unlike the in-memory datasets (:class:`~invproto.data.base.ImageDataset`), the
~200000 JPEGs are **not** loaded at construction: only the two text files are
read (once per process), and each image is decoded with PIL on access. The
official validation split is used as is (``data.validation_size`` does not
apply). ``dataset_params.dequantization`` adds noise to the training split only.

``FactorCelebA*`` pairs a face with a random face that has the same value of
one of ``dataset_params.attributes`` (default Eyeglasses, Male, No_Beard,
Smiling; the residual is index ``len(attributes)``), see
:mod:`invproto.data.pairs`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, List, Mapping

import numpy as np
from edflow.data.dataset_mixin import DatasetMixin
from PIL import Image, UnidentifiedImageError

from invproto.config.run import component_params, data_params, prepare_run
from invproto.data.checks import CheckedDataset
from invproto.data.pairs import FactorPairs
from invproto.data.root import CorruptDataError, DataNotFoundError, check_root, data_root, missing_files_message
from invproto.data.splits import SPLITS
from invproto.data.transforms import DequantizationParams, center_crop_resize, check_dequantization, dequantize
from invproto.errors import ConfigError

FOLDER = "celeba"
IMAGES = "img_align_celeba"
ATTRIBUTES_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
CROP = 160
N_ATTRIBUTES = 40


@dataclass(frozen=True)
class CelebAIndex:
    """The two text files: image names ``(N,)``, attributes uint8 ``(N, 40)`` in {0, 1},
    split number ``(N,)`` (0 train, 1 validation, 2 test)."""

    names: np.ndarray
    attribute_names: tuple[str, ...]
    attributes: np.ndarray
    partition: np.ndarray


def _corrupt(path: Path, problem: str) -> CorruptDataError:
    return CorruptDataError(f"invproto: {path} is not a CelebA file ({problem}); "
                            "delete it and download it again")


def read_attributes(path: Path) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """``list_attr_celeba.txt`` -> names ``(N,)``, the 40 attribute names, uint8 ``(N, 40)`` in {0, 1}."""
    lines = path.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise _corrupt(path, "the first line must be the number of images")
    attribute_names = tuple(lines[1].split())
    rows = [line.split() for line in lines[2:] if line.strip()]
    if len(attribute_names) != N_ATTRIBUTES or len(rows) != int(lines[0]):
        raise _corrupt(path, f"expected {N_ATTRIBUTES} attribute names and {int(lines[0])} rows, "
                             f"found {len(attribute_names)} and {len(rows)}")
    if any(len(row) != N_ATTRIBUTES + 1 for row in rows):
        raise _corrupt(path, f"every row must be a file name and {N_ATTRIBUTES} values")
    try:
        values = np.array([row[1:] for row in rows], dtype=np.int64)
    except ValueError:
        raise _corrupt(path, "attribute values must be -1 or 1") from None
    if not np.all(np.abs(values) == 1):
        raise _corrupt(path, "attribute values must be -1 or 1")
    return np.array([row[0] for row in rows]), attribute_names, (values == 1).astype(np.uint8)


def read_partition(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt`` -> {image name: 0 | 1 | 2}."""
    partition = {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise _corrupt(path, f"expected lines 'name 0|1|2', found {line!r}")
        partition[fields[0]] = int(fields[1])
    return partition


@functools.lru_cache(maxsize=4)
def load_index(folder: Path) -> CelebAIndex:
    """Parse the attribute and partition files of ``folder`` (once per process)."""
    names, attribute_names, attributes = read_attributes(folder / ATTRIBUTES_FILE)
    partition = read_partition(folder / PARTITION_FILE)
    missing = [name for name in names if name not in partition]
    if missing:
        raise _corrupt(folder / PARTITION_FILE, f"no split for {len(missing)} images, e.g. {missing[0]}")
    return CelebAIndex(names, attribute_names, attributes, np.array([partition[n] for n in names]))


def _find_files(root: Path, download: bool) -> Path:
    """The CelebA folder under ``root``, downloading into it when allowed and needed."""
    folder = root / FOLDER
    required = {ATTRIBUTES_FILE: Path.is_file, PARTITION_FILE: Path.is_file, IMAGES + "/": Path.is_dir}
    if download and not all(check(folder / name.rstrip("/")) for name, check in required.items()):
        _download(root)
    missing = [name for name, check in required.items() if not check(folder / name.rstrip("/"))]
    if missing:
        raise DataNotFoundError(missing_files_message(
            "CelebA", missing, [folder],
            f"put them (img_align_celeba.zip extracted) into {folder} or set INVPROTO_DATA / data.root "
            f"to a folder that has {FOLDER}/ (data.download is {'on but failed' if download else 'off'})"))
    return folder


def _download(root: Path) -> None:
    import torchvision

    try:
        torchvision.datasets.CelebA(str(root), split="all", download=True)
    except Exception as error:  # no network, Google Drive quota, no gdown, ...: reported by the caller
        print(f"invproto: downloading CelebA into {root} failed: {error}")


class CelebA(DatasetMixin, metaclass=CheckedDataset):
    """One official split of CelebA at ``size`` x ``size``, decoded per example."""

    Params: ClassVar[type] = DequantizationParams
    split: ClassVar[str]
    size: ClassVar[int] = 64

    def __init__(self, config: Mapping):
        prepare_run(config)
        self.params = component_params(config, "dataset_params", type(self))
        self.dequantization = check_dequantization(self.params.dequantization) if self.split == "train" else "off"
        folder = _find_files(check_root(data_root(config)), data_params(config).download)
        index = load_index(folder.resolve())
        members = index.partition == SPLITS.index(self.split)
        self.files = [folder / IMAGES / name for name in index.names[members]]
        self.attribute_names = index.attribute_names
        self.labels = {"attributes": index.attributes[members]}

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        """float32 ``(size, size, 3)`` in [-1, 1] (with noise on the training split if enabled)."""
        path = self.files[i]
        try:
            with Image.open(path) as image:
                pixels = center_crop_resize(image, CROP, self.size)
        except FileNotFoundError:
            raise DataNotFoundError(f"invproto: CelebA image {path} not found; the folder "
                                    f"{path.parent} is incomplete, extract img_align_celeba.zip again") from None
        except (UnidentifiedImageError, OSError) as error:
            raise CorruptDataError(f"invproto: cannot decode {path} ({error}); "
                                   "extract img_align_celeba.zip again") from None
        return dequantize(pixels, self.dequantization, np.random.default_rng())

    def get_example(self, i: int) -> dict:
        return {"image": self.image(i), "attributes": self.labels["attributes"][i].astype(np.int64)}


@dataclass
class FactorCelebAParams(DequantizationParams):
    """``dataset_params`` of the FactorCelebA pairs."""

    attributes: List[str] = field(default_factory=lambda: ["Eyeglasses", "Male", "No_Beard", "Smiling"])


class FactorCelebA(FactorPairs, CelebA):
    """Face pairs sharing the value (0 or 1) of one of ``dataset_params.attributes``."""

    Params = FactorCelebAParams

    def __init__(self, config: Mapping):
        super().__init__(config)
        unknown = [a for a in self.params.attributes if a not in self.attribute_names]
        if unknown or not self.params.attributes:
            raise ConfigError(f"invproto: dataset_params.attributes must name CelebA attributes; "
                              f"unknown: {unknown}; valid: {', '.join(self.attribute_names)}")
        self.factor_names = tuple(self.params.attributes)
        self.factor_columns = [self.attribute_names.index(a) for a in self.factor_names]
        self.members = [[np.flatnonzero(self.labels["attributes"][:, column] == value) for value in (0, 1)]
                        for column in self.factor_columns]  # [factor][value] -> indices

    def pair(self, i: int, factor: int, rng: np.random.Generator) -> tuple[dict, dict]:
        value = self.labels["attributes"][i, self.factor_columns[factor]]
        partner = rng.choice(self.members[factor][value])
        return self.single(i), self.single(int(partner))


class CelebATrain(CelebA):
    split = "train"


class CelebAValidation(CelebA):
    split = "validation"


class CelebATest(CelebA):
    split = "test"


class CelebA32Train(CelebATrain):
    size = 32


class CelebA32Validation(CelebAValidation):
    size = 32


class CelebA32Test(CelebATest):
    size = 32


class FactorCelebATrain(FactorCelebA):
    split = "train"


class FactorCelebAValidation(FactorCelebA):
    split = "validation"


class FactorCelebATest(FactorCelebA):
    split = "test"
