"""MNIST and Fashion-MNIST on the real files: counts, labels, values, splits, errors.

Expected values are computed here from the raw IDX bytes (gzip + fixed header
offsets), independently of invproto's reader.
"""

from __future__ import annotations

import gzip
import re
import shutil

import numpy as np
import pytest

from invproto.data import (
    FashionMNISTTest,
    FashionMNISTTrain,
    FashionMNISTValidation,
    MNISTTest,
    MNISTTrain,
    MNISTValidation,
)
from invproto.data.root import CorruptDataError, DataNotFoundError
from invproto.data.splits import split_indices

FAMILIES = {
    "mnist": (MNISTTrain, MNISTValidation, MNISTTest),
    "fashion-mnist": (FashionMNISTTrain, FashionMNISTValidation, FashionMNISTTest),
}


def raw_idx(path, header: int) -> np.ndarray:
    """The bytes after an IDX header of ``header`` bytes (8 for labels, 16 for images)."""
    return np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=header)


@pytest.fixture(scope="module")
def raw(shared_data):
    """{folder: {"train"/"test": (images uint8 (N, 28, 28), labels uint8 (N,))}} straight from the files."""
    out = {}
    for folder in FAMILIES:
        out[folder] = {
            split: (raw_idx(shared_data / folder / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28),
                    raw_idx(shared_data / folder / f"{prefix}-labels-idx1-ubyte.gz", 8))
            for split, prefix in (("train", "train"), ("test", "t10k"))
        }
    return out


def build(cls, make_config, shared_data, **data):
    train, validation, _ = FAMILIES["mnist" if cls.__name__.startswith("MNIST") else "fashion-mnist"]
    config = make_config(f"invproto.data.{train.__name__}", f"invproto.data.{validation.__name__}",
                         data={"root": str(shared_data), **data})
    return cls(config)


@pytest.mark.parametrize("folder", FAMILIES)
def test_counts_and_label_histograms_match_the_files(folder, raw, make_config, shared_data):
    train_cls, validation_cls, test_cls = FAMILIES[folder]
    full_train = build(train_cls, make_config, shared_data, validation_size=0)
    test = build(test_cls, make_config, shared_data)
    assert (len(full_train), len(test)) == (60000, 10000)
    for dataset, split in ((full_train, "train"), (test, "test")):
        expected = np.bincount(raw[folder][split][1], minlength=10)
        assert np.array_equal(np.bincount(dataset.labels["class"], minlength=10), expected)
    train = build(train_cls, make_config, shared_data, validation_size=5000)
    validation = build(validation_cls, make_config, shared_data, validation_size=5000)
    assert (len(train), len(validation)) == (55000, 5000)
    assert np.array_equal(np.bincount(train.labels["class"], minlength=10)
                          + np.bincount(validation.labels["class"], minlength=10),
                          np.bincount(raw[folder]["train"][1], minlength=10))


def test_known_label_counts(raw):
    """Published facts, as a check of the independent reader above."""
    assert np.bincount(raw["mnist"]["test"][1]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(raw["fashion-mnist"]["train"][1]).tolist() == [6000] * 10


@pytest.mark.parametrize("folder", FAMILIES)
def test_examples_are_float32_in_minus_one_one_and_equal_the_raw_pixels(folder, raw, make_config, shared_data):
    test = build(FAMILIES[folder][2], make_config, shared_data)
    images, labels = raw[folder]["test"]
    for i in (0, 1, 4321, 9999):
        example = test[i]
        assert example["image"].dtype == np.float32 and example["image"].shape == (28, 28, 1)
        np.testing.assert_allclose(example["image"][..., 0], images[i] / 127.5 - 1.0, atol=1e-6)
        assert example["class"] == labels[i] and isinstance(example["class"], int)
    pixels = np.stack([example["image"] for example in test[:500]])
    assert pixels.min() == -1.0 and pixels.max() == 1.0  # 0 and 255 both occur


def test_validation_split_is_a_deterministic_disjoint_partition_of_train(raw, make_config, shared_data):
    images, labels = raw["mnist"]["train"]
    indices = split_indices(60000, 5000, 7)
    assert np.intersect1d(indices["train"], indices["validation"]).size == 0
    assert np.array_equal(np.union1d(indices["train"], indices["validation"]), np.arange(60000))
    train = build(MNISTTrain, make_config, shared_data, validation_size=5000, split_seed=7)
    validation = build(MNISTValidation, make_config, shared_data, validation_size=5000, split_seed=7)
    for dataset, split in ((train, "train"), (validation, "validation")):
        assert np.array_equal(dataset.arrays.images[..., 0], images[indices[split]])
        assert np.array_equal(dataset.labels["class"], labels[indices[split]])
    again = build(MNISTValidation, make_config, shared_data, validation_size=5000, split_seed=7)
    other = build(MNISTValidation, make_config, shared_data, validation_size=5000, split_seed=8)
    assert np.array_equal(again.arrays.images, validation.arrays.images)
    assert not np.array_equal(other.labels["class"], validation.labels["class"])


def test_missing_files_raise_one_message_naming_files_and_folders(tmp_path, make_config):
    config = make_config("invproto.data.MNISTTrain", "invproto.data.MNISTValidation",
                         data={"root": str(tmp_path), "download": False})
    with pytest.raises(DataNotFoundError) as error:
        MNISTTrain(config)
    message = str(error.value)
    assert "\n" not in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte", str(tmp_path / "mnist"), str(tmp_path / "MNIST" / "raw"),
                 "INVPROTO_DATA", "data.download is off"):
        assert name in message


@pytest.mark.parametrize("corruption", ["bad magic", "truncated", "not gzip"])
def test_corrupt_files_raise_naming_the_file(corruption, tmp_path, make_config, shared_data):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, folder / name)
    header = np.array([0x00000803, 60000, 28, 28], dtype=">u4").tobytes()
    content = {"bad magic": b"\x12\x34" + header[2:] + bytes(60000 * 784),
               "truncated": header + bytes(1000)}.get(corruption)
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(content) if content else b"plain bytes, not gzip")
    config = make_config("invproto.data.MNISTTrain", "invproto.data.MNISTValidation",
                         data={"root": str(tmp_path)})
    with pytest.raises(CorruptDataError, match=re.escape(str(bad))):
        MNISTTrain(config)
