"""Sprites: rendering matches the factors, splits are deterministic and disjoint, pairs share one factor."""

from __future__ import annotations

import numpy as np
import pytest

from invproto.data import (
    SpritesPairsTest,
    SpritesPairsTrain,
    SpritesPairsValidation,
    SpritesTest,
    SpritesTrain,
    SpritesValidation,
)
from invproto.data.synthetic import PALETTE, POSITION_RANGE, SCALE_RANGE, SHAPES
from invproto.errors import ConfigError

SMALL = {"n_train": 400, "n_validation": 100, "n_test": 100, "size": 32}


def sprites_config(make_config, pairs=False, **params):
    prefix = "invproto.data.SpritesPairs" if pairs else "invproto.data.Sprites"
    return make_config(f"{prefix}Train", f"{prefix}Validation", dataset_params={**SMALL, **params})


@pytest.fixture(scope="module")
def splits(make_config):
    config = sprites_config(make_config)
    return {"train": SpritesTrain(config), "validation": SpritesValidation(config), "test": SpritesTest(config)}


def test_sizes_keys_dtypes_and_factor_ranges(splits):
    assert {name: len(data) for name, data in splits.items()} == {"train": 400, "validation": 100, "test": 100}
    for data in splits.values():
        example = data[0]
        assert set(example) == {"image", "class", "shape", "color", "x", "y", "scale", "index_"}
        assert example["image"].dtype == np.float32 and example["image"].shape == (32, 32, 3)
        assert example["class"] == example["shape"]
        labels = data.labels
        assert labels["shape"].min() >= 0 and labels["shape"].max() < len(SHAPES)
        assert labels["color"].min() >= 0 and labels["color"].max() < len(PALETTE)
        for name, (low, high) in (("x", POSITION_RANGE), ("y", POSITION_RANGE), ("scale", SCALE_RANGE)):
            assert low <= labels[name].min() and labels[name].max() <= high
    assert set(splits["train"].labels["shape"]) == set(range(len(SHAPES)))  # every class occurs


def test_pixels_agree_with_factors_and_part_mask(splits):
    data = splits["train"]
    for i in range(50):
        example = data[i]
        image = (example["image"] + 1.0) * 127.5  # back to 0..255
        colour = PALETTE[example["color"]].astype(np.float32)
        centre = int(example["y"] * 32), int(example["x"] * 32)
        np.testing.assert_allclose(image[centre], colour, atol=1e-3)  # the centre pixel is fully covered
        mask = data.mask(i)
        assert mask[centre] and mask.dtype == bool and mask.shape == (32, 32)
        x0, y0, x1, y1 = data.box(i)
        rows, cols = np.nonzero(mask)
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        painted = image.max(axis=2) > 0
        assert np.all(image[mask] >= 0.5 * colour - 1e-3)  # inside: at least half covered
        assert np.all(image[~painted] == 0.0)  # the background is black (-1)
        # anti-aliasing paints within one pixel of the box (two at the triangle's acute apex)
        margin = 2 if SHAPES[example["shape"]] == "triangle" else 1
        near = np.zeros_like(mask)
        near[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin] = True
        assert not np.any(painted & ~near)
        radius = example["scale"] * 32
        if SHAPES[example["shape"]] == "circle":
            assert abs(mask.sum() - np.pi * radius ** 2) < 2 * np.pi * radius * 0.5 + 1
        if SHAPES[example["shape"]] == "square":
            assert abs(mask.sum() - (1.6 * radius) ** 2) < 4 * 1.6 * radius * 0.5 + 1


def test_deterministic_from_seed_and_splits_disjoint(splits, make_config):
    again = SpritesTrain(sprites_config(make_config))
    assert np.array_equal(again.arrays.images, splits["train"].arrays.images)
    other = SpritesTrain(sprites_config(make_config, seed=1))
    assert not np.array_equal(other.labels["x"], splits["train"].labels["x"])
    positions = {name: {(x, y) for x, y in zip(data.labels["x"], data.labels["y"])} for name, data in splits.items()}
    assert not positions["train"] & positions["validation"]
    assert not positions["train"] & positions["test"] and not positions["validation"] & positions["test"]
    images = {name: {image.tobytes() for image in data.arrays.images} for name, data in splits.items()}
    assert not images["train"] & images["test"] and not images["train"] & images["validation"]


def test_image_size_is_configurable(make_config):
    data = SpritesTest(sprites_config(make_config, size=28))
    assert data[0]["image"].shape == (28, 28, 3) and data.mask(0).shape == (28, 28)


PARTS = {"shape": ("shape",), "color": ("color",), "position": ("x", "y"), "scale": ("scale",)}


@pytest.mark.parametrize("cls", [SpritesPairsTrain, SpritesPairsTest])
def test_pairs_share_exactly_the_stated_factor(cls, make_config):
    pairs = cls(sprites_config(make_config, pairs=True, pair_factors=list(PARTS)))
    assert (pairs.n_factors, pairs.residual_index) == (5, 4)
    seen = set()
    for i in range(len(pairs) // 4 * 4)[::4]:
        example = pairs[i]
        factor = example["factor"]
        seen.add(factor)
        shared = PARTS[pairs.factor_names[factor]]
        for name in ("shape", "color", "x", "y", "scale"):
            same = example[f"{name}1"] == example[f"{name}2"]
            assert same == (name in shared) or (name in ("shape", "color") and same)  # discrete may coincide
        assert example["class1"] == example["shape1"] and example["class2"] == example["shape2"]
        np.testing.assert_array_equal(example["image1"], pairs.arrays.images[i] / np.float32(127.5) - 1)
        assert example["image2"].shape == (32, 32, 3) and example["image2"].dtype == np.float32
    assert seen == {0, 1, 2, 3}  # the residual is never the shared factor


def test_evaluation_pairs_are_fixed_training_pairs_are_redrawn(make_config):
    config = sprites_config(make_config, pairs=True)
    test, validation = SpritesPairsTest(config), SpritesPairsValidation(config)
    for data in (test, validation):
        first, second = data[5], data[5]
        assert first["factor"] == second["factor"] and np.array_equal(first["image2"], second["image2"])
    assert SpritesPairsTest(config)[5]["x2"] == test[5]["x2"]  # also across constructions
    train = SpritesPairsTrain(config)
    assert len({train[5]["x2"] for _ in range(5)}) == 5


def test_unknown_pair_factor_is_reported(make_config):
    with pytest.raises(ConfigError, match="pair_factors"):
        SpritesPairsTest(sprites_config(make_config, pairs=True, pair_factors=["shape", "hue"]))


def test_unknown_dataset_param_names_the_nearest_key(make_config):
    with pytest.raises(ConfigError, match="n_train"):
        SpritesTrain(sprites_config(make_config, n_trian=10))


def test_the_first_of_a_pair_is_a_single_image_example(make_config):
    from invproto.data.pairs import first_of_pair, is_pair_example

    pairs = SpritesPairsValidation(sprites_config(make_config, pairs=True))
    example = pairs.get_example(2)
    assert is_pair_example(example) and not is_pair_example(first_of_pair(example))
    first = first_of_pair(example)
    assert first["image"] is example["image1"] and first["class"] == example["class1"]
    assert first["factor"] == example["factor"] and not any(key.endswith("2") for key in first)
    single = SpritesValidation(sprites_config(make_config)).get_example(2)
    assert set(single) <= set(first)
