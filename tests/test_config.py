"""Config validation: unknown, misspelt, mistyped and missing keys fail naming the key."""

import sys
import time
import types

import pytest
import torch
import yaml
from edflow_runner import EdflowRunner

from invproto.config import ConfigError, instantiate, schema_for, validate_run_config, validation
from invproto.config.sources import ConfigSources


def valid_config(**overrides):
    config = {
        "model": "invproto.models.classifier.Classifier",
        "iterator": "invproto.iterators.classifier.ClassifierIterator",
        "datasets": {"train": "invproto.data.MNISTTrain", "validation": "invproto.data.MNISTValidation"},
        "model_params": {"n_classes": 10},
        "batch_size": 8,
        "num_epochs": 1,
    }
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def no_sources(monkeypatch):
    """Unit tests see no command line; tests that need sources set them."""
    monkeypatch.setattr(validation, "_sources", ConfigSources())


def message(config) -> str:
    with pytest.raises(ConfigError) as error:
        validate_run_config(config)
    text = str(error.value)
    assert "\n" not in text
    return text


def test_valid_config_gets_typed_defaults():
    view = validate_run_config(valid_config())
    assert view.data.validation_size == 5000 and view.data.root is None
    assert view.model_params.in_size == 28 and view.model_params.code_dim == 64
    assert view.optimizer.name == "adam"


def test_unknown_top_level_key_names_nearest():
    text = message(valid_config(batch_sise=8))
    assert "'batch_sise'" in text and "did you mean 'batch_size'" in text


def test_unknown_nested_key_names_nearest():
    text = message(valid_config(model_params={"n_clases": 10}))
    assert "'model_params.n_clases'" in text and "did you mean 'n_classes'" in text
    text = message(valid_config(optimizer={"schedul": "cosine"}))
    assert "'optimizer.schedul'" in text and "'schedule'" in text
    text = message(valid_config(integrations={"wandb": {"actve": True}}))
    assert "'integrations.wandb.actve'" in text and "'active'" in text


def test_wrong_type_names_key_and_type():
    text = message(valid_config(batch_size="eight"))
    assert "'batch_size'" in text and "must be int" in text and "eight" in text
    text = message(valid_config(model_params={"in_size": "big"}))
    assert "'model_params.in_size'" in text and "int" in text


def test_missing_key_names_the_file_it_belongs_in(tmp_path, monkeypatch):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": "x"}))
    monkeypatch.setattr(validation, "_sources", ConfigSources.from_argv(["-b", str(base), "-t"]))
    config = valid_config()
    del config["batch_size"]
    text = message(config)
    assert "missing config key 'batch_size' (int)" in text and str(base) in text


def test_origin_of_a_misspelt_key_is_its_file(tmp_path, monkeypatch):
    base, overlay = tmp_path / "base.yaml", tmp_path / "overlay.yaml"
    base.write_text(yaml.safe_dump({"data": {"validation_size": 10}}))
    overlay.write_text(yaml.safe_dump({"data": {"validaton_size": 10}}))
    monkeypatch.setattr(validation, "_sources", ConfigSources.from_argv(["-b", str(base), str(overlay)]))
    text = message(valid_config(data={"validaton_size": 10}))
    assert f"(in {overlay})" in text and "did you mean 'validation_size'" in text


def test_unimportable_component_is_named():
    text = message(valid_config(model="invproto.models.Clasifier"))
    assert "'model'" in text and "invproto.models.Clasifier" in text


def test_num_epochs_or_num_steps_required():
    config = valid_config()
    del config["num_epochs"]
    assert "num_epochs" in message(config)


def test_instantiate_builds_and_validates_params():
    loss = instantiate({"target": "torch.nn.CrossEntropyLoss", "params": {"label_smoothing": 0.1}}, "loss")
    assert isinstance(loss, torch.nn.CrossEntropyLoss) and loss.label_smoothing == 0.1
    with pytest.raises(ConfigError, match=r"'loss.params.label_smothing'.*'label_smoothing'"):
        instantiate({"target": "torch.nn.CrossEntropyLoss", "params": {"label_smothing": 0.1}}, "loss")


def test_signature_schema_requires_parameters_without_default():
    def scale(x: float, factor: int = 2):
        return x * factor

    schema = schema_for(scale)
    with pytest.raises(ConfigError, match=r"missing config key 'cb.x' \(float\)"):
        validation.check_section(schema, {"factor": 3}, "cb")
    with pytest.raises(ConfigError, match=r"'cb.factor' must be int"):
        validation.check_section(schema, {"x": 1.0, "factor": "three"}, "cb")


@pytest.mark.slow
@pytest.mark.parametrize("args, key, nearest", [
    (["--batch_sise", "8"], "batch_sise", "batch_size"),
    (["--model_params/n_clases", "10"], "model_params.n_clases", "n_classes"),
])
def test_cli_typo_fails_fast_without_debris(tmp_path, args, key, nearest):
    runner = EdflowRunner(tmp_path)
    start = time.perf_counter()
    result = runner("-b", "configs/mnist_clf.yaml", "-t", *args, "-n", "typo")
    elapsed = time.perf_counter() - start
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"'{key}'" in last_line and f"did you mean '{nearest}'" in last_line
    assert "Traceback" not in result.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert not runner.runs("typo"), "the failed run left a log directory behind"


@pytest.mark.slow
def test_yaml_typo_names_the_yaml_file(tmp_path):
    runner = EdflowRunner(tmp_path)
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("optimizer:\n  lr: 0.001\n  shedule: cosine\n")
    result = runner("-b", "configs/mnist_clf.yaml", str(overlay), "-t", "-n", "typo")
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert "'optimizer.shedule'" in last_line and str(overlay) in last_line and "'schedule'" in last_line
    assert not runner.runs("typo")


def test_callback_kwargs_are_checked_against_the_callback():
    def fid(root, data_in, data_out, config, n_images: int = 100):
        return {}

    module = types.ModuleType("callbacks_under_test")
    module.fid = fid
    sys.modules["callbacks_under_test"] = module  # importable by path, like a user's callback
    pipeline = {"callbacks": {"fid": "callbacks_under_test.fid"}, "callback_kwargs": {"fid": {"n_imags": 5}}}
    text = message(valid_config(eval_pipeline=pipeline))
    assert "'eval_pipeline.callback_kwargs.fid.n_imags'" in text and "'n_images'" in text
    text = message(valid_config(eval_pipeline={"callback_kwargs": {"acuracy": {}}}))
    assert "'eval_pipeline.callback_kwargs.acuracy'" in text and "did you mean 'accuracy'" in text
    pipeline["callback_kwargs"]["fid"] = {"n_images": 5}
    validate_run_config(valid_config(eval_pipeline=pipeline))


@pytest.mark.parametrize("iterator, old, new", [
    ("invproto.iterators.protoflow.ProtoFlowIterator", "head_lr", "head_lr_multiple"),
    ("invproto.iterators.part_prototypes.PartPrototypeIterator", "fine_tune_lr", "backbone_lr_multiple"),
    ("invproto.iterators.protodl.ProtoDLIterator", "classifier_lr_factor", "classifier_lr_multiple"),
    ("invproto.iterators.autoencoder.AutoencoderIterator", "d_lr_factor", "discriminator_lr_multiple"),
])
def test_replaced_learning_rate_keys_are_refused_naming_the_new_key(iterator, old, new):
    """Every group's own rate is a multiple of optimizer.lr; the old keys of other idioms name their successor."""
    text = message(valid_config(iterator=iterator, iterator_params={old: 1e-4}))
    assert f"'iterator_params.{old}' was replaced; use 'iterator_params.{new}'" in text
    assert "optimizer.lr" in text or "same number" in text
    validate_run_config(valid_config(iterator=iterator, iterator_params={new: 0.5}))


@pytest.mark.parametrize("overrides, expected", [
    ({"batch_size": 0}, "config key 'batch_size' must be >= 1, got 0"),
    ({"num_epochs": 0}, "config key 'num_epochs' must be >= 1, got 0"),
    ({"num_epochs": None, "num_steps": -1}, "config key 'num_steps' must be >= 1, got -1"),
    ({"log_freq": 0}, "config key 'log_freq' must be >= 1"),
    ({"ckpt_freq": 0}, "config key 'ckpt_freq' must be >= 1"),
    ({"seed": -1}, "config key 'seed' must be >= 0"),
    ({"optimizer": {"lr": 0.0}}, "config key 'optimizer.lr' must be > 0, got 0.0"),
    ({"optimizer": {"name": "adm"}}, "config key 'optimizer.name' must be one of adam, adamw, sgd, got 'adm'"),
    ({"optimizer": {"schedule": "cosin"}}, "'optimizer.schedule' must be one of constant, cosine, linear, got 'cosin'"),
    ({"optimizer": {"warmup_steps": -1}}, "config key 'optimizer.warmup_steps' must be >= 0"),
    ({"optimizer": {"grad_clip_norm": 0}}, "config key 'optimizer.grad_clip_norm' must be > 0"),
    ({"performance": {"amp": "fp8"}}, "'performance.amp' must be one of bf16, fp16 or null, got 'fp8'"),
    ({"data": {"validation_size": -1}}, "config key 'data.validation_size' must be >= 0"),
])
def test_ranges_and_choices_are_part_of_the_schema(overrides, expected):
    assert expected in message(valid_config(**overrides))


def test_null_passes_the_range_of_an_optional_key():
    view = validate_run_config(valid_config(ckpt_freq=None, optimizer={"grad_clip_norm": None, "lr": 0.5}))
    assert view.ckpt_freq is None and view.optimizer.lr == 0.5
