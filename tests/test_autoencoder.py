"""The autoencoder: model shapes, posterior maths, calibrated GAN weight, training and checkpoint state.

The iterator tests build :class:`AutoencoderIterator` in-process (tiny model,
no data loading) in a scratch edflow run directory.
"""

from __future__ import annotations

import glob

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from conftest import REPO
from torch.distributions import Normal, kl_divergence

from invproto.config import validate_run_config
from invproto.losses.autoencoder import CALIBRATION_MAX, calibrated_weight
from invproto.models.autoencoder import Autoencoder
from invproto.modules.gaussian import LOGVAR_MAX, LOGVAR_MIN, DiagonalGaussian


@pytest.mark.parametrize("in_size, n_down", [(28, 3), (32, 4), (64, 4)])
@pytest.mark.parametrize("channels", [1, 3])
def test_decoder_reproduces_the_input_shape_in_tanh_range(in_size, n_down, channels):
    model = Autoencoder.from_params(in_channels=channels, in_size=in_size, n_down=n_down, base_channels=4, z_dim=8)
    images = torch.rand(2, channels, in_size, in_size) * 2 - 1
    posterior = model.encode(images)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 8)
    decoded = model.decode(posterior.sample())
    assert decoded.shape == images.shape
    assert decoded.abs().max() <= 1.0
    assert model.last_layer_weight.shape[1] == channels  # ConvTranspose weight: (in, out, k, k)


def test_kl_of_diagonal_gaussian_is_the_closed_form():
    torch.manual_seed(0)
    mean, logvar = torch.randn(5, 6), torch.randn(5, 6)
    posterior = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(posterior.kl(), expected)
    assert torch.equal(posterior.mode(), mean)
    assert DiagonalGaussian(torch.zeros(3, 8)).kl().abs().max() == 0  # N(0, I) itself


def test_logvar_is_clamped():
    parameters = torch.tensor([[0.0, 0.0, 100.0, -100.0]])
    posterior = DiagonalGaussian(parameters)
    assert posterior.logvar.tolist() == [[LOGVAR_MAX, LOGVAR_MIN]]
    assert torch.isfinite(posterior.sample()).all() and torch.isfinite(posterior.kl()).all()


def test_calibrated_weight_is_the_gradient_norm_ratio_at_the_last_layer():
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 6))
    critic = nn.Linear(6, 1)
    z, target = torch.randn(3, 4), torch.randn(3, 6)
    last = decoder[2].weight

    def losses():
        out = decoder(z)
        return (out - target).abs().sum(), -critic(out).mean()

    nll, g = losses()
    weight = calibrated_weight(nll, g, last)
    expected = []
    for index in range(2):  # independently: one fresh graph and backward pass per loss
        decoder.zero_grad()
        losses()[index].backward()
        expected.append(last.grad.norm())
    assert weight.requires_grad is False
    torch.testing.assert_close(weight, expected[0] / (expected[1] + 1e-4))
    (nll + weight * g).backward()  # the graph survives the calibration

    nll, _ = losses()
    no_gradient = 0 * last.sum()  # ratio ‖∇nll‖ / 1e-4 > 1e4: clamped
    assert calibrated_weight(nll, no_gradient, last).item() == CALIBRATION_MAX


# --- the iterator ---------------------------------------------------------------------------------


def ae_config(**loss_params) -> dict:
    return {
        "model": "invproto.models.autoencoder.Autoencoder",
        "iterator": "invproto.iterators.autoencoder.AutoencoderIterator",
        "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
        "batch_size": 4, "num_steps": 10, "seed": 0,
        "model_params": {"in_channels": 3, "in_size": 32, "n_down": 4, "base_channels": 4, "z_dim": 8},
        "iterator_params": {"discriminator_lr_multiple": 4.0, "n_log_images": 3},
        "loss": {"target": "invproto.losses.autoencoder.AutoencoderLoss",
                 "params": {"disc_start": 5, "disc_channels": 4, **loss_params}},
    }


@pytest.fixture
def make_iterator(tmp_path, monkeypatch):
    """Build ``AutoencoderIterator``s in a scratch edflow run (environment restored afterwards)."""
    from edflow.custom_logging import run

    from invproto.iterators.autoencoder import AutoencoderIterator

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="ae_unit")
    validation = [{"image": np.full((32, 32, 3), v, np.float32)} for v in np.linspace(-1, 1, 5)]

    def make(config: dict) -> AutoencoderIterator:
        torch.manual_seed(0)
        return AutoencoderIterator(config, run.root, Autoencoder(config), num_epochs=1, hook_freq=1,
                                   datasets={"train": validation, "validation": validation})

    return make


def batch(n: int = 4) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {"image": torch.rand(n, 3, 32, 32, generator=generator) * 2 - 1, "index_": torch.arange(n)}


def parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


def train(iterator, step: int) -> dict[str, float]:
    """One training step as the base class's ``train_op`` does it."""
    iterator.set_global_step(step)
    iterator.model.train()
    loss, scalars = iterator.train_step(batch())
    iterator.optimize(loss)
    return scalars


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_one_training_step_updates_autoencoder_and_discriminator(make_iterator, spectral_norm):
    iterator = make_iterator(ae_config(spectral_norm=spectral_norm))
    ae, d = parameters(iterator.model), parameters(iterator.loss.discriminator)

    scalars = train(iterator, step=4)  # before disc_start
    assert changed(ae, iterator.model) and not changed(d, iterator.loss.discriminator)
    assert "d_loss" not in scalars and "g_loss" not in scalars

    ae = parameters(iterator.model)
    scalars = train(iterator, step=5)
    assert changed(ae, iterator.model) and changed(d, iterator.loss.discriminator)
    assert {"d_loss", "g_loss", "gan_weight", "nll", "kl"} <= set(scalars)
    assert all(np.isfinite(v) for v in scalars.values())
    assert iterator.d_optimizer.param_groups[0]["lr"] == pytest.approx(4.0 * iterator.schedule.get_last_lr()[0])


def test_generator_term_leaves_no_gradient_on_the_discriminator(make_iterator):
    iterator = make_iterator(ae_config(disc_start=0))
    iterator.set_global_step(0)
    loss, _ = iterator.train_step(batch())
    grads = [p.grad.clone() for p in iterator.loss.discriminator.parameters()]  # from the D step
    loss.backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, iterator.loss.discriminator.parameters()))


def test_checkpoint_round_trips_the_discriminator_and_its_optimizer(make_iterator, tmp_path):
    iterator = make_iterator(ae_config())
    train(iterator, step=6)
    path = tmp_path / "model.ckpt"
    iterator.save(str(path))

    restored = make_iterator(ae_config())
    assert changed(parameters(restored.loss.discriminator), iterator.loss.discriminator)
    restored.restore(str(path))
    for name, value in iterator.loss.state_dict().items():
        assert torch.equal(value, restored.loss.state_dict()[name]), name
    saved, loaded = iterator.d_optimizer.state_dict(), restored.d_optimizer.state_dict()
    assert saved["state"].keys() == loaded["state"].keys() and len(saved["state"]) > 0
    for index, state in saved["state"].items():
        assert torch.equal(state["exp_avg"], loaded["state"][index]["exp_avg"])

    without_d = make_iterator(ae_config(discriminator=False))
    assert "discriminator_optimizer" not in without_d.checkpoint_state()


def test_learned_logvar_is_trained_and_round_trips_through_checkpoints(make_iterator, tmp_path):
    fixed = make_iterator(ae_config(discriminator=False))
    train(fixed, step=0)
    assert fixed.loss.logvar.item() == 0.0  # off by default: the plain L1 sum

    iterator = make_iterator(ae_config(discriminator=False, learn_logvar=True))
    scalars = train(iterator, step=0)
    assert iterator.loss.logvar.item() != 0.0 and scalars["logvar"] == 0.0  # logged before the step
    path = tmp_path / "model.ckpt"
    iterator.save(str(path))
    restored = make_iterator(ae_config(discriminator=False, learn_logvar=True))
    restored.restore(str(path))
    assert restored.loss.logvar.item() == iterator.loss.logvar.item()


# --- the perceptual term ----------------------------------------------------------------------


@pytest.fixture
def feature_network(tmp_path) -> dict:
    """A small invproto classifier saved as a checkpoint: the perceptual term's feature network."""
    from invproto.io import atomic_torch_save
    from invproto.models.classifier import Classifier

    params = {"in_channels": 3, "in_size": 32, "n_classes": 5, "n_down": 3, "base_channels": 4, "code_dim": 8}
    torch.manual_seed(3)
    model = Classifier.from_params(**params)
    path = tmp_path / "classifier.ckpt"
    atomic_torch_save({"model": model.state_dict(), "describe": model.describe()}, str(path))
    return {"model": "invproto.models.classifier.Classifier", "model_params": params, "checkpoint": str(path)}


def test_perceptual_distance_is_zero_on_equal_images_and_frozen(feature_network):
    from invproto.losses.perceptual import EncoderPerceptualDistance
    from invproto.models.iin import FirstStageParams

    distance = EncoderPerceptualDistance(FirstStageParams(**feature_network)).train()
    x, y = batch(4)["image"], (batch(4)["image"] * 0.5).requires_grad_(True)
    assert torch.allclose(distance(x, x), torch.zeros(4), atol=1e-6)
    d = distance(x, y)
    assert d.shape == (4,) and bool((d > 0).all())
    assert torch.allclose(d, distance(y, x))
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in distance.parameters())
    assert not distance.stages.training  # stays in eval mode


def test_perceptual_term_is_added_per_pixel_as_in_the_reference(feature_network):
    from invproto.losses.autoencoder import AutoencoderLoss

    loss = AutoencoderLoss(3, discriminator=False, perceptual_weight=0.5, perceptual=feature_network)
    plain = AutoencoderLoss(3, discriminator=False)
    x, x_hat = batch(2)["image"], batch(2)["image"].flip(0)
    posterior = DiagonalGaussian(torch.zeros(2, 16))
    last = torch.zeros(1, requires_grad=True)
    total, scalars = loss.autoencoder_loss(x, x_hat, posterior, last, step=0)
    l1, _ = plain.autoencoder_loss(x, x_hat, posterior, last, step=0)
    pixels = 3 * 32 * 32
    expected = l1 + 0.5 * pixels * loss.perceptual(x, x_hat).mean()
    assert torch.allclose(total, expected, rtol=1e-5)
    assert scalars["perceptual"] > 0


def test_perceptual_weight_without_a_network_is_a_config_error():
    from invproto.config.validation import ConfigError
    from invproto.losses.autoencoder import AutoencoderLoss

    with pytest.raises(ConfigError, match="loss.params.perceptual"):
        AutoencoderLoss(3, perceptual_weight=1.0)


def test_eval_step_stores_uint8_images_and_reproducible_samples(make_iterator):
    iterator = make_iterator(ae_config())
    iterator.model.eval()
    with torch.inference_mode():
        first = iterator.eval_step(batch(4))
        shuffled = {"image": batch(4)["image"][[2, 0]], "index_": torch.tensor([2, 0])}
        second = iterator.eval_step(shuffled)
        logs = iterator.log_step(batch(4))
    assert first["reconstruction"].dtype == first["sample"].dtype == np.uint8
    assert first["reconstruction"].shape == first["sample"].shape == (4, 32, 32, 3)
    assert first["kl"].shape == first["l1"].shape == (4,)
    np.testing.assert_array_equal(second["sample"], first["sample"][[2, 0]])  # seeded by example index
    assert not np.array_equal(first["sample"][0], first["sample"][1])
    images = logs["images"]
    assert images["samples"].shape == images["fixed_reconstructions"].shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(images["fixed_inputs"][1], np.full((32, 32, 3), -0.5, np.float32))


AUTOENCODER = "invproto.models.autoencoder.Autoencoder"
AUTOENCODER_CONFIGS = sorted(path for path in glob.glob(str(REPO / "configs" / "*.yaml"))
                             if (yaml.safe_load(open(path)) or {}).get("model") == AUTOENCODER)


@pytest.mark.parametrize("path", AUTOENCODER_CONFIGS)
def test_autoencoder_configs_are_valid(path):
    config = validate_run_config(yaml.safe_load(open(path)))
    assert config.model == "invproto.models.autoencoder.Autoencoder"
    assert config.eval_pipeline.callback_kwargs.fid_samples.n_images > 0


def test_autoencoder_configs_exist():
    names = {p.split("/")[-1] for p in AUTOENCODER_CONFIGS}
    assert names == {f"{d}_ae.yaml" for d in ("mnist", "fashionmnist", "cifar", "celeba", "cmnist")} | {
        "mnist_ae_cpu.yaml", "mnist_ae_cpu32.yaml", "sprites_ae_cpu.yaml"}
