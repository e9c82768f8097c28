"""Smoke test of benchmarks/mnist_iin_cpu_recipe.py: the whole CPU MNIST IIN recipe end to end with tiny settings.

Autoencoder (configs/mnist_ae_cpu32.yaml, 4 base channels, 5 steps), IIN (configs/mnist_iin_cpu.yaml, a
2 x 16 flow, 5 steps) on its checkpoint, then ``edflow -p`` on invproto.data.MNIST32Test with the sample FID
on 20 images, ``--dry-run``: the figures are printed, not written. Everything runs in a scratch directory
(its own logs/ and FID cache), so the repository's logs/ and benchmarks/results/ stay as they were.
"""

import ast
import math
import os
import subprocess
import sys

import pytest
import yaml
from edflow_runner import REPO, SHARED_DATA, EdflowRunner

from invproto.config.validation import validate_run_config

needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")

FIGURES = ("mnist_iin.fid_samples_n10000", "mnist_iin.kid_samples")
TINY_AE = ("--model_params/base_channels 4 --loss/params/disc_channels 4 --loss/params/disc_start 3 --batch_size 16 "
           "--data/validation_size 64 --log_freq 3 --optimizer/warmup_steps 0 "
           "--eval_pipeline/callback_kwargs/fid_reconstruction/n_images 4 "
           "--eval_pipeline/callback_kwargs/fid_samples/n_images 4")
TINY_IIN = ("--model_params/hidden_dim 16 --model_params/n_flow 2 --batch_size 16 --data/validation_size 64 "
            "--log_freq 3 --optimizer/warmup_steps 0 --eval_pipeline/callback_kwargs/fid_samples/n_images 4")


def recipe(workdir, *args, timeout=300):
    env = {**os.environ, "INVPROTO_DATA": str(SHARED_DATA), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONWARNINGS": "ignore", "INVPROTO_FID_CACHE": str(workdir / "fid_cache")}
    return subprocess.run([sys.executable, "-m", "benchmarks.mnist_iin_cpu_recipe", "--workdir", str(workdir), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def printed_records(stdout: str) -> dict:
    """The dry run's lines ``<name>: <value> <unit> (target ...) [dry run, not written] {...}`` by name."""
    records = {}
    for line in stdout.splitlines():
        name, _, rest = line.partition(": ")
        if name in FIGURES and "[dry run, not written]" in rest:
            head, _, fields = rest.partition(" [dry run, not written] ")
            records[name] = (head, ast.literal_eval(fields))
    return records


def result_files():
    return {name: (REPO / "benchmarks" / "results" / f"{name}.json") for name in FIGURES}


def test_recipe_configs_pass_validation_and_share_the_first_stage():
    ae = yaml.safe_load((REPO / "configs" / "mnist_ae_cpu32.yaml").read_text())
    iin = yaml.safe_load((REPO / "configs" / "mnist_iin_cpu.yaml").read_text())
    validate_run_config(ae)
    validate_run_config(iin)
    # the first stage is the newest run of the autoencoder config: its checkpoint, model and model_params
    assert iin["model_params"]["first_stage"] == {"checkpoint": f"logs/*_{ae['experiment_name']}"}
    assert ae["model_params"]["in_size"] == 32 and ae["datasets"]["train"] == "invproto.data.MNIST32Train"
    assert iin["datasets"] == ae["datasets"] and iin["data"] == ae["data"]  # the same train/validation partition
    assert ae["loss"]["params"]["learn_logvar"]
    # per-epoch FID stays on a CPU budget
    assert max(kwargs["n_images"] for kwargs in ae["eval_pipeline"]["callback_kwargs"].values()) <= 64
    assert iin["eval_pipeline"]["callback_kwargs"]["fid_samples"]["n_images"] <= 64


@pytest.mark.slow
def test_recipe_records_only_the_reference_protocol(tmp_path):
    result = recipe(tmp_path, "--fid-n", "20", timeout=60)
    assert result.returncode == 2 and "--fid-n 10000" in result.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.slow
@needs_mnist
def test_recipe_runs_end_to_end_in_a_scratch_directory(tmp_path):
    logs = REPO / "logs"
    repo_runs = sorted(logs.iterdir()) if logs.is_dir() else []
    results = {name: (path.stat().st_mtime_ns if path.exists() else None) for name, path in result_files().items()}

    result = recipe(tmp_path, "--dry-run", "--fid-n", "20", "--threads", "1", "--ae-steps", "5", "--iin-steps", "5",
                    "--ae-args", TINY_AE, "--iin-args", TINY_IIN)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # three edflow runs in the scratch directory, none in the repository
    ae_run, = sorted((tmp_path / "logs").glob("*_recipe_mnist_ae_cpu32"))
    iin_run, = sorted((tmp_path / "logs").glob("*_recipe_mnist_iin_cpu"))
    assert (sorted(logs.iterdir()) if logs.is_dir() else []) == repo_runs
    assert {name: (path.stat().st_mtime_ns if path.exists() else None)
            for name, path in result_files().items()} == results

    # the IIN's first stage is the autoencoder run: its last checkpoint and its model_params as trained
    iin_config = yaml.safe_load(EdflowRunner.train_config(iin_run).read_text())
    first_stage = iin_config["model_params"]["first_stage"]
    assert first_stage["checkpoint"] == str((ae_run / "train" / "checkpoints" / "model-5.ckpt").resolve())
    assert first_stage["model_params"]["base_channels"] == 4
    assert iin_config["model_params"]["n_flow"] == 2

    # the evaluation: the IIN's last checkpoint on the test split, FID and KID of 20 decoded samples
    scores = yaml.safe_load((iin_run / "results" / "scores.yaml").read_text())
    final = scores["final"]
    assert final["dataset"] == "invproto.data.MNIST32Test" and final["step"] == 5
    assert [entry["dataset"] for entry in scores["per_epoch"]] == ["invproto.data.MNIST32Validation"]
    assert final["fid_samples"] > 0 and math.isfinite(final["kid_samples"]) and final["kid_samples_std"] == 0
    assert "fid_floor" in final  # below n = 10000 the floor is reported beside the FID

    records = printed_records(result.stdout)
    assert set(records) == set(FIGURES), result.stdout[-3000:]
    head, fields = records["mnist_iin.fid_samples_n10000"]
    assert head.endswith("FID (target 10.0)")
    assert fields["fid"] == round(final["fid_samples"], 2) and fields["kid"] == round(final["kid_samples"], 5)
    assert fields["n_images"] == 20 and fields["threads"] == 1 and not fields["ae_reused"]
    assert fields["ae_steps"] == fields["iin_steps"] == 5
    for key in ("ae_minutes", "iin_minutes", "eval_minutes", "total_minutes", "ae_s_per_step", "iin_s_per_step"):
        assert fields[key] is not None and fields[key] >= 0, key
    assert fields["total_minutes"] >= fields["ae_minutes"] + fields["iin_minutes"] + fields["eval_minutes"] - 0.15
    assert records["mnist_iin.kid_samples"][0].endswith("KID (target None)")


def test_a_reused_autoencoder_counts_from_its_start_to_its_last_checkpoint(tmp_path):
    from datetime import datetime

    from benchmarks.runs import training_wall_s

    run = tmp_path / "2026-03-01T10-00-00_recipe_mnist_ae_cpu32"
    checkpoints = run / "train" / "checkpoints"
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training_wall_s(run)
    checkpoints.mkdir(parents=True)
    started = datetime(2026, 3, 1, 10, 0, 0).timestamp()
    for name, seconds in (("model-10.ckpt", 600.0), ("model-5.ckpt", 900.0)):  # a lower step written later
        (checkpoints / name).write_bytes(b"")
        os.utime(checkpoints / name, (started + seconds, started + seconds))
    assert training_wall_s(run) == pytest.approx(600.0)  # up to the highest step, as the run trained
