"""MNIST at 32 px (resize, dequantization) and ColorfulMNIST on the real MNIST files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from invproto.data import (
    ColorfulMNISTTest,
    ColorfulMNISTTrain,
    MNIST32Test,
    MNIST32Train,
    MNIST32Validation,
    SingleColorfulMNISTTest,
    SingleColorfulMNISTTrain,
)
from invproto.errors import ConfigError


def config_for(make_config, shared_data, family="MNIST32", **params):
    return make_config(f"invproto.data.{family}Train", f"invproto.data.{family}Validation",
                       data={"root": str(shared_data), "validation_size": 1000}, dataset_params=params)


@pytest.fixture(scope="module")
def raw_test_digits(shared_data):
    raw = gzip.decompress((shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)


@pytest.fixture(scope="module")
def mnist32_test(make_config, shared_data):
    return MNIST32Test(config_for(make_config, shared_data))


def test_mnist32_is_the_digit_scaled_to_32_px(mnist32_test, raw_test_digits):
    assert len(mnist32_test) == 10000
    for i in (0, 17, 9999):
        example = mnist32_test[i]
        assert example["image"].shape == (32, 32, 1) and example["image"].dtype == np.float32
        expected = np.asarray(Image.fromarray(raw_test_digits[i]).resize((32, 32), Image.BILINEAR), np.float32)
        assert np.abs((example["image"][..., 0] + 1) * 127.5 - expected).max() <= 2.0  # PIL vs torch rounding
        assert -1.0 <= example["image"].min() and example["image"].max() <= 1.0


@pytest.mark.parametrize("mode", ["pixel", "image"])
def test_dequantization_noise_only_on_the_training_split(mode, make_config, shared_data):
    config = config_for(make_config, shared_data, dequantization=mode)
    train, validation = MNIST32Train(config), MNIST32Validation(config)
    pixels = train.arrays.images[3].astype(np.float64)
    first, second = train[3]["image"], train[3]["image"]
    assert first.dtype == np.float32 and not np.array_equal(first, second)
    noise = (first.astype(np.float64) + 1.0) * 128.0 - pixels  # (x + u) / 256 * 2 - 1 = image
    assert noise.min() >= -1e-4 and noise.max() < 1.0 + 1e-4
    if mode == "image":
        assert np.ptp(noise) < 1e-3  # one offset for the whole image (IIN)
    else:
        assert np.ptp(noise) > 0.5
    np.testing.assert_array_equal(validation[3]["image"], validation.arrays.images[3] / np.float32(127.5) - 1)
    assert validation[3]["image"].max() <= 1.0


def test_unknown_dequantization_mode_is_reported(make_config, shared_data):
    with pytest.raises(ConfigError, match="dequantization"):
        MNIST32Train(config_for(make_config, shared_data, dequantization="gaussian"))


def test_single_colorful_mnist_multiplies_the_digit_by_its_colour(mnist32_test, make_config, shared_data):
    config = config_for(make_config, shared_data, family="SingleColorfulMNIST")
    data = SingleColorfulMNISTTest(config)
    for i in (0, 5, 77):
        example = data[i]
        color = example["color"]
        assert example["image"].shape == (32, 32, 3) and color.shape == (3,)
        assert np.all((0 <= color) & (color < 1)) and example["class"] == mnist32_test[i]["class"]
        gray = mnist32_test[i]["image"]
        np.testing.assert_allclose(example["image"], gray * color, atol=1e-6)
        np.testing.assert_allclose(example["image"][0, 0], -color, atol=1e-6)  # background about -c
        assert np.array_equal(data[i]["color"], color)  # evaluation colours are fixed
    train = SingleColorfulMNISTTrain(config)
    assert not np.array_equal(train[0]["color"], train[0]["color"])


@pytest.fixture(scope="module")
def pairs_test(make_config, shared_data):
    return ColorfulMNISTTest(config_for(make_config, shared_data, family="ColorfulMNIST"))


def test_pairs_share_the_class_or_the_colour(pairs_test, mnist32_test):
    assert (pairs_test.n_factors, pairs_test.residual_index) == (3, 2)
    factors = []
    for i in range(60):
        example = pairs_test[i]
        factors.append(example["factor"])
        np.testing.assert_allclose(example["image1"], mnist32_test[i]["image"] * example["color1"], atol=1e-6)
        assert example["class1"] == mnist32_test[i]["class"]
        if example["factor"] == 0:
            assert example["class1"] == example["class2"]
            assert not np.array_equal(example["color1"], example["color2"])
        else:
            assert np.array_equal(example["color1"], example["color2"])
        # image2 is a real test digit of class2 in colour2
        candidates = np.flatnonzero(mnist32_test.labels["class"] == example["class2"])
        gray = mnist32_test.arrays.images[candidates].astype(np.float32) / 127.5 - 1
        assert np.any(np.all(np.abs(gray * example["color2"] - example["image2"]) < 1e-5, axis=(1, 2, 3)))
    assert 15 < factors.count(0) < 45  # both factors drawn, about equally often


def test_evaluation_pairs_are_fixed_and_training_pairs_random(pairs_test, make_config, shared_data):
    config = config_for(make_config, shared_data, family="ColorfulMNIST")
    again = ColorfulMNISTTest(config)
    for i in (0, 1, 2, 500):
        first, second = pairs_test[i], again[i]
        assert first["factor"] == second["factor"]
        assert np.array_equal(first["image1"], second["image1"]) and np.array_equal(first["image2"], second["image2"])
    train = ColorfulMNISTTrain(config)
    assert len({train[0]["image2"].tobytes() for _ in range(4)}) == 4
