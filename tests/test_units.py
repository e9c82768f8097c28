"""Learning-rate schedules, run artifacts and atomic writes."""

import csv

import pytest
import torch
import yaml

from invproto.artifacts import RunArtifacts
from invproto.config.schema import OptimizerParams
from invproto.io import atomic_write_text
from invproto.iterators.optimization import lr_factor


def test_warmup_then_cosine():
    p = OptimizerParams(schedule="cosine", warmup_steps=10)
    assert lr_factor(0, 110, p) == pytest.approx(0.1)
    assert lr_factor(9, 110, p) == pytest.approx(1.0)
    assert lr_factor(60, 110, p) == pytest.approx(0.5)
    assert lr_factor(110, 110, p) == pytest.approx(0.0)


def test_linear_decay_after_decay_start():
    p = OptimizerParams(schedule="linear", decay_start=50)
    assert lr_factor(49, 100, p) == 1.0
    assert lr_factor(75, 100, p) == pytest.approx(0.5)
    assert OptimizerParams().schedule == "constant" and lr_factor(99, 100, OptimizerParams()) == 1.0


def test_scores_merge_callbacks_of_one_step_and_keep_history(tmp_path):
    artifacts = RunArtifacts(tmp_path)
    artifacts.add_scores(10, {"accuracy": 0.5}, evaluation=False, context={"dataset": "v"})
    artifacts.add_scores(10, {"fid": 3.0}, evaluation=False, context={"dataset": "v"})
    artifacts.add_scores(20, {"accuracy": 0.7}, evaluation=False, context={"dataset": "v"})
    artifacts.add_scores(20, {"accuracy": 0.6}, evaluation=True, context={"dataset": "test"})
    scores = yaml.safe_load((tmp_path / "results" / "scores.yaml").read_text())
    assert scores["per_epoch"] == [{"step": 10, "dataset": "v", "accuracy": 0.5, "fid": 3.0},
                                   {"step": 20, "dataset": "v", "accuracy": 0.7}]
    assert scores["final"] == scores["evaluations"][0] == {"step": 20, "dataset": "test", "accuracy": 0.6}


def test_metrics_csv_grows_columns(tmp_path):
    artifacts = RunArtifacts(tmp_path)
    artifacts.append_metrics({"step": 1, "loss": 2.0})
    artifacts.append_metrics({"step": 2, "accuracy": 0.5})
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"step": "1", "loss": "2.0", "accuracy": ""}, {"step": "2", "loss": "", "accuracy": "0.5"}]


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_keyed_draws_repeat_for_equal_keys_and_differ_for_neighbouring_ones():
    from invproto.iterators.seeding import keyed_generator

    def draw(*key):
        return torch.rand(8, generator=keyed_generator(*key))

    assert torch.equal(draw(0, 5, 1), draw(0, 5, 1))
    assert not torch.equal(draw(0, 5), draw(5, 0))  # seed + step would give both the same stream
    assert not torch.equal(draw(0, 5, 0), draw(0, 5, 1))  # each rank its own draws
