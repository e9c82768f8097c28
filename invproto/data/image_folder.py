"""Your own images: a folder of image files as a labelled dataset.

``dataset_params.root`` names the folder, absolute or relative to the data root
(``data.root``, ``$INVPROTO_DATA``, ``./data``: :mod:`invproto.data.root`). Two layouts::

    root/<class name>/**/<image>    class folders: the class index is the folder's rank in sorted order,
                                    ``class_names`` the sorted folder names (sub-folders of a class are searched)
    root/<image>                    flat: labels from ``dataset_params.labels_csv`` (columns ``file,label``, a
                                    header row, ``file`` a name in ``root``, ``label`` an integer >= 0;
                                    ``class_names`` "0" .. "max label"), or without a CSV every label is 0
                                    and the single class is named after the folder

A relative ``labels_csv`` is resolved against ``root``. Hidden files and folders
(name starting with ``.``) and the labels CSV are ignored. Any other file whose
extension is not in ``dataset_params.extensions`` stops the run with one line
naming it (the safer choice: skipping it silently could drop images of a format
that was meant to be read); loose files next to class folders stop it too.

Every image is decoded with PIL (first frame of an animation; alpha dropped),
converted to ``channels`` (1: grayscale ``L``, 3: ``RGB``) and resized to
``size`` x ``size`` px: ``resize_crop`` scales the shorter side to ``size`` and
centre-crops, ``resize`` squashes the whole image. A split decodes only its own
files, once, at construction, into uint8 ``(N, size, size, channels)`` memory
(a tqdm bar for large folders). Examples, as for every in-memory dataset::

    {"image": float32 (size, size, channels) in [-1, 1], "class": int}

The files (in sorted path order) are split at random, seeded by
``dataset_params.seed``, into disjoint test, validation and train sets of
``round(N * test_fraction)``, ``round(N * validation_fraction)`` and the rest
(a positive fraction gets at least one image); ``data.validation_size`` and
``data.split_seed`` do not apply. ``dataset_params.dequantization`` adds noise
to the training split (:mod:`invproto.data.transforms`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, List, Mapping, Optional

import numpy as np
from omegaconf import MISSING
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from invproto.config.run import component_params, prepare_run
from invproto.config.schema import checked
from invproto.data.base import ImageDataset, LabelledImages
from invproto.data.root import (
    CorruptDataError,
    DataNotFoundError,
    UnreadableDataError,
    data_root,
)
from invproto.data.transforms import DequantizationParams, Dequantized
from invproto.errors import ConfigError, DataError

EXTENSIONS = ["bmp", "gif", "jpeg", "jpg", "png", "tif", "tiff", "webp"]
RESIZE_MODES = ("resize_crop", "resize")
COLOUR_MODES = {1: "L", 3: "RGB"}
PROGRESS_FROM = 500  # files; fewer decode without a progress bar


@dataclass
class ImageFolderParams(DequantizationParams):
    """``dataset_params`` of the image-folder datasets (see the module doc)."""

    root: str = MISSING  # the folder of images: absolute, or relative to the data root
    size: int = checked(32, ge=1)  # output height = width S in pixels
    resize: str = checked("resize_crop", choices=RESIZE_MODES)  # shorter side to S + centre crop, or squash
    channels: int = checked(3, choices=tuple(COLOUR_MODES))  # 1 grayscale, 3 RGB (converted)
    labels_csv: Optional[str] = None  # flat layout only: CSV "file,label", relative to root
    validation_fraction: float = checked(0.1, ge=0)
    test_fraction: float = checked(0.1, ge=0)
    seed: int = checked(0, ge=0)  # seed of the train/validation/test split
    extensions: List[str] = field(default_factory=lambda: list(EXTENSIONS))  # accepted, case-insensitive


@dataclass(frozen=True)
class Catalogue:
    """Every image file of a folder, sorted, with its int64 label ``(N,)`` and the class names."""

    files: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]


def resolve_folder(config: Mapping, root: str) -> Path:
    """``dataset_params.root`` as a path: absolute as given, relative under the data root; it must be a folder."""
    given = Path(root).expanduser()
    folder = given if given.is_absolute() else data_root(config) / given
    if not folder.exists():
        raise DataNotFoundError(f"image folder {folder} not found (dataset_params.root={root!r}; a relative path "
                                f"is resolved against the data root {data_root(config)}); set dataset_params.root "
                                "to an existing folder of images")
    if not folder.is_dir():
        raise UnreadableDataError(f"dataset_params.root {folder} is a file, not a folder; set it to the folder "
                                  "that holds the images")
    return folder


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def image_files(entries: list[Path], folder: Path, extensions: set[str]) -> list[Path]:
    """The files among ``entries`` (hidden ones skipped), sorted; a file of another extension is a DataError."""
    files = sorted(path for path in entries if path.is_file() and not _hidden(path, folder))
    for path in files:
        if path.suffix.lower().lstrip(".") not in extensions:
            raise DataError(f"{path} is not an image file of an accepted extension ({', '.join(sorted(extensions))}); "
                            "move it out of the image folder or add its extension to dataset_params.extensions")
    return files


def catalogue(folder: Path, params: ImageFolderParams) -> Catalogue:
    """Find the images of ``folder`` in either layout and label them (see the module doc)."""
    extensions = {extension.lower().lstrip(".") for extension in params.extensions}
    if not extensions:
        raise ConfigError("dataset_params.extensions is empty; list the image file extensions to read, e.g. [png, jpg]")
    labels_csv = folder / Path(params.labels_csv).expanduser() if params.labels_csv else None
    top = [path for path in folder.iterdir() if not _hidden(path, folder) and path != labels_csv]
    class_folders = sorted(path for path in top if path.is_dir())
    if not class_folders:
        files = image_files(top, folder, extensions)
        if not files:
            raise DataNotFoundError(f"image folder {folder} has no image files ({', '.join(sorted(extensions))}) "
                                    "and no class folders; put images (or one folder of images per class) there")
        if labels_csv is None:
            return Catalogue(tuple(files), np.zeros(len(files), dtype=np.int64), (folder.name,))
        labels = read_labels_csv(labels_csv, files)
        return Catalogue(tuple(files), labels, tuple(str(k) for k in range(int(labels.max()) + 1)))
    loose = [path for path in top if not path.is_dir()]
    if loose:
        raise DataError(f"image folder {folder} has class folders and also the loose file {loose[0].name}; "
                        "move every image into the folder of its class")
    if labels_csv is not None:
        raise ConfigError(f"dataset_params.labels_csv is set but {folder} has class folders, which are the labels; "
                          "remove labels_csv or use a flat folder of images")
    files, labels = [], []
    for index, class_folder in enumerate(class_folders):
        members = image_files(list(class_folder.rglob("*")), folder, extensions)
        if not members:
            raise DataNotFoundError(f"class folder {class_folder} has no image files "
                                    f"({', '.join(sorted(extensions))}); add images or remove the folder")
        files += members
        labels += [index] * len(members)
    return Catalogue(tuple(files), np.array(labels, dtype=np.int64), tuple(p.name for p in class_folders))


def read_labels_csv(path: Path, files: list[Path]) -> np.ndarray:
    """int64 labels ``(len(files),)`` of ``files`` from the CSV ``path`` (header ``file,label``, one row each)."""
    if not path.is_file():
        raise DataNotFoundError(f"labels CSV {path} not found (dataset_params.labels_csv); create it with the "
                                "columns file,label or remove labels_csv to label every image 0")
    by_name = {file.name: k for k, file in enumerate(files)}
    labels: dict[int, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"file", "label"} <= set(reader.fieldnames or ()):
            raise CorruptDataError(f"labels CSV {path} must start with the header row file,label, "
                                   f"found {reader.fieldnames}; add that header")
        for row in reader:
            where = f"labels CSV {path} row {reader.line_num}"
            name, label = (row["file"] or "").strip(), (row["label"] or "").strip()
            if name not in by_name:
                raise CorruptDataError(f"{where}: {name!r} is not an image file in {path.parent}; "
                                       "fix the file name or remove the row")
            if by_name[name] in labels:
                raise CorruptDataError(f"{where}: {name} is labelled twice; keep one row per image")
            if not (label.isascii() and label.isdigit()):
                raise CorruptDataError(f"{where}: label {label!r} of {name} is not a class number 0, 1, 2, ...; "
                                       "write the class as an integer >= 0")
            labels[by_name[name]] = int(label)
    unlabelled = [file.name for k, file in enumerate(files) if k not in labels]
    if unlabelled:
        raise CorruptDataError(f"labels CSV {path} has no row for {unlabelled[0]} ({len(unlabelled)} of "
                               f"{len(files)} images unlabelled); add a row file,label for each image")
    return np.array([labels[k] for k in range(len(files))], dtype=np.int64)


def split_members(n_images: int, params: ImageFolderParams, folder: Path) -> dict[str, np.ndarray]:
    """Sorted, disjoint indices of the train, validation and test images; they depend on the count and seed only."""
    fractions = {"validation": params.validation_fraction, "test": params.test_fraction}
    if sum(fractions.values()) >= 1:
        raise ConfigError(f"dataset_params.validation_fraction + test_fraction = {sum(fractions.values())} "
                          "must be < 1 to leave images for training; lower them")
    counts = {split: max(1, round(n_images * fraction)) if fraction > 0 else 0
              for split, fraction in fractions.items()}
    if n_images - sum(counts.values()) < 1:
        needed = 1 + sum(1 for fraction in fractions.values() if fraction > 0)
        raise DataError(f"image folder {folder} has {n_images} images, too few for a training split besides "
                        f"validation_fraction={params.validation_fraction} and test_fraction={params.test_fraction} "
                        f"(at least {needed} needed); add images or set those dataset_params lower")
    order = np.random.default_rng(params.seed).permutation(n_images)
    test, validation = counts["test"], counts["validation"]
    return {"test": np.sort(order[:test]), "validation": np.sort(order[test:test + validation]),
            "train": np.sort(order[test + validation:])}


def decode(path: Path, params: ImageFolderParams) -> np.ndarray:
    """One image file -> uint8 ``(size, size, channels)``; an undecodable file is a CorruptDataError naming it."""
    size = params.size
    try:
        with Image.open(path) as image:
            image.draft(COLOUR_MODES[params.channels], (size, size))  # JPEG: decode at a reduced scale
            image = image.convert(COLOUR_MODES[params.channels])
            if params.resize == "resize":
                image = image.resize((size, size), Image.BILINEAR)
            else:
                image = ImageOps.fit(image, (size, size), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError, EOFError) as error:
        raise CorruptDataError(f"cannot decode the image {path} ({error}); replace or remove the file") from None
    except OSError as error:
        if error.errno is not None:  # permissions, I/O: named by invproto.data.checks
            raise
        raise CorruptDataError(f"cannot decode the image {path} ({error}); replace or remove the file") from None
    return pixels.reshape(size, size, params.channels)


def decode_all(files: list[Path], params: ImageFolderParams, description: str) -> np.ndarray:
    """uint8 ``(len(files), size, size, channels)``, with a progress bar from :data:`PROGRESS_FROM` files on."""
    images = np.empty((len(files), params.size, params.size, params.channels), dtype=np.uint8)
    bar = tqdm(files, desc=description, unit="img", disable=len(files) < PROGRESS_FROM)
    for k, path in enumerate(bar):
        images[k] = decode(path, params)
    return images


class ImageFolderImages(ImageDataset):
    """One split of an image folder, decoded at construction (see the module doc).

    ``files`` are the split's image paths, in the order of its examples.
    """

    Params: ClassVar[type] = ImageFolderParams

    def __init__(self, config: Mapping):
        prepare_run(config)
        self.params = component_params(config, "dataset_params", type(self))
        folder = resolve_folder(config, self.params.root)
        found = catalogue(folder, self.params)
        members = split_members(len(found.files), self.params, folder)[self.split]
        if len(members) == 0:
            raise ConfigError(f"dataset_params.{self.split}_fraction is 0, so the {self.split} split of {folder} "
                              f"has no images; set it > 0 to use {type(self).__name__}")
        self.class_names = found.class_names
        self.files = [found.files[k] for k in members]
        images = decode_all(self.files, self.params, f"decoding {self.split} images of {folder.name}")
        self.arrays = LabelledImages(images, found.labels[members])
        self.labels = {"class": self.arrays.labels}


class ImageFolder(Dequantized, ImageFolderImages):
    """An image folder with optional dequantization noise on its training split."""

    Params: ClassVar[type] = ImageFolderParams


class ImageFolderTrain(ImageFolder):
    split = "train"


class ImageFolderValidation(ImageFolder):
    split = "validation"


class ImageFolderTest(ImageFolder):
    split = "test"
