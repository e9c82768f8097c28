"""ImageFolder: your own images, on folders of PNG and JPEG files generated here.

Expected labels come from where the test put each file (its class folder or
its CSV row), expected pixels from the solid colours it painted, independently
of the loader.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from invproto.data import ImageFolderTest, ImageFolderTrain, ImageFolderValidation
from invproto.data.checks import DatasetMismatchError
from invproto.data.image_folder import EXTENSIONS
from invproto.data.root import CorruptDataError, DataNotFoundError, UnreadableDataError
from invproto.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SPLIT_CLASSES = (ImageFolderTrain, ImageFolderValidation, ImageFolderTest)
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(path: Path, colour, size=(20, 20), mode="RGB") -> Path:
    """A solid ``colour`` image of ``size`` (width, height) in PIL ``mode``, format from the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def folder_config(make_config, root, **params) -> dict:
    return make_config("invproto.data.ImageFolderTrain", "invproto.data.ImageFolderValidation",
                       dataset_params={"root": str(root), "size": 8, **params})


def build_all(config) -> list:
    return [split_class(config) for split_class in SPLIT_CLASSES]


def split_signed(image: np.ndarray, colour) -> np.ndarray:
    """The float32 [-1, 1] pixels of a solid ``colour``, broadcast like ``image``."""
    return np.broadcast_to(np.asarray(colour, dtype=np.float32) / 127.5 - 1, image.shape)


@pytest.fixture
def class_folders(tmp_path) -> tuple[Path, dict[str, str]]:
    """Three class folders of 10 images each in varied formats, modes and sizes; {file name: class folder}."""
    root = tmp_path / "pets"
    kinds = {"cat": ("png", "RGB", (30, 20), RED), "dog": ("jpg", "L", (17, 25), 200),
             "zebra": ("png", "RGBA", (12, 40), (0, 0, 255, 128))}
    where = {}
    for name, (extension, mode, size, colour) in kinds.items():
        for k in range(10):
            nested = "more/" if name == "zebra" and k > 6 else ""
            path = save(root / name / f"{nested}{name}{k}.{extension.upper() if k == 0 else extension}",
                        colour, size, mode)
            where[path.name] = name
    (root / ".DS_Store").write_bytes(b"\x00hidden")  # hidden files are ignored
    (root / "cat" / ".thumbs").mkdir()
    (root / "cat" / ".thumbs" / "x.db").write_bytes(b"\x00")
    return root, where


# --------------------------------------------------------------------------- layouts and labels

def test_class_folders_give_sorted_class_names_and_labels_of_every_file(class_folders, make_config):
    root, where = class_folders
    splits = build_all(folder_config(make_config, root))
    assert [len(dataset) for dataset in splits] == [24, 3, 3]  # round(30 * 0.1) = 3
    for dataset in splits:
        assert dataset.class_names == ("cat", "dog", "zebra") and dataset.num_classes == 3
        for i, path in enumerate(dataset.files):
            example = dataset[i]
            assert example["class"] == ("cat", "dog", "zebra").index(where[path.name])
            assert isinstance(example["class"], int)
            assert example["image"].shape == (8, 8, 3) and example["image"].dtype == np.float32
    names = [path.name for dataset in splits for path in dataset.files]
    assert sorted(names) == sorted(where)  # hidden files skipped, nested class sub-folders found


def test_solid_colours_survive_decoding_resizing_and_conversion(class_folders, make_config):
    root, where = class_folders
    for resize in ("resize_crop", "resize"):
        train = ImageFolderTrain(folder_config(make_config, root, resize=resize, size=5))
        for i, path in enumerate(train.files):
            image = train[i]["image"]
            assert image.shape == (5, 5, 3)
            if where[path.name] == "cat":  # PNG, RGB
                np.testing.assert_array_equal(image, split_signed(image, RED))
            elif where[path.name] == "zebra":  # PNG, RGBA: alpha dropped
                np.testing.assert_array_equal(image, split_signed(image, BLUE))
            else:  # JPEG, grayscale: every channel the grey value, up to compression
                np.testing.assert_allclose(image, split_signed(image, (200, 200, 200)), atol=3 / 127.5)


def test_one_channel_converts_colour_to_luminance(tmp_path, make_config):
    colour = (200, 30, 90)
    for k in range(10):
        save(tmp_path / "flat" / f"{k}.png", colour, (9, 14))
    train = ImageFolderTrain(folder_config(make_config, tmp_path / "flat", channels=1, size=4))
    luminance = round((colour[0] * 299 + colour[1] * 587 + colour[2] * 114) / 1000)  # ITU-R 601-2, as PIL
    assert train.arrays.images.shape == (8, 4, 4, 1)
    assert np.all(np.abs(train.arrays.images.astype(int) - luminance) <= 1)


@pytest.mark.parametrize("resize", ["resize_crop", "resize"])
def test_resize_crop_keeps_the_centre_and_resize_squashes_the_whole_image(tmp_path, make_config, resize):
    """A 60x20 image of three vertical bands red | green | blue, at 9x9 px."""
    bands = np.zeros((20, 60, 3), dtype=np.uint8)
    bands[:, :20, 0] = bands[:, 20:40, 1] = bands[:, 40:, 2] = 255
    for k in range(10):
        Image.fromarray(bands).save(tmp_path / f"{k}.png")
    image = ImageFolderTrain(folder_config(make_config, tmp_path, size=9, resize=resize)).arrays.images[0]
    assert image.shape == (9, 9, 3)
    np.testing.assert_array_equal(image[:, 4], np.tile([0, 255, 0], (9, 1)))  # the centre column is green
    if resize == "resize":
        np.testing.assert_array_equal(image[:, 0], np.tile([255, 0, 0], (9, 1)))
        np.testing.assert_array_equal(image[:, 8], np.tile([0, 0, 255], (9, 1)))
    else:  # only the green middle square is left, its edges blurred a little by the filter
        assert image[..., 1].min() > 200 and image[..., 0].max() < 60 and image[..., 2].max() < 60


def test_flat_folder_takes_labels_from_the_csv(tmp_path, make_config):
    labels = {f"img{k}.{'jpeg' if k % 2 else 'png'}": k % 3 for k in range(12)}
    for name, label in labels.items():
        save(tmp_path / name, (80 * label, 0, 0), (16, 16))
    rows = "".join(f"{name},{label}\n" for name, label in reversed(labels.items()))
    (tmp_path / "labels.csv").write_text("file,label\n" + rows)
    splits = build_all(folder_config(make_config, tmp_path, labels_csv="labels.csv"))
    for dataset in splits:
        assert dataset.class_names == ("0", "1", "2")
        assert [int(label) for label in dataset.labels["class"]] == [labels[path.name] for path in dataset.files]
    assert sorted(path.name for dataset in splits for path in dataset.files) == sorted(labels)


def test_flat_folder_without_csv_is_one_class_named_after_the_folder(tmp_path, make_config):
    for k in range(10):
        save(tmp_path / "holiday" / f"{k}.bmp", GREEN, (10 + k, 12))
    train = ImageFolderTrain(folder_config(make_config, tmp_path / "holiday"))
    assert train.class_names == ("holiday",)
    assert len(train) == 8 and not train.labels["class"].any()


def test_a_relative_root_is_resolved_against_the_data_root(tmp_path, make_config):
    for k in range(10):
        save(tmp_path / "mine" / "a" / f"{k}.png", RED)
    config = folder_config(make_config, "mine", test_fraction=0.0)
    config["data"]["root"] = str(tmp_path)
    assert len(ImageFolderTrain(config)) == 9
    with pytest.raises(ConfigError, match=r"dataset_params.test_fraction is 0, so the test split .* has no images"):
        ImageFolderTest(config)


# --------------------------------------------------------------------------- the split

def test_split_is_seeded_deterministic_disjoint_and_complete(tmp_path, make_config):
    for k in range(50):
        save(tmp_path / f"{k:02d}.png", (k, k, k))
    config = folder_config(make_config, tmp_path, validation_fraction=0.2, seed=3)
    splits = build_all(config)
    files = [set(dataset.files) for dataset in splits]
    assert [len(f) for f in files] == [35, 10, 5]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert set.union(*files) == set(tmp_path.glob("*.png"))
    for dataset in splits:  # each example is its own file: grey value k of file k
        assert [int(image[0, 0, 0]) for image in dataset.arrays.images] == [int(p.stem) for p in dataset.files]
    assert [ImageFolderValidation(config).files] == [splits[1].files]
    other = ImageFolderValidation(folder_config(make_config, tmp_path, validation_fraction=0.2, seed=4))
    assert other.files != splits[1].files and len(other) == 10


def test_dequantization_noise_on_the_training_split_only(tmp_path, make_config):
    for k in range(10):
        save(tmp_path / f"{k}.png", (10, 100, 250))
    config = folder_config(make_config, tmp_path, dequantization="pixel")
    train, validation = ImageFolderTrain(config), ImageFolderValidation(config)
    noise = (train[0]["image"].astype(np.float64) + 1) * 128 - train.arrays.images[0]
    assert 0 <= noise.min() and noise.max() < 1 and np.ptp(noise) > 0.5
    np.testing.assert_array_equal(validation[0]["image"], split_signed(validation[0]["image"], (10, 100, 250)))


# --------------------------------------------------------------------------- errors

def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_root_file_root_and_empty_folders_are_named(tmp_path, make_config):
    with pytest.raises(DataNotFoundError, match=re.escape(f"image folder {tmp_path / 'nowhere'} not found")):
        ImageFolderTrain(folder_config(make_config, tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnreadableDataError, match="is a file, not a folder"):
        ImageFolderTrain(folder_config(make_config, tmp_path / "file"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="has no image files .*png.*put images"):
        ImageFolderTrain(folder_config(make_config, tmp_path / "empty"))
    save(tmp_path / "classes" / "a" / "1.png", RED)
    (tmp_path / "classes" / "b").mkdir()
    with pytest.raises(DataNotFoundError, match=re.escape(f"class folder {tmp_path / 'classes' / 'b'} has no image")):
        ImageFolderTrain(folder_config(make_config, tmp_path / "classes"))


def test_a_corrupt_image_is_named(class_folders, make_config):
    root, _ = class_folders
    bad = root / "dog" / "dog3.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    broken = root / "cat" / "cat5.png"
    broken.write_bytes(b"not an image at all")
    for _ in range(2):  # each run stops at the first broken file it decodes, naming it
        with pytest.raises(CorruptDataError) as error:
            build_all(folder_config(make_config, root))
        named = [path for path in (bad, broken) if one_line(error).startswith(f"cannot decode the image {path} (")]
        assert len(named) == 1
        named[0].unlink()
    assert sum(len(dataset) for dataset in build_all(folder_config(make_config, root))) == 28


def test_a_truncated_image_is_named(tmp_path, make_config):
    for k in range(10):
        save(tmp_path / f"{k}.png", RED, (64, 64))
    bad = tmp_path / "4.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(CorruptDataError) as error:
        build_all(folder_config(make_config, tmp_path))
    assert one_line(error).startswith(f"cannot decode the image {bad} (")


def test_files_of_unknown_extensions_stop_the_run_naming_one_and_the_accepted_ones(class_folders, make_config):
    root, _ = class_folders
    (root / "dog" / "notes.txt").write_text("good dogs")
    with pytest.raises(DataError) as error:
        ImageFolderTrain(folder_config(make_config, root))
    message = one_line(error)
    assert str(root / "dog" / "notes.txt") in message and ", ".join(sorted(EXTENSIONS)) in message


def test_extensions_are_configurable(class_folders, make_config):
    root, where = class_folders
    (root / "dog" / "notes.txt").write_text("good dogs")
    with pytest.raises(CorruptDataError, match=re.escape(f"cannot decode the image {root / 'dog' / 'notes.txt'}")):
        build_all(folder_config(make_config, root, extensions=["png", ".JPG", "txt"]))
    with pytest.raises(DataError, match=r"dog0\.JPG is not an image file of an accepted extension \(png, txt\)"):
        build_all(folder_config(make_config, root, extensions=["png", "txt"]))


def test_loose_files_beside_class_folders_are_refused(class_folders, make_config):
    root, _ = class_folders
    save(root / "stray.png", RED)
    with pytest.raises(DataError, match="has class folders and also the loose file stray.png"):
        ImageFolderTrain(folder_config(make_config, root))
    (root / "stray.png").unlink()
    (root / "labels.csv").write_text("file,label\n")
    with pytest.raises(ConfigError, match="labels_csv is set but .* has class folders"):
        ImageFolderTrain(folder_config(make_config, root, labels_csv="labels.csv"))


def test_too_few_images_for_the_split(tmp_path, make_config):
    for k in range(2):
        save(tmp_path / f"{k}.png", RED)
    with pytest.raises(DataError) as error:
        ImageFolderTrain(folder_config(make_config, tmp_path))
    assert "has 2 images, too few for a training split" in one_line(error) and "at least 3 needed" in str(error.value)
    assert len(ImageFolderTrain(folder_config(make_config, tmp_path, test_fraction=0))) == 1
    with pytest.raises(ConfigError, match=r"validation_fraction \+ test_fraction = 1.0 must be < 1"):
        ImageFolderTrain(folder_config(make_config, tmp_path, validation_fraction=0.5, test_fraction=0.5))


@pytest.mark.parametrize("rows, problem", [
    ("file,label\na.png,0\nb.png,1\nz.png,1\n", r"row 4: 'z.png' is not an image file in"),
    ("file,label\na.png,0\nb.png,cat\nc.png,1\n", r"row 3: label 'cat' of b.png is not a class number"),
    ("file,label\na.png,0\nb.png,-1\nc.png,1\n", r"row 3: label '-1' of b.png is not a class number"),
    ("file,label\na.png,0\nb.png,1.5\nc.png,1\n", r"row 3: label '1.5' of b.png is not a class number"),
    ("file,label\na.png,0\nb.png,²\nc.png,1\n", r"row 3: label '²' of b.png is not a class number"),
    ("file,label\na.png,0\nb.png,1\na.png,1\n", r"row 4: a.png is labelled twice"),
    ("file,label\na.png,0\nb.png,1\n", r"has no row for c.png \(1 of 3 images unlabelled\)"),
    ("name,class\na.png,0\n", r"must start with the header row file,label"),
])
def test_a_bad_labels_csv_names_the_row(tmp_path, make_config, rows, problem):
    for name in ("a.png", "b.png", "c.png"):
        save(tmp_path / "images" / name, RED)
    (tmp_path / "labels.csv").write_text(rows, encoding="utf-8")
    with pytest.raises(CorruptDataError, match=problem) as error:
        ImageFolderTrain(folder_config(make_config, tmp_path / "images", labels_csv=str(tmp_path / "labels.csv")))
    one_line(error)


def test_a_missing_labels_csv_is_named(tmp_path, make_config):
    save(tmp_path / "a.png", RED)
    with pytest.raises(DataNotFoundError, match=re.escape(f"labels CSV {tmp_path / 'labels.csv'} not found")):
        ImageFolderTrain(folder_config(make_config, tmp_path, labels_csv="labels.csv"))


# --------------------------------------------------------------------------- with a model

def test_the_example_config_accepts_a_folder_and_checks_the_model(class_folders):
    """configs/imagefolder_clf.yaml validates with a root; a model of another size is refused in one line."""
    root, _ = class_folders
    config = yaml.safe_load((REPO / "configs" / "imagefolder_clf.yaml").read_text())
    config["dataset_params"]["root"] = str(root)
    train = ImageFolderTrain(config)
    assert train[0]["image"].shape == (64, 64, 3) and train.num_classes <= config["model_params"]["n_classes"]
    config = {**config, "model_params": {**config["model_params"], "in_size": 32}}
    with pytest.raises(DatasetMismatchError, match=r"datasets.train \(invproto.data.ImageFolderTrain\) gives images "
                                                   r"of shape \(C, H, W\) = \(3, 64, 64\)"):
        ImageFolderTrain(config)
    del config["dataset_params"]["root"]
    with pytest.raises(ConfigError, match=r"missing config key 'dataset_params.root' \(str\)"):
        ImageFolderTrain(config)


@pytest.mark.slow
def test_edflow_trains_the_example_classifier_on_a_generated_folder(tmp_path):
    """``edflow -b configs/imagefolder_clf.yaml -t --dataset_params/root <folder>``: reddish vs bluish noise."""
    from edflow_runner import EdflowRunner

    rng = np.random.default_rng(0)
    for name, channel in (("bluish", 2), ("reddish", 0)):
        (tmp_path / "images" / name).mkdir(parents=True)
        for k in range(40):
            pixels = rng.integers(0, 120, size=(24, 20, 3), dtype=np.uint8)
            pixels[..., channel] += 120
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{k}.png")
    runner = EdflowRunner(tmp_path / "work")
    run = runner.train("configs/imagefolder_clf.yaml", "folder", "--dataset_params/root", str(tmp_path / "images"),
                       "--dataset_params/size", "16", "--model_params/in_size", "16", "--model_params/n_down", "2",
                       "--model_params/base_channels", "8", "--model_params/n_classes", "2", "--batch_size", "16",
                       "--num_steps", "30", "--log_freq", "10", "--optimizer/warmup_steps", "0")
    final = yaml.safe_load((run / "results" / "scores.yaml").read_text())["final"]
    assert final["step"] == 30 and final["dataset"] == "invproto.data.ImageFolderValidation"
    assert final["accuracy"] > 0.8, "30 Adam steps separate red from blue far above chance (0.5)"
