"""ImagePrototypeFlow: the density it assembles, its bits/dim convention, decoding, configs, and a
real train + evaluate run through the edflow CLI on Sprites."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from test_image_flow import autograd_log_det, randomize

from invproto.config.validation import validate_run_config
from invproto.errors import ConfigError, InvprotoError
from invproto.losses.protoflow import bits_per_dim, marginal_log_likelihood
from invproto.models.protoflow_image import ImagePrototypeFlow

REPO = Path(__file__).resolve().parents[1]
LOG_TWO_PI = math.log(2 * math.pi)


def tiny_model(**params) -> ImagePrototypeFlow:
    return ImagePrototypeFlow.from_params(**{"n_classes": 3, "protos_per_class": 2, "in_channels": 1, "in_size": 4,
                                             "n_levels": 2, "steps_per_level": 2, "hidden_channels": 8, **params})


def images_from_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """8-bit values -> the datasets' [-1, 1] images."""
    return pixels.float() / 127.5 - 1


def test_untrained_flow_with_a_standard_normal_head_gives_the_hand_computed_bits_per_dim():
    """Eval mode: the couplings start as the identity, ActNorm is not initialised (the identity), each
    1x1 convolution is a rotation and the squeezes/splits permute, so with every prototype N(0, I) the
    latent density is log N(v; 0, I) with v = (u8 + 1/2) / 256 - 1/2, and on the 8-bit scale
    bits/dim = 8 + mean_i (v_i^2 / 2 + log(2 pi) / 2) / ln 2."""
    model = tiny_model().eval()
    with torch.no_grad():
        model.head.means.zero_()
        model.head.log_var.zero_()
    pixels = torch.tensor([[0, 255, 127, 128], [1, 2, 3, 250], [64, 64, 64, 64], [200, 100, 50, 25]]).view(1, 1, 4, 4)
    pixels = torch.cat([pixels, torch.full_like(pixels, 127)])
    with torch.no_grad():
        class_log_likelihood, _ = model.class_log_likelihood(images_from_pixels(pixels))
        bpd = bits_per_dim(marginal_log_likelihood(class_log_likelihood), model.data_dims)
    v = (pixels.double() + 0.5) / 256 - 0.5
    expected = 8 + (0.5 * v.square() + 0.5 * LOG_TWO_PI).flatten(1).mean(1) / math.log(2)
    assert torch.allclose(bpd.double(), expected, atol=1e-5), (bpd, expected)
    expected_bits = 8 + (0.5 * (0.5 / 256) ** 2 + 0.5 * LOG_TWO_PI) / math.log(2)
    assert math.isclose(float(expected[1]), expected_bits, rel_tol=1e-12)


def test_class_log_likelihood_is_the_change_of_variables_density_on_the_8_bit_scale():
    """log p(x | c) = log p_head(z | c) + log N(factored; 0, I) + log|det d(z, factored)/dv| - D log 256,
    the Jacobian by autograd (a randomised flow, float64, eval mode)."""
    model = randomize(tiny_model(), scale=0.1)
    pixels = torch.randint(0, 256, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    images = images_from_pixels(pixels).double()
    class_log_likelihood, _ = model.class_log_likelihood(images)
    v = (pixels.double() + 0.5) / 256 - 0.5
    z, factored, _ = model.flow(v)
    normal = torch.distributions.Normal(0.0, 1.0)

    def latent_and_factored(x):
        latent, parts, _ = model.flow(x)
        return torch.cat([latent.flatten()] + [part.flatten() for part in parts])

    for i in range(2):
        expected = (model.head.class_log_prob(z[i:i + 1])[0] + normal.log_prob(factored[0][i]).sum()
                    + autograd_log_det(latent_and_factored, v[i:i + 1]) - 16 * math.log(256))
        assert torch.allclose(class_log_likelihood[i], expected, atol=1e-8)


def test_latent_is_deterministic_at_eval_and_dequantized_in_training():
    model = tiny_model()
    images = images_from_pixels(torch.randint(0, 256, (4, 1, 4, 4)))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.latent(images)[0], model.latent(images)[0])
        model.train()
        assert not torch.equal(model.latent(images)[0], model.latent(images)[0])


def test_decode_inverts_latent_at_eval_with_the_factored_parts_at_zero():
    images = images_from_pixels(torch.randint(0, 256, (3, 1, 4, 4), generator=torch.Generator().manual_seed(1)))
    single_level = randomize(tiny_model(n_levels=1), scale=0.05).float()
    with torch.no_grad():
        assert torch.allclose(single_level.decode(single_level.latent(images)[0]), images, atol=1e-5)
        model = randomize(tiny_model(), scale=0.05).float()
        z, _ = model.latent(images)
        v = model.flow.inverse(z, [torch.zeros(3, 2, 2, 2)])
        assert torch.allclose(model.decode(z), (((v + 0.5) * 256 - 0.5) / 127.5 - 1).clamp(-1, 1), atol=1e-6)
        prototypes = model.prototype_images()
    assert prototypes.shape == (6, 1, 4, 4) and prototypes.min() >= -1 and prototypes.max() <= 1


def test_latent_size_and_data_dims():
    model = ImagePrototypeFlow.from_params(in_channels=1, in_size=28, n_levels=2, steps_per_level=1,
                                           hidden_channels=4)
    assert model.data_dims == 784 and model.head.dim == 392 and model.prototype_class.tolist()[:6] == [0] * 5 + [1]


def test_an_impossible_squeeze_and_images_of_another_shape_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="in_size 28 is not divisible by 2\\*\\*n_levels = 8"):
        ImagePrototypeFlow.from_params(in_size=28, n_levels=3)
    with pytest.raises(InvprotoError, match=r"images are \(3, 4, 4\) .* in_channels=1, in_size=4; set them"):
        tiny_model().latent(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("name", ["mnist_protoflow_image", "fashionmnist_protoflow_image",
                                  "sprites_protoflow_image"])
def test_configs_pass_validation_and_build(name):
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    validate_run_config(config)
    model = ImagePrototypeFlow(config)
    assert model.data_dims == config["model_params"]["in_channels"] * config["model_params"]["in_size"] ** 2


@pytest.mark.slow
def test_sprites_image_protoflow_trains_and_evaluates_through_edflow(tmp_path):
    """A few steps of configs/sprites_protoflow_image.yaml (-t), then edflow -p on its saved config."""
    from edflow_runner import EdflowRunner

    runner = EdflowRunner(tmp_path)
    result = runner("-b", "configs/sprites_protoflow_image.yaml", "-t", "--dataset_params/n_train", "256",
                    "--dataset_params/n_validation", "64", "--batch_size", "32", "--num_steps", "6",
                    "--log_freq", "3", "--n_data_processes", "1", "--iterator_params/kmeans_batches", "4",
                    "--iterator_params/nearest_pool", "64", "--model_params/hidden_channels", "8", "-n", "pf")
    assert result.returncode == 0, result.stderr[-3000:]
    run = runner.run_dir("pf")
    assert {p.name for p in (run / "prototypes").glob("step-*/*.png")} == {"means.png", "samples.png",
                                                                           "nearest.png"}
    result = runner("-p", str(runner.train_config(run)))
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = yaml.safe_load((run / "results" / "scores.yaml").read_text())["evaluations"][-1]
    assert evaluation["step"] == 6 and evaluation["dataset"] == "invproto.data.SpritesValidation"
    assert 0 <= evaluation["accuracy"] <= 1 and math.isfinite(evaluation["ece"])
    # the standard 8-bit bits/dim: below 8 (the uniform density) already, far above 0
    assert 1 < evaluation["bits_per_dim"] < 8, evaluation
