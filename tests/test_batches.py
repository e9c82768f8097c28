"""Whole-batch iteration (invproto.data.batches) as edflow's make_batches."""

import numpy as np
import pytest
from edflow.iterators.batches import deep_lod2dol, make_batches

from invproto.data import MNISTValidation, SpritesPairsValidation, SpritesValidation
from invproto.data.batches import ArrayBatches


@pytest.fixture(scope="module")
def mnist(shared_data, make_config):
    config = make_config("invproto.data.MNISTTrain", "invproto.data.MNISTValidation",
                         data={"root": str(shared_data), "validation_size": 300})
    return MNISTValidation(config)


def test_get_batch_equals_stacked_examples(mnist):
    indices = np.array([5, 0, 299, 17])
    expected = deep_lod2dol([mnist.get_example(int(i)) for i in indices])
    batch = mnist.get_batch(indices)
    np.testing.assert_array_equal(batch["image"], expected["image"])
    np.testing.assert_array_equal(batch["class"], expected["class"])


def test_epoch_visits_every_example_once(mnist):
    np.random.seed(0)
    batches = make_batches(mnist, batch_size=128, shuffle=True, n_processes=2)
    assert isinstance(batches, ArrayBatches) and len(batches) == 3
    seen = []
    for step in range(len(batches)):
        assert not batches.is_new_epoch
        batch = next(batches)
        seen.extend(batch["index_"])
        np.testing.assert_array_equal(batch["class"], mnist.arrays.labels[batch["index_"]])
    assert batches.is_new_epoch and sorted(seen) == list(range(300))
    assert [len(i) for i in np.split(np.array(seen), [128, 256])] == [128, 128, 44]
    second = next(batches)["index_"]
    assert not batches.is_new_epoch and len(second) == 128


def test_shuffle_follows_numpy_seed(mnist):
    orders = []
    for seed in (1, 1, 2):
        np.random.seed(seed)
        orders.append(next(make_batches(mnist, batch_size=32, shuffle=True))["index_"])
    np.testing.assert_array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[0], orders[2])
    unshuffled = next(make_batches(mnist, batch_size=32, shuffle=False))["index_"]
    np.testing.assert_array_equal(unshuffled, np.arange(32))


def test_examples_and_batches_agree_or_fall_back_to_edflow(make_config):
    config = make_config("invproto.data.SpritesPairsTrain", "invproto.data.SpritesPairsValidation",
                         dataset_params={"n_train": 10, "n_validation": 10, "n_test": 10})
    sprites = SpritesValidation(config)
    indices = np.array([3, 1, 7])
    expected = deep_lod2dol([sprites.get_example(int(i)) for i in indices])
    batch = sprites.get_batch(indices)
    assert set(batch) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(batch[key], expected[key])
    pairs = SpritesPairsValidation(config)  # pair examples are built in get_example
    assert pairs.get_batch is None
    batches = make_batches(pairs, batch_size=4, shuffle=False, n_processes=0)
    try:
        assert not isinstance(batches, ArrayBatches)
        assert set(next(batches)) >= {"image1", "image2", "factor", "index_"}
    finally:
        batches.finalize()
