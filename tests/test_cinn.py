"""The conditional INN of a network's invariances: the model's maps, the iterator's outputs and callbacks,
and the ground truth on Sprites (a shape-only classifier is blind to colour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_config

from invproto.config.run import prepare_run
from invproto.errors import ConfigError
from invproto.losses.iin import IINLoss
from invproto.models.autoencoder import Autoencoder
from invproto.models.cinn import ConditionalIIN
from invproto.models.classifier import Classifier

CLASSIFIER = {"in_channels": 3, "in_size": 16, "n_classes": 5, "n_down": 3, "base_channels": 8, "code_dim": 16}
AUTOENCODER = {"in_channels": 3, "in_size": 16, "n_down": 3, "base_channels": 8, "z_dim": 16}


def save_checkpoint(model: torch.nn.Module, path: Path) -> str:
    """An invproto checkpoint as the base iterator writes it (model weights + describe)."""
    torch.save({"model": model.state_dict(), "describe": model.describe()}, path)
    return str(path)


def stage(model: torch.nn.Module, path: Path, **extra) -> dict:
    return {"model": f"{type(model).__module__}.{type(model).__name__}",
            "model_params": {k: v for k, v in vars(model.params).items()},
            "checkpoint": save_checkpoint(model, path), **extra}


def cinn_params(classifier, autoencoder, tmp_path: Path, layer: str = "head", **extra) -> dict:
    return {"network": stage(classifier, tmp_path / "clf.ckpt", layer=layer),
            "autoencoder": stage(autoencoder, tmp_path / "ae.ckpt"),
            "embedder": {"embedding_dim": 8, "depth": 2, "base_channels": 4}, "n_flow": 2, "hidden_dim": 16,
            **extra}


@pytest.fixture
def cinn(tmp_path) -> ConditionalIIN:
    torch.manual_seed(0)
    model = ConditionalIIN.from_params(**cinn_params(Classifier.from_params(**CLASSIFIER),
                                                     Autoencoder.from_params(**AUTOENCODER), tmp_path))
    images = torch.rand(16, 3, 16, 16) * 2 - 1
    model.train()
    model(images)  # data-dependent ActNorm initialisation
    with torch.no_grad():  # couplings away from the identity
        for layer in model.flow.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 0.3)
    return model.eval()


def test_the_flow_inverts_under_the_representation_and_reconstructs_through_the_decoder(cinn):
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    z, log_det = cinn(images)
    assert z.shape == (6, 16) and log_det.shape == (6,)
    representation = cinn.representation(images)
    assert representation.shape == (6, 5)  # the classifier's logits
    torch.testing.assert_close(cinn.flow.inverse(z, cinn.condition(representation)), cinn.codes(images),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cinn.reconstruct(images), cinn.autoencoder.decode(cinn.codes(images)),
                               atol=1e-4, rtol=1e-4)
    other_codes = cinn.flow.inverse(z, cinn.condition(representation.roll(1, 0)))
    assert (other_codes - cinn.codes(images)).abs().max() > 1e-2, "the representation must matter"
    assert cinn.sample(representation, torch.zeros(6, 16)).shape == (6, 3, 16, 16)


def test_only_embedder_and_flow_train_and_the_checkpoint_is_self_contained(cinn, tmp_path):
    trainable = {id(p) for p in cinn.trainable_parameters()}
    assert trainable == {id(p) for p in [*cinn.embedder.parameters(), *cinn.flow.parameters()]}
    assert not any(p.requires_grad for p in [*cinn.network.parameters(), *cinn.autoencoder.parameters()])
    cinn.train()
    assert not cinn.network.training and not cinn.autoencoder.training and cinn.flow.training
    described = cinn.describe()["model_params"]
    assert "checkpoint" not in described["network"] and described["network"]["layer"] == "head"
    keys = cinn.state_dict()
    assert any(k.startswith("network.network.") for k in keys) and any(k.startswith("autoencoder.network.")
                                                                      for k in keys)


def test_an_autoencoder_that_cannot_decode_is_refused(tmp_path):
    classifier = Classifier.from_params(**CLASSIFIER)
    params = cinn_params(classifier, Autoencoder.from_params(**AUTOENCODER), tmp_path)
    params["autoencoder"] = stage(classifier, tmp_path / "clf2.ckpt")
    with pytest.raises(ConfigError, match="model_params.autoencoder.*cannot decode"):
        ConditionalIIN.from_params(**params)


def test_a_feature_map_layer_gets_the_convolutional_embedder(tmp_path):
    from invproto.modules.embedders import ConvEmbedder

    model = ConditionalIIN.from_params(**cinn_params(Classifier.from_params(**CLASSIFIER),
                                                     Autoencoder.from_params(**AUTOENCODER), tmp_path,
                                                     layer="encoder.net.2"))
    assert model.network.representation_shape == (8, 8, 8) and isinstance(model.embedder, ConvEmbedder)
    z, _ = model(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert z.shape == (2, 16)


def iterator_for(model: ConditionalIIN, tmp_path: Path, monkeypatch, **iterator_params):
    from edflow.custom_logging import run

    from invproto.iterators.cinn import ConditionalIINIterator

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="cinn_unit")
    config = {"model": "invproto.models.cinn.ConditionalIIN",
              "iterator": "invproto.iterators.cinn.ConditionalIINIterator",
              "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
              "batch_size": 4, "num_steps": 1, "seed": 0, "iterator_params": {"n_samples": 3, **iterator_params},
              "model_params": {}}
    return ConditionalIINIterator(config, run.root, model, num_epochs=1, hook_freq=1,
                                  datasets={"train": [], "validation": []})


def test_eval_step_measures_samples_against_floor_and_ceiling(cinn, tmp_path, monkeypatch):
    from invproto.callbacks.invariances import adversarial_invariances, prediction_agreement, representation_fidelity

    iterator = iterator_for(cinn, tmp_path, monkeypatch, attack_epsilon=0.1)
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    batch = {"image": images, "index_": torch.arange(5), "class": torch.tensor([0, 1, 2, 3, 4])}
    with torch.inference_mode():
        outputs = iterator.eval_step(batch)
        again = iterator.eval_step({key: value[[3, 1]] for key, value in batch.items()})
    assert outputs["sample"].shape == (5, 16, 16, 3) and outputs["sample"].dtype == np.uint8
    np.testing.assert_array_equal(again["sample"], outputs["sample"][[3, 1]])  # seeded by example index
    for kind in ("samples", "floor", "ceiling"):
        assert outputs[f"rel_error_{kind}"].shape == (5,) and outputs[f"agree_{kind}"].shape == (5,)
    with torch.no_grad():
        own = cinn.network.classify(images).argmax(1)
        floor = cinn.network.classify(cinn.autoencoder.decode(cinn.codes(images))).argmax(1)
    np.testing.assert_array_equal(outputs["agree_floor"], (floor == own).float().numpy())
    assert {"correct_clean", "correct_attacked", "attacked_decode_agrees"} <= set(outputs)

    data_out = type("Outputs", (), {"labels": outputs})()
    config = {"datasets": {"validation": "invproto.data.SpritesValidation"}}
    root = tmp_path / "eval" / "3"
    root.mkdir(parents=True)
    monkeypatch.setattr("invproto.callbacks.base.current_run_root", lambda: tmp_path / "logs")
    fidelity = representation_fidelity(str(root), None, data_out, config)["scalars"]
    assert fidelity["rel_error_floor"] == pytest.approx(float(np.mean(outputs["rel_error_floor"])))
    assert set(prediction_agreement(str(root), None, data_out, config)["scalars"]) == {
        "agree_samples", "agree_floor", "agree_ceiling"}
    assert "correct_attacked" in adversarial_invariances(str(root), None, data_out, config)["scalars"]


def test_perturbed_views_decode_the_clean_code_under_each_representation(cinn):
    from invproto.interpret.attacks import perturbed_views

    images = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        labels = cinn.network.classify(images).argmax(1)
        z, _ = cinn(images)
        views = perturbed_views(cinn, images, labels, z, 0.2, seed=1)
        assert set(views) == {"clean", "attacked", "random"}
        # clean: the INN's reconstruction (decode of the image's own code under its own representation)
        torch.testing.assert_close(views["clean"].decode, cinn.reconstruct(images), atol=1e-5, rtol=1e-4)
        for view in views.values():
            torch.testing.assert_close(view.classes, cinn.network.classify(view.images).argmax(1))
            torch.testing.assert_close(view.decode_classes, cinn.network.classify(view.decode).argmax(1))
            assert (view.images - images).abs().max() <= 0.2 + 1e-6
        assert (views["attacked"].images - images).abs().amax() > 0.19
        assert not torch.equal(views["attacked"].images, views["random"].images)


def test_log_step_keeps_each_input_in_its_row(cinn, tmp_path, monkeypatch):
    iterator = iterator_for(cinn, tmp_path, monkeypatch)
    with torch.no_grad():
        logs = iterator.log_step({"image": torch.rand(4, 3, 16, 16) * 2 - 1, "index_": torch.arange(4)})
    grid = logs["images"]["invariances"]
    assert grid.shape == (1, 4 * 17 + 1, (2 + 3) * 17 + 1, 3)  # 4 rows; input, reconstruction, 3 samples
    assert logs["images"]["swaps"].shape == (1, 4 * 17 + 1, 2 * 17 + 1, 3)


# --- ground truth on Sprites -----------------------------------------------------------------

def sprites(n_train: int, n_validation: int):
    from invproto.data import SpritesTrain, SpritesValidation

    config = run_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                        dataset_params={"size": 16, "n_train": n_train, "n_validation": n_validation, "n_test": 1})
    prepare_run(config)
    to_tensor = lambda data: torch.from_numpy(data.get_batch(np.arange(len(data)))["image"]).permute(0, 3, 1, 2)  # noqa: E731
    train, validation = SpritesTrain(config), SpritesValidation(config)
    return train, to_tensor(train), validation, to_tensor(validation)


def train_loop(parameters, loss_fn, n: int, steps: int, lr: float, seed: int) -> None:
    optimizer = torch.optim.Adam(parameters, lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = loss_fn(torch.randint(0, n, (64,), generator=generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.slow
def test_samples_under_a_shape_classifier_keep_shape_and_vary_colour(tmp_path):
    """The ground truth of the method: a classifier of shape only is blind to colour, one of shape x colour
    is not. Samples under the first change colour and keep the input's shape as it reads them (as far as the
    autoencoder's reconstructions keep it at 16 px); samples under the second keep the colour. Colours are
    read from the pixels. The 32 px figures are benchmarks/sprites_cinn.py's."""
    from invproto.data.synthetic import read_colours
    from invproto.losses.autoencoder import AutoencoderLoss
    from invproto.pictures import to_hwc

    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train, images, validation, validation_images = sprites(3000, 200)
    labels = train.get_batch(np.arange(len(train)))
    autoencoder = Autoencoder.from_params(**AUTOENCODER)
    ae_loss = AutoencoderLoss(3, pixel_loss="l2", kl_weight=0.1, discriminator=False)

    def reconstruction_loss(index):
        posterior = autoencoder.encode(images[index])
        return ae_loss.autoencoder_loss(images[index], autoencoder.decode(posterior.sample()), posterior,
                                        autoencoder.last_layer_weight, 0)[0]

    train_loop(autoencoder.parameters(), reconstruction_loss, len(images), 600, 2e-3, 0)
    classifiers = {}
    for name, target, n_classes in (("shape", labels["shape"], 5),
                                    ("joint", labels["shape"] * 6 + labels["color"], 30)):
        classifier = Classifier.from_params(**{**CLASSIFIER, "n_classes": n_classes})
        target = torch.from_numpy(target)
        train_loop(classifier.parameters(), lambda i: F.cross_entropy(classifier(images[i]), target[i]),
                   len(images), 400, 3e-3, 1)
        classifiers[name] = classifier.eval()
    autoencoder.eval()

    read = {}
    for name, classifier in classifiers.items():
        (tmp_path / name).mkdir()
        model = ConditionalIIN.from_params(**cinn_params(classifier, autoencoder, tmp_path / name, n_flow=4,
                                                         hidden_dim=64))
        codes, representations = model.codes(images), model.representation(images)  # frozen: computed once
        model.train()
        train_loop(list(model.trainable_parameters()),
                   lambda i: IINLoss()(*model.flow(codes[i], model.condition(representations[i])))[0],
                   len(images), 500, 1e-3, 2)
        model.eval()
        with torch.no_grad():
            representation = model.representation(validation_images)
            samples = model.sample(representation.repeat_interleave(4, 0), torch.randn(4 * len(validation_images),
                                                                                        model.code_dim))
            own_class = model.network.classify(validation_images).argmax(1)
            reconstructions = autoencoder.decode(model.codes(validation_images))
            read[name] = {"own_class": own_class.repeat_interleave(4),
                          "sample_class": model.network.classify(samples).argmax(1),
                          "floor": (model.network.classify(reconstructions).argmax(1) == own_class).float().mean(),
                          "sample_colour": read_colours(to_hwc(samples))}
    colours = np.repeat(read_colours(to_hwc(validation_images)), 4)
    shape_kept = (read["shape"]["sample_class"] == read["shape"]["own_class"]).float().mean().item()
    colour_changed = float((read["shape"]["sample_colour"] != colours).mean())
    colour_kept_control = float((read["joint"]["sample_colour"] == colours).mean())
    shape_floor = float(read["shape"]["floor"])  # the classifier's agreement on the autoencoder's reconstructions
    report = dict(shape_kept=shape_kept, shape_floor=shape_floor, colour_changed=colour_changed,
                  colour_kept_control=colour_kept_control)
    print(report)
    assert colour_changed > 0.6 and colour_kept_control > 0.8, report  # chance: 5/6 changed, 1/6 kept
    assert shape_kept > 0.8 * shape_floor, report  # 16 px sprites decode blurred: the floor bounds what is kept


@pytest.mark.parametrize("name", ["mnist_cinn", "fashionmnist_cinn", "sprites_cinn", "inception_cinn",
                                  "inception_probe"])
def test_configs_pass_validation_and_typos_in_a_first_stage_name_the_key(name):
    import yaml
    from conftest import REPO

    from invproto.config import validate_run_config

    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    validate_run_config(config)
    config["model_params"]["network"]["layr"] = "head"
    with pytest.raises(ConfigError, match=r"unknown config key 'model_params.network.layr'; did you mean 'layer'"):
        validate_run_config(config)
