"""Whole-batch iteration (invproto.data.batches) as edflow's make_batches."""

import numpy as np
import pytest
from edflow.iterators.batches import deep_lod2dol, make_batches

from invproto.data import MNISTValidation, SpritesValidation
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


def test_datasets_with_own_examples_keep_edflow_batching(make_config):
    config = make_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                         dataset_params={"n_train": 10, "n_validation": 10, "n_test": 10})
    sprites = SpritesValidation(config)
    assert sprites.get_batch is None  # Sprites adds factor keys in get_example
    batches = make_batches(sprites, batch_size=4, shuffle=False, n_processes=0)
    try:
        assert not isinstance(batches, ArrayBatches)
        assert set(next(batches)) >= {"image", "class", "shape", "color", "index_"}
    finally:
        batches.finalize()
