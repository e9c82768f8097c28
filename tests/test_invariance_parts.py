"""Building blocks of the invariance view: FGSM and its control, representation distances, row grids,
Sprites label choices and the autoencoder's squared pixel loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from conftest import REPO

from invproto.errors import ConfigError
from invproto.interpret.attacks import fgsm, random_sign
from invproto.interpret.invariance_metrics import cosine, relative_error
from invproto.pictures import grid_rows, per_example_normal, standard_normal


def linear_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_fgsm_moves_every_pixel_by_epsilon_up_the_loss_and_stays_in_range():
    net = linear_classifier()
    images = torch.rand(6, 3, 4, 4) * 1.6 - 0.8  # away from the clamp
    labels = torch.arange(6) % 5
    attacked = fgsm(net, images, labels, 0.05)
    assert torch.allclose((attacked - images).abs(), torch.full_like(images, 0.05), atol=1e-6)
    # the sign of the gradient of a linear model: its weight row of the true class, against the others
    inputs = images.clone().requires_grad_(True)
    F.cross_entropy(net(inputs), labels).backward()
    assert torch.equal(torch.sign(attacked - images), torch.sign(inputs.grad))
    assert F.cross_entropy(net(attacked), labels) > F.cross_entropy(net(images), labels)
    assert fgsm(net, torch.ones(2, 3, 4, 4), labels[:2], 0.5).max() <= 1


def test_fgsm_works_inside_inference_mode():
    net = linear_classifier()
    images, labels = torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])
    with torch.inference_mode():
        attacked = fgsm(net, images, labels, 0.1)
    assert attacked.abs().max() == pytest.approx(0.1)


def test_random_sign_has_the_same_size_is_seeded_and_not_fgsm():
    images = torch.zeros(3, 3, 4, 4)
    control = random_sign(images, 0.1, seed=3)
    assert torch.allclose(control.abs(), torch.full_like(images, 0.1))
    assert torch.equal(control, random_sign(images, 0.1, seed=3))
    assert not torch.equal(control, random_sign(images, 0.1, seed=4))
    assert 0.3 < (control > 0).float().mean() < 0.7


def test_per_example_noise_depends_only_on_seed_and_index():
    draws = per_example_normal(torch.tensor([4, 7, 9]), 5, seed=2, n_samples=3)
    assert draws.shape == (9, 5)
    torch.testing.assert_close(draws[3:6], per_example_normal([7], 5, seed=2, n_samples=3))  # batch independent
    torch.testing.assert_close(per_example_normal([7], 5, seed=2)[0], standard_normal((5,), 2, 7))
    assert not torch.equal(draws[0:3], draws[3:6])
    assert not torch.equal(draws, per_example_normal(torch.tensor([4, 7, 9]), 5, seed=3, n_samples=3))


def test_representation_distances():
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert torch.allclose(relative_error(a, a), torch.zeros(2))
    assert torch.allclose(relative_error(a, 2 * a), torch.ones(2))
    assert torch.allclose(relative_error(a, torch.zeros_like(a)), torch.ones(2))
    assert torch.allclose(cosine(a, 5 * a), torch.ones(2))
    assert torch.allclose(cosine(a, -a), -torch.ones(2))
    maps = torch.randn(4, 2, 3, 3)
    assert torch.allclose(relative_error(maps, maps.flip(0)), relative_error(maps.flatten(1), maps.flip(0).flatten(1)))


def test_grid_rows_keep_each_input_with_its_outputs():
    first = torch.full((3, 1, 2, 2), -1.0) + torch.arange(3.0)[:, None, None, None] * 0.5  # row marker
    second = first + 0.25
    grid = grid_rows([first, second, second])
    assert grid.shape == (1, 3, 3 * 3 + 1, 3 * 3 + 1)  # 3 rows x 3 columns of 2 px + 1 px padding
    for row in range(3):
        top = 1 + row * 3
        assert grid[0, 0, top, 1] == first[row, 0, 0, 0]  # column 0 of row `row`: input `row`
        assert grid[0, 0, top, 4] == second[row, 0, 0, 0]
        assert grid[0, 0, top, 7] == second[row, 0, 0, 0]


def sprites_config(**dataset_params) -> dict:
    config = yaml.safe_load((REPO / "configs" / "sprites_clf.yaml").read_text())
    config["dataset_params"].update(n_train=60, n_validation=10, n_test=10, **dataset_params)
    return config


@pytest.mark.parametrize("label, n_classes", [("shape", 5), ("color", 6), ("shape_color", 30)])
def test_sprites_class_label_is_configurable(label, n_classes):
    from invproto.data import SpritesPairsTrain, SpritesTrain

    config = sprites_config(label=label)
    config["model_params"]["n_classes"] = n_classes
    data = SpritesTrain(config)
    batch = data.get_batch(np.arange(len(data)))
    expected = {"shape": batch["shape"], "color": batch["color"],
                "shape_color": batch["shape"] * 6 + batch["color"]}[label]
    assert np.array_equal(batch["class"], expected) and data.num_classes == n_classes
    pairs = SpritesPairsTrain(config)
    _, partner = pairs.pair(0, 0, np.random.default_rng(0))
    assert partner["class"] == {"shape": partner["shape"], "color": partner["color"],
                                "shape_color": partner["shape"] * 6 + partner["color"]}[label]


def test_unknown_sprites_label_is_a_config_error():
    from invproto.data import SpritesTrain

    with pytest.raises(ConfigError, match="dataset_params.label"):
        SpritesTrain(sprites_config(label="size"))


def test_squared_pixel_loss_and_its_choices():
    from invproto.losses.autoencoder import AutoencoderLoss
    from invproto.modules.gaussian import DiagonalGaussian

    inputs, reconstructions = torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.5)
    posterior = DiagonalGaussian(torch.zeros(2, 4))
    last = nn.Parameter(torch.ones(1))
    for pixel_loss, per_pixel in (("l1", 0.5), ("l2", 0.25)):
        loss = AutoencoderLoss(1, pixel_loss=pixel_loss, discriminator=False)
        _, scalars = loss.autoencoder_loss(inputs, reconstructions, posterior, last, step=0)
        assert float(scalars["nll"]) == pytest.approx(4 * per_pixel)
    with pytest.raises(ConfigError, match="pixel_loss"):
        AutoencoderLoss(1, pixel_loss="l3")


def test_sprite_colours_are_read_exactly_from_rendered_pixels():
    from invproto.data import SpritesTrain
    from invproto.data.synthetic import read_colours

    config = sprites_config()
    config["dataset_params"].update(n_train=600)
    data = SpritesTrain(config)
    batch = data.get_batch(np.arange(len(data)))
    assert np.array_equal(read_colours(batch["image"]), batch["color"])
    darker = (batch["image"] + 1) * 0.6 - 1  # a dimmer decoder keeps the hue
    assert np.array_equal(read_colours(darker), batch["color"])


def test_random_blur_gives_each_image_its_own_gaussian():
    from invproto.data.augment import random_blur

    images = torch.zeros(64, 3, 15, 15)
    images[:, :, 7, 7] = 1.0  # one bright pixel: its blurred image is the kernel itself
    blurred = random_blur(images, 1.5, generator=torch.Generator().manual_seed(0))
    assert blurred.shape == images.shape
    torch.testing.assert_close(blurred.sum((2, 3)), torch.ones(64, 3))  # normalised kernels, no light lost
    torch.testing.assert_close(blurred[:, 0], blurred[:, 2])  # one width per image, the same in every channel
    peaks = blurred[:, 0, 7, 7]
    # widths spread over [0, 1.5] (below ~0.25 px the kernel is a delta)
    assert peaks.max() > 0.5 and peaks.min() < 0.1 and peaks.unique().numel() > 48
    # the width that the draw gave the first image, recovered from the profile: exp(-1 / (2 sigma^2)) ratio
    sigma = float(torch.rand(64, generator=torch.Generator().manual_seed(0))[0] * 1.5)
    profile = blurred[0, 0, 7]
    if sigma > 0.3:
        assert float(profile[8] / profile[7]) == pytest.approx(float(np.exp(-0.5 / sigma ** 2)), rel=1e-4)
    assert torch.equal(random_blur(images, 0.0), images)
    torch.testing.assert_close(random_blur(images, 1e-7), images)  # width 0: a delta
