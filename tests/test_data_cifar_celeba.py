"""CIFAR-10 and CelebA on small generated files in their real on-disk formats."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from invproto.data import (
    CelebA32Test,
    CelebATest,
    CelebATrain,
    CelebAValidation,
    CIFAR10Test,
    CIFAR10Train,
    CIFAR10Validation,
    FactorCelebATest,
    FactorCelebATrain,
)
from invproto.data.root import CorruptDataError, DataNotFoundError
from invproto.errors import ConfigError

# --------------------------------------------------------------------------- CIFAR-10

CIFAR_FILES = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
PER_BATCH = 20


def write_cifar(root, seed=0) -> dict:
    """Write CIFAR-10 batches of 20 random images; return {file: (data (20, 3072), labels)}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = {}
    for name in CIFAR_FILES:
        data = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=PER_BATCH).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{name}_{k}.png".encode() for k in range(PER_BATCH)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        batches[name] = (data, labels)
    return batches


def cifar_config(make_config, root, **params):
    return make_config("invproto.data.CIFAR10Train", "invproto.data.CIFAR10Validation",
                       data={"root": str(root), "validation_size": 10}, dataset_params=params)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory, make_config):
    root = tmp_path_factory.mktemp("cifar")
    return root, write_cifar(root), cifar_config(make_config, root)


def test_cifar_counts_and_channel_major_layout(cifar):
    _, batches, config = cifar
    train, validation, test = CIFAR10Train(config), CIFAR10Validation(config), CIFAR10Test(config)
    assert (len(train), len(validation), len(test)) == (90, 10, 20)
    data, labels = batches["test_batch"]
    for i in (0, 7, 19):
        example = test[i]
        assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.float32
        for h, w, c in ((0, 0, 0), (5, 30, 1), (31, 2, 2)):
            assert example["image"][h, w, c] == pytest.approx(data[i, c * 1024 + h * 32 + w] / 127.5 - 1, abs=1e-6)
        assert example["class"] == labels[i]
    all_train_labels = sum((batches[name][1] for name in CIFAR_FILES[:5]), [])
    assert sorted(train.labels["class"].tolist() + validation.labels["class"].tolist()) == sorted(all_train_labels)


def test_cifar_dequantization_on_train_only(cifar, make_config):
    root, _, _ = cifar
    config = cifar_config(make_config, root, dequantization="pixel")
    train, test = CIFAR10Train(config), CIFAR10Test(config)
    noise = (train[0]["image"].astype(np.float64) + 1) * 128 - train.arrays.images[0]
    assert 0 <= noise.min() and noise.max() < 1 and np.ptp(noise) > 0.5
    np.testing.assert_array_equal(test[0]["image"], test.arrays.images[0] / np.float32(127.5) - 1)


def test_cifar_missing_file_is_named(tmp_path, make_config):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError) as error:
        CIFAR10Train(cifar_config(make_config, tmp_path))
    message = str(error.value)
    assert "data_batch_3" in message and "data_batch_2" not in message
    assert str(tmp_path / "cifar-10-batches-py") in message and "data.download is off" in message


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("content", [
    b"not a pickle at all",
    pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-20],  # truncated
    pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),  # wrong shape
    pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),  # label out of range
    pickle.dumps({b"labels": [0, 1]}),  # no data
    pickle.dumps({b"data": _Evil(), b"labels": [0]}),  # code, not data: never executed
], ids=["garbage", "truncated", "shape", "label", "key", "code"])
def test_cifar_bad_pickles_are_named(content, tmp_path, make_config):
    write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(content)
    with pytest.raises(CorruptDataError, match=re.escape(str(bad))):
        CIFAR10Train(cifar_config(make_config, tmp_path))


# --------------------------------------------------------------------------- CelebA

ATTRIBUTES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
              "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
              "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
              "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
              "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
PARTITION = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]  # 6 train, 2 validation, 2 test


def write_celeba(root, seed=0) -> np.ndarray:
    """Write 10 JPEGs of 178x218 px and the two text files; return the attributes (10, 40) in {-1, 1}."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:218, 0:178]
    for k in range(len(PARTITION)):  # smooth images: JPEG keeps them nearly exact
        pixels = np.stack([(rows + 20 * k) % 256, (cols * 1.4) % 256, np.full_like(rows, 25 * k)], axis=-1)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "img_align_celeba" / f"{k + 1:06d}.jpg", quality=95)
    values = rng.choice([-1, 1], size=(len(PARTITION), 40))
    lines = [str(len(PARTITION)), " ".join(ATTRIBUTES)]
    lines += [f"{k + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in row) for k, row in enumerate(values)]
    (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{k + 1:06d}.jpg {p}\n" for k, p in enumerate(PARTITION)))
    return values


def celeba_config(make_config, root, factor=False, **params):
    prefix = "invproto.data.FactorCelebA" if factor else "invproto.data.CelebA"
    return make_config(f"{prefix}Train", f"{prefix}Validation", data={"root": str(root)}, dataset_params=params)


@pytest.fixture(scope="module")
def celeba(tmp_path_factory, make_config):
    root = tmp_path_factory.mktemp("celeba")
    return root, write_celeba(root)


def expected_face(root, number: int, size: int) -> np.ndarray:
    """Independent reference: crop the central 160x160 of the 178x218 JPEG, resize, scale to [-1, 1]."""
    with Image.open(root / "celeba" / "img_align_celeba" / f"{number:06d}.jpg") as image:
        face = image.crop((9, 29, 169, 189)).resize((size, size), Image.BILINEAR)
    return np.asarray(face, np.float32) / 127.5 - 1


def test_celeba_official_splits_attributes_and_pixels(celeba, make_config):
    root, values = celeba
    config = celeba_config(make_config, root)
    train, validation, test = CelebATrain(config), CelebAValidation(config), CelebATest(config)
    assert (len(train), len(validation), len(test)) == (6, 2, 2)
    example = validation[1]  # file 000008.jpg
    assert set(example) == {"image", "attributes", "index_"}
    assert example["image"].shape == (64, 64, 3) and example["image"].dtype == np.float32
    np.testing.assert_allclose(example["image"], expected_face(root, 8, 64), atol=1e-6)
    assert example["attributes"].tolist() == (values[7] == 1).astype(int).tolist()
    assert np.array_equal(train.labels["attributes"], (values[:6] == 1).astype(np.uint8))
    small = CelebA32Test(config)
    np.testing.assert_allclose(small[0]["image"], expected_face(root, 9, 32), atol=1e-6)


def test_celeba_images_are_loaded_lazily_and_named_when_broken(tmp_path, make_config):
    write_celeba(tmp_path)
    images = tmp_path / "celeba" / "img_align_celeba"
    (images / "000002.jpg").unlink()  # construction does not read images
    (images / "000003.jpg").write_bytes(b"not a jpeg")
    data = CelebATrain(celeba_config(make_config, tmp_path))
    assert data[0]["image"].shape == (64, 64, 3)
    with pytest.raises(DataNotFoundError, match=re.escape(str(images / "000002.jpg"))):
        data[1]
    with pytest.raises(CorruptDataError, match=re.escape(str(images / "000003.jpg"))):
        data[2]


def test_celeba_dequantization_on_train_only(celeba, make_config):
    root, _ = celeba
    config = celeba_config(make_config, root, dequantization="image")
    noisy, exact = CelebATrain(config)[0]["image"], CelebATest(config)[0]["image"]
    reference = (expected_face(root, 1, 64) + 1) * 127.5
    offset = (noisy.astype(np.float64) + 1) * 128 - reference
    assert 0 <= offset.min() and offset.max() < 1 and np.ptp(offset) < 1e-3
    np.testing.assert_allclose(exact, expected_face(root, 9, 64), atol=1e-6)


@pytest.mark.parametrize("problem", ["missing attributes", "missing images", "bad value", "bad count", "bad split"])
def test_celeba_missing_or_corrupt_index_files_are_named(problem, tmp_path, make_config):
    write_celeba(tmp_path)
    folder = tmp_path / "celeba"
    attributes, partition = folder / "list_attr_celeba.txt", folder / "list_eval_partition.txt"
    if problem == "missing attributes":
        attributes.unlink()
    elif problem == "missing images":
        for image in (folder / "img_align_celeba").iterdir():
            image.unlink()
        (folder / "img_align_celeba").rmdir()
    elif problem == "bad value":
        attributes.write_text(attributes.read_text().replace(" 1", " 2", 1))
    elif problem == "bad count":
        attributes.write_text("11" + attributes.read_text()[2:])
    else:
        partition.write_text(partition.read_text().replace(" 2\n", " 3\n", 1))
    expected = {"missing attributes": (DataNotFoundError, "list_attr_celeba.txt"),
                "missing images": (DataNotFoundError, "img_align_celeba/"),
                "bad value": (CorruptDataError, str(attributes)),
                "bad count": (CorruptDataError, str(attributes)),
                "bad split": (CorruptDataError, str(partition))}[problem]
    with pytest.raises(expected[0], match=re.escape(expected[1])):
        CelebATrain(celeba_config(make_config, tmp_path))


def test_factor_celeba_pairs_share_the_chosen_attribute(celeba, make_config):
    root, _ = celeba
    config = celeba_config(make_config, root, factor=True)
    pairs = FactorCelebATrain(config)
    assert pairs.factor_names == ("Eyeglasses", "Male", "No_Beard", "Smiling")
    assert (pairs.n_factors, pairs.residual_index) == (5, 4)
    columns = [ATTRIBUTES.index(name) for name in pairs.factor_names]
    seen = set()
    for _ in range(40):
        example = pairs[3]
        seen.add(example["factor"])
        column = columns[example["factor"]]
        assert example["attributes1"][column] == example["attributes2"][column]
        assert example["image1"].shape == example["image2"].shape == (64, 64, 3)
    assert seen == {0, 1, 2, 3}
    test = FactorCelebATest(config)
    assert all(test[i]["factor"] == test[i]["factor"] for i in range(len(test)))
    assert np.array_equal(test[1]["image2"], FactorCelebATest(config)[1]["image2"])


def test_factor_celeba_unknown_attribute_is_reported(celeba, make_config):
    root, _ = celeba
    with pytest.raises(ConfigError, match="Eyeglases"):
        FactorCelebATrain(celeba_config(make_config, root, factor=True, attributes=["Eyeglases"]))
