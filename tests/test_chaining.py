"""Stages chained by run directory (:mod:`invproto.config.chaining`): checkpoints, the first stage's model and
model_params, and factor sizes read from earlier runs; one-line errors when a run lacks what is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from invproto.artifacts import RunArtifacts
from invproto.config.chaining import resolve_run_references
from invproto.errors import ConfigError

AE = {"model": "invproto.models.autoencoder.Autoencoder",
      "model_params": {"in_channels": 3, "in_size": 32, "n_down": 4, "base_channels": 8, "z_dim": 16}}


def make_run(logs: Path, name: str, steps=(), config: dict | None = None, factor_dims=None) -> Path:
    run = logs / name
    (run / "train" / "checkpoints").mkdir(parents=True)
    (run / "configs").mkdir()
    for step in steps:
        (run / "train" / "checkpoints" / f"model-{step}.ckpt").write_bytes(b"")
    if config is not None:
        (run / "configs" / "train_2026-01-01T00-00-00.yaml").write_text(yaml.safe_dump(config))
    if factor_dims is not None:
        for step, dims in factor_dims.items():
            RunArtifacts(run).add_scores(step, {f"factor_dim_{k}": n for k, n in enumerate(dims)}, evaluation=False,
                                         context={"dataset": "x"})
    return run


def diin_config(checkpoint: str, **first_stage) -> dict:
    return {"model_params": {"first_stage": {"checkpoint": checkpoint, **first_stage}, "n_flow": 2}}


def test_a_run_directory_becomes_its_highest_step_checkpoint_with_model_and_params(tmp_path):
    run = make_run(tmp_path, "2026-01-01T00-00-00_ae", steps=(90, 900, 180), config=AE)
    config = diin_config(str(run))
    lines = resolve_run_references(config)
    first_stage = config["model_params"]["first_stage"]
    assert first_stage["checkpoint"] == str(run / "train" / "checkpoints" / "model-900.ckpt")  # step, not name order
    assert first_stage["model"] == AE["model"] and first_stage["model_params"] == AE["model_params"]
    assert any("model_params.first_stage.checkpoint" in line and "model-900.ckpt" in line for line in lines)
    assert resolve_run_references(config) == []  # resolved once: a file path stays as it is


def test_given_model_and_params_are_kept(tmp_path):
    run = make_run(tmp_path, "2026-01-01T00-00-00_ae", steps=(5,), config=AE)
    config = diin_config(str(run), model="my.Model", model_params={"width": 3})
    resolve_run_references(config)
    assert config["model_params"]["first_stage"]["model"] == "my.Model"
    assert config["model_params"]["first_stage"]["model_params"] == {"width": 3}
    overridden = diin_config(str(run), model_params={"z_dim": 32})  # given model_params override the run's
    resolve_run_references(overridden)
    assert overridden["model_params"]["first_stage"]["model_params"] == {**AE["model_params"], "z_dim": 32}
    other_source = diin_config(str(run), source="torchvision", model="resnet18")
    resolve_run_references(other_source)  # only the checkpoint of a non-invproto source is resolved
    assert other_source["model_params"]["first_stage"]["model"] == "resnet18"
    assert "model_params" not in other_source["model_params"]["first_stage"]


def test_a_pattern_names_the_newest_run_that_has_a_checkpoint(tmp_path):
    older = make_run(tmp_path, "2026-01-01T00-00-00_sprites_ae", steps=(10,), config=AE)
    make_run(tmp_path, "2026-01-02T00-00-00_sprites_ae", steps=(20,), config=AE)
    make_run(tmp_path, "2026-01-03T00-00-00_sprites_ae", config=AE)  # newest, still without a checkpoint
    make_run(tmp_path, "2026-01-04T00-00-00_mnist_ae", steps=(30,), config=AE)
    config = diin_config(str(tmp_path / "*_sprites_ae"))
    resolve_run_references(config)
    assert config["model_params"]["first_stage"]["checkpoint"].endswith(
        "2026-01-02T00-00-00_sprites_ae/train/checkpoints/model-20.ckpt")
    assert older.name not in config["model_params"]["first_stage"]["checkpoint"]


def test_checkpoint_keys_at_any_depth_are_resolved(tmp_path):
    clf = make_run(tmp_path, "2026-01-01T00-00-00_clf", steps=(7,), config=AE)
    config = {"model_params": {"network": {"checkpoint": str(clf), "layer": "head"},
                               "autoencoder": {"checkpoint": str(clf)}},
              "loss": {"params": {"perceptual": {"checkpoint": str(clf)}}}}
    resolve_run_references(config)
    for section in (config["model_params"]["network"], config["model_params"]["autoencoder"],
                    config["loss"]["params"]["perceptual"]):
        assert section["checkpoint"].endswith("model-7.ckpt") and section["model"] == AE["model"]


def test_factor_config_from_the_newest_estimate_of_a_run(tmp_path):
    make_run(tmp_path, "2026-01-01T00-00-00_cmnist_clf", steps=(100,), config=AE,
               factor_dims={50: [10, 20, 34], 100: [22, 11, 31]})
    config = {"model_params": {"factor_config": str(tmp_path / "*_cmnist_clf")}}
    resolve_run_references(config)
    assert config["model_params"]["factor_config"] == [22, 11, 31]


def test_runs_without_what_is_asked_for_fail_in_one_line_naming_the_key(tmp_path):
    empty = make_run(tmp_path, "2026-01-01T00-00-00_ae", config=AE)
    with pytest.raises(ConfigError, match=r"model_params.first_stage.checkpoint .* without a checkpoint"):
        resolve_run_references(diin_config(str(empty)))
    with pytest.raises(ConfigError, match=r"no run directory matches"):
        resolve_run_references(diin_config(str(tmp_path / "*_nothing")))
    with pytest.raises(ConfigError, match=r"model_params.factor_config .* without factor dimensions"):
        resolve_run_references({"model_params": {"factor_config": str(empty)}})
    with pytest.raises(ConfigError, match=r"must be a list of sizes or a run directory"):
        resolve_run_references({"model_params": {"factor_config": "22,11,31"}})
    no_config = make_run(tmp_path, "2026-01-02T00-00-00_ae", steps=(3,))
    with pytest.raises(ConfigError, match=r"model_params.first_stage.model is omitted"):
        resolve_run_references(diin_config(str(no_config)))


def test_a_checkpoint_file_of_a_run_takes_model_and_params_from_that_run(tmp_path):
    run = make_run(tmp_path, "2026-01-01T00-00-00_ae", steps=(5, 10), config=AE)
    chosen = str(run / "train" / "checkpoints" / "model-5.ckpt")
    config = diin_config(chosen)
    resolve_run_references(config)
    assert config["model_params"]["first_stage"] == {"checkpoint": chosen, **AE}  # that file, not the newest


def test_a_checkpoint_file_path_is_left_alone(tmp_path):
    config = diin_config(str(tmp_path / "model-3.ckpt"), model="x.Y")
    assert resolve_run_references(config) == []
    assert config["model_params"]["first_stage"]["checkpoint"] == str(tmp_path / "model-3.ckpt")


def test_the_shipped_swap_recipe_resolves_to_a_valid_config(tmp_path, monkeypatch):
    """configs/sprites_ae_diin.yaml names the newest sprites_ae_cpu run for its first stage and factor sizes."""
    from conftest import REPO

    from invproto.config import validate_run_config

    ae_config = yaml.safe_load((REPO / "configs" / "sprites_ae_cpu.yaml").read_text())
    make_run(tmp_path / "logs", "2026-01-01T00-00-00_sprites_ae_cpu", steps=(2504,), config=ae_config,
             factor_dims={2504: [13, 14, 37]})
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((REPO / "configs" / "sprites_ae_diin.yaml").read_text())
    resolve_run_references(config)
    first_stage = config["model_params"]["first_stage"]
    assert first_stage["model"] == ae_config["model"] and first_stage["model_params"] == ae_config["model_params"]
    assert config["model_params"]["factor_config"] == [13, 14, 37]
    validate_run_config(config)
