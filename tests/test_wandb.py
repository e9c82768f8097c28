"""Stacking configs/project.yaml logs to wandb; offline runs hold the scalars and images and are finished."""

import struct

import pytest
import yaml
from edflow_runner import QUICK, SHARED_DATA, EdflowRunner
from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7  # wandb's LevelDB-style log: 32 KiB blocks, 7-byte record headers
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path):
    """Parse a ``run-*.wandb`` file (its Python reader left wandb with the Go core)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        room = BLOCK - offset % BLOCK
        if room < HEADER:  # block trailer padding
            offset += room
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + HEADER])
        if kind == 0 and length == 0:
            break
        payload = data[offset + HEADER:offset + HEADER + length]
        offset += HEADER + length
        pending = payload if kind in (FULL, FIRST) else pending + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def trained_with_wandb(tmp_path, steps: int):
    """A tiny MNIST classifier trained with configs/project.yaml stacked (wandb offline): (runner, run)."""
    runner = EdflowRunner(tmp_path)
    result = runner("-b", "configs/mnist_clf.yaml", "configs/project.yaml", "-t", *QUICK,
                    "--num_steps", str(steps), "-n", "wandb")
    assert result.returncode == 0, result.stderr[-3000:]
    return runner, runner.run_dir("wandb")


def history(records) -> dict:
    """Every logged key of a wandb run's records with its last value (JSON text)."""
    return {item.key or "/".join(item.nested_key): item.value_json
            for r in records if r.WhichOneof("record_type") == "history" for item in r.history.item}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_offline_wandb_run_holds_scalars_and_evaluation_metrics(tmp_path):
    _, run = trained_with_wandb(tmp_path, 12)
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, f"expected one offline wandb run inside {run}"
    records = read_records(files[0])
    logged = set(history(records))
    assert {"train/log_op/loss", "train/log_op/accuracy", "validation/log_op/loss"} <= logged
    assert "validation/eval_op/accuracy/accuracy" in logged
    assert "train/log_op/inputs/_type" in logged  # log_step images become wandb image media
    assert any(r.WhichOneof("record_type") == "exit" for r in records), "wandb.finish() was not called"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_an_evaluation_reaches_wandb_grouped_with_its_training_run(tmp_path):
    runner, run = trained_with_wandb(tmp_path, 6)
    before = set((run / "wandb").glob("offline-run-*"))
    result = runner("-p", str(run), "--datasets/validation", "invproto.data.MNISTTest")
    assert result.returncode == 0, result.stderr[-3000:]
    [evaluation] = set((run / "wandb").glob("offline-run-*")) - before
    [file] = evaluation.glob("run-*.wandb")
    records = read_records(file)
    logged = history(records)
    assert {"evaluation/accuracy", "evaluation/nll", "evaluation/ece"} <= set(logged)
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())["evaluations"][-1]
    assert float(logged["evaluation/accuracy"]) == pytest.approx(scores["accuracy"])
    [meta] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert meta.run_group == run.name and meta.job_type == "evaluation"
    assert any(r.WhichOneof("record_type") == "exit" for r in records), "wandb.finish() was not called"
