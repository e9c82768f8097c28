"""The training step of the iterator base: no host reads outside log steps, the ``performance`` options,
and a diverged state that is never saved."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import invproto
from invproto.config.targets import get_obj_from_str
from invproto.errors import InvprotoError

PACKAGE = str(Path(invproto.__file__).parent)
HOST_READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__")

CLASSIFIER = {
    "model": "invproto.models.classifier.Classifier",
    "iterator": "invproto.iterators.classifier.ClassifierIterator",
    "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
    "batch_size": 8, "num_steps": 20, "seed": 0,
    "model_params": {"in_channels": 3, "in_size": 16, "n_classes": 5, "n_down": 2, "base_channels": 8,
                     "code_dim": 16},
    "optimizer": {"lr": 1.0e-3, "grad_clip_norm": 1.0},
}
AUTOENCODER = {  # discriminator and calibrated GAN weight active from the first step
    "model": "invproto.models.autoencoder.Autoencoder",
    "iterator": "invproto.iterators.autoencoder.AutoencoderIterator",
    "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
    "batch_size": 4, "num_steps": 20, "seed": 0,
    "model_params": {"in_channels": 3, "in_size": 32, "n_down": 4, "base_channels": 4, "z_dim": 8},
    "loss": {"target": "invproto.losses.autoencoder.AutoencoderLoss",
             "params": {"disc_start": 0, "disc_channels": 4, "learn_logvar": True}},
}


@contextlib.contextmanager
def counting_host_reads():
    """Count calls that read a tensor's value to the host (``item``, ``float()``, ``bool()``, ``.cpu()``, ...)
    made by invproto's own code: on CUDA each one waits for the device.

    Yields a list; each read appends ``(method, file:line)``.
    """
    reads: list[tuple[str, str]] = []
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counted(name, original):
        def read(self, *args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(PACKAGE):
                reads.append((name, f"{caller.f_code.co_filename}:{caller.f_lineno}"))
            return original(self, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counted(name, original))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.fixture
def build(tmp_path, monkeypatch):
    """Build a config's iterator in a scratch edflow run; batches come from the test."""
    from edflow.custom_logging import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="step_unit")

    def make(config: dict):
        torch.manual_seed(0)
        model = get_obj_from_str(config["model"])(config)
        size, channels = config["model_params"].get("in_size", 16), config["model_params"].get("in_channels", 3)
        validation = [{"image": np.zeros((size, size, channels), np.float32)}] * 4
        return get_obj_from_str(config["iterator"])(config, run.root, model, num_epochs=1, hook_freq=1,
                                                    datasets={"train": [], "validation": validation})

    return make


def batches(config: dict, n: int) -> list[dict[str, np.ndarray]]:
    """``n`` random batches as edflow hands them to ``step_op``: NHWC float images in [-1, 1], labels, indices."""
    generator = np.random.default_rng(0)
    size, channels = config["model_params"]["in_size"], config["model_params"]["in_channels"]
    return [{"image": generator.uniform(-1, 1, (config["batch_size"], size, size, channels)).astype(np.float32),
             "class": generator.integers(0, 5, config["batch_size"]),
             "index_": np.arange(config["batch_size"])} for _ in range(n)]


def train(iterator, data: list[dict], first_step: int = 0) -> None:
    """``train_op`` on each batch, as edflow runs it, at global steps ``first_step, first_step + 1, ...``."""
    for i, batch in enumerate(data):
        iterator.set_global_step(first_step + i)
        iterator.step_op(iterator.model, **batch)["train_op"]()


@pytest.mark.parametrize("config", [CLASSIFIER, AUTOENCODER], ids=["classifier", "autoencoder_gan"])
def test_training_steps_read_nothing_back_outside_log_steps(build, config):
    iterator = build(config)
    data = batches(config, 4)
    train(iterator, data[:1])  # the first step initialises ActNorm from its batch (one read, by design)
    with counting_host_reads() as reads:
        ops = [iterator.step_op(iterator.model, **batch) for batch in data[1:]]
        for step, op in enumerate(ops, start=1):
            iterator.set_global_step(step)
            op["train_op"]()
    assert reads == []
    with counting_host_reads() as reads:  # the counter sees reads: a log step turns scalars into floats
        logs = ops[-1]["log_op"]()
    assert reads and all(isinstance(v, float) for v in logs["scalars"].values())
    assert {"loss", "lr"} <= set(logs["scalars"])


def test_iin_training_step_reads_nothing_back(build, tmp_path):
    from invproto.models.autoencoder import Autoencoder

    first_stage = {"in_channels": 3, "in_size": 16, "n_down": 3, "base_channels": 4, "z_dim": 8}
    autoencoder = Autoencoder.from_params(**first_stage)
    torch.save({"model": autoencoder.state_dict(), "describe": autoencoder.describe()}, tmp_path / "ae.ckpt")
    config = {"model": "invproto.models.iin.IIN", "iterator": "invproto.iterators.iin.IINIterator",
              "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
              "batch_size": 8, "num_steps": 20, "seed": 0,
              "model_params": {"first_stage": {"model": "invproto.models.autoencoder.Autoencoder",
                                               "model_params": first_stage, "checkpoint": str(tmp_path / "ae.ckpt")},
                               "n_flow": 2, "hidden_dim": 16}}
    iterator = build(config)
    data = batches({**config, "model_params": {"in_size": 16, "in_channels": 3}}, 3)
    train(iterator, data[:1])
    with counting_host_reads() as reads:
        train(iterator, data[1:], first_step=1)
    assert reads == []


def losses_with(build, performance: dict, steps: int = 6) -> list[float]:
    """Training losses of the classifier config over ``steps`` steps with the ``performance`` section."""
    iterator = build({**CLASSIFIER, "performance": performance})
    data = batches(CLASSIFIER, 1) * steps  # one batch again and again: the loss must fall
    losses = []
    for i, batch in enumerate(data):
        iterator.set_global_step(i)
        ops = iterator.step_op(iterator.model, **batch)
        ops["train_op"]()
        losses.append(ops["log_op"]()["scalars"]["loss"])
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("performance, tolerance", [
    ({"channels_last": True}, 1e-5),
    ({"compile": True, "compile_backend": "aot_eager"}, 1e-5),
    ({"amp": "bf16"}, 3e-2),  # bf16 keeps 8 bits of mantissa
], ids=["channels_last", "compile", "bf16"])
def test_performance_options_train_the_same_losses(build, performance, tolerance):
    reference = losses_with(build, {})
    changed = losses_with(build, performance)
    assert reference[-1] < reference[0]  # it trains
    np.testing.assert_allclose(changed, reference, rtol=tolerance)


def test_fp16_is_refused_where_the_step_drives_another_optimizer(build):
    with pytest.raises(InvprotoError, match="performance.amp bf16"):
        build({**AUTOENCODER, "performance": {"amp": "fp16"}})
    with pytest.raises(InvprotoError, match="performance.amp"):
        build({**CLASSIFIER, "performance": {"amp": "fp8"}})


def test_fp16_scales_the_loss_and_checkpoints_the_scaler(build, tmp_path):
    iterator = build({**CLASSIFIER, "performance": {"amp": "fp16"}})
    assert iterator.grad_scaler is not None
    train(iterator, batches(CLASSIFIER, 2))
    path = tmp_path / "model-2.ckpt"
    iterator.save(str(path))
    assert "grad_scaler" in torch.load(path, weights_only=True)


def test_a_diverged_state_is_never_saved(build, tmp_path):
    iterator = build({**CLASSIFIER, "optimizer": {"lr": 1.0e-3}})
    data = batches(CLASSIFIER, 2)
    train(iterator, data[:1])
    healthy = tmp_path / "model-1.ckpt"
    iterator.save(str(healthy))
    data[1]["image"][:] = np.nan  # a batch that makes the loss NaN
    train(iterator, data[1:], first_step=1)
    broken = tmp_path / "model-2.ckpt"
    with pytest.raises(InvprotoError, match=r"loss is not finite at step 1;.*optimizer/lr") as stopped:
        iterator.save(str(broken))
    assert "\n" not in str(stopped.value)
    assert not broken.exists() and healthy.is_file()
    state = torch.load(healthy, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.dtype.is_floating_point)


def test_actnorm_initialises_once_and_again_after_loading_an_uninitialised_state():
    from invproto.modules.actnorm import ActNorm

    fresh = ActNorm(3).state_dict()
    norm = ActNorm(3).train()
    x = torch.randn(64, 3) * 5 + 2
    y = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    before = norm.loc.detach().clone()
    norm(torch.randn(64, 3))  # initialised: the next batch does not re-initialise
    torch.testing.assert_close(norm.loc, before)
    norm.load_state_dict(fresh)  # an uninitialised state: the next training batch initialises again
    y = norm(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
