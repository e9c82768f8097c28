"""Multi-process training under torchrun (invproto.distributed): shards, collectives, ActNorm init, the CLI.

Everything runs on the CPU with gloo: the shard arithmetic in-process, the
collectives in two processes started with ``torch.multiprocessing``, and
training as ``torchrun --nproc_per_node=2 edflow ...`` against the same run
in one process.
"""

from __future__ import annotations

import csv
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing
import yaml
from edflow.data.dataset_mixin import DatasetMixin
from edflow_runner import EDFLOW, QUICK, SHARED_DATA, EdflowRunner

from invproto import distributed
from invproto.data.batches import ArrayBatches, make_batches
from invproto.data.sharding import Shard
from invproto.errors import ConfigError
from invproto.modules.actnorm import ActNorm

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
STEPS = 10


class Indices:
    """An in-memory dataset whose batches are their own indices."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray) -> dict:
        return {"x": indices.copy()}


class IndexExamples(DatasetMixin):
    """A dataset built example by example (no ``get_batch``): chainer's path."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def get_example(self, i: int) -> dict:
        return {"x": np.array(i)}


def epochs_of(batches, n_epochs: int) -> list[list[np.ndarray]]:
    """The ``index_`` of every batch of ``n_epochs`` epochs, resetting at each epoch start as edflow does."""
    epochs = []
    for _ in range(n_epochs):
        batches.reset()
        epochs.append([np.asarray(next(batches)["index_"]) for _ in range(len(batches))])
    return epochs


# --- shards ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, batch_size, world", [(20, 4, 2), (22, 6, 3), (7, 4, 2)])
def test_rank_batches_make_the_single_process_batches(n, batch_size, world):
    """Per step, the ranks' batches in rank order are the one-process batch; per epoch, the ranks' parts are
    disjoint (but for the padding of the last batch) and together are the epoch, reshuffled every epoch."""
    single = epochs_of(ArrayBatches(Indices(n), batch_size, shuffle=True, seed=5), 2)
    ranks = [epochs_of(ArrayBatches(Indices(n), batch_size, shuffle=True, seed=5, shard=Shard(r, world)), 2)
             for r in range(world)]
    assert all(len(rank_epochs[0]) == len(single[0]) == -(-n // batch_size) for rank_epochs in ranks)
    for epoch, single_batches in enumerate(single):
        parts = [np.concatenate(rank_epochs[epoch]) for rank_epochs in ranks]
        assert len({len(p) for p in parts}) == 1
        every = np.concatenate(parts)
        assert sorted(set(every)) == list(range(n))
        padding = len(every) - n
        assert padding == -n % world and sorted(every)[:] == sorted([*range(n), *single_batches[0][:padding]])
        for step, single_batch in enumerate(single_batches):
            joined = np.concatenate([rank_epochs[epoch][step] for rank_epochs in ranks])
            np.testing.assert_array_equal(joined[:len(single_batch)], single_batch)
    assert not np.array_equal(np.concatenate(single[0]), np.concatenate(single[1]))


def test_global_batch_must_split_evenly():
    with pytest.raises(ConfigError, match="batch_size 32 is the global batch .* multiple of 3"):
        Shard(1, 3).local_batch_size(32)
    assert Shard(1, 4).local_batch_size(32) == 8


# --- collectives in two real processes ----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def actnorm_input() -> torch.Tensor:
    """A fixed ``(8, 3, 4, 4)`` batch, channel means 1..3 and stds 2..4: rank r of 2 holds rows 4r..4r+3."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=generator)
    return x * torch.tensor([2.0, 3.0, 4.0]).view(1, 3, 1, 1) + torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    """One rank of the two-process test: what each helper gives, pickled to ``out/rank<r>.pkl``."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.setup()
    norm = ActNorm(3).train()
    norm(actnorm_input().chunk(world)[rank])
    parameter = torch.nn.Parameter(torch.zeros(2))
    parameter.grad = torch.full((2,), float(rank + 1))
    distributed.average_gradients([parameter])
    np.random.seed(0)  # as prepare_run seeds every rank
    arrays = make_batches(Indices(30), batch_size=8, shuffle=True)
    examples = make_batches(IndexExamples(30), batch_size=8, shuffle=True, n_processes=1)
    try:
        example_epochs = epochs_of(examples, 2)
    finally:
        examples.finalize()
    result = {"loc": norm.loc.detach(), "log_scale": norm.log_scale.detach(), "gradient": parameter.grad,
              "scalars": distributed.mean_scalars_over_ranks({"loss": float(rank), f"only_{rank}": 1.0}),
              "gathered": distributed.gather_to_main(rank * 10), "all_gathered": distributed.all_gather(rank * 10),
              "array_epochs": epochs_of(arrays, 2),
              "example_epochs": example_epochs, "local_batch_sizes": (arrays.batch_size, examples.batch_size)}
    Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    torch.multiprocessing.start_processes(_rank_main, args=(2, free_port(), str(out)), nprocs=2, start_method="fork")
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(2)]


def test_actnorm_initialises_from_the_global_batch(two_ranks):
    single = ActNorm(3).train()
    single(actnorm_input())
    x = actnorm_input().transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(single.loc.detach(), -x.mean(1))
    torch.testing.assert_close(single.log_scale.detach(), -torch.log(x.std(1) + single.eps))
    for rank in two_ranks:
        torch.testing.assert_close(rank["loc"], single.loc.detach())
        torch.testing.assert_close(rank["log_scale"], single.log_scale.detach())


def test_collectives_average_and_gather(two_ranks):
    for rank in two_ranks:
        torch.testing.assert_close(rank["gradient"], torch.full((2,), 1.5))
        assert rank["scalars"] == {"loss": 0.5, "only_0": 1.0, "only_1": 1.0}
    assert two_ranks[0]["gathered"] == [0, 10] and two_ranks[1]["gathered"] is None
    assert two_ranks[0]["all_gathered"] == two_ranks[1]["all_gathered"] == [0, 10]
    assert distributed.all_gather(3) == distributed.gather_to_main(3) == [3]  # one process


@pytest.mark.parametrize("path", ["array_epochs", "example_epochs"])
def test_each_rank_reads_a_disjoint_shard_of_every_epoch(two_ranks, path):
    """Whole-batch and chainer iteration: 4 of the global 8 per rank, shards disjoint, union the epoch.

    Every epoch has a new order.
    """
    assert all(rank["local_batch_sizes"] == (4, 4) for rank in two_ranks)
    epochs = []
    for epoch in range(2):
        shards = [np.concatenate(rank[path][epoch])[:15] for rank in two_ranks]  # 30 examples / 2 ranks
        assert not set(shards[0]) & set(shards[1])
        assert sorted(np.concatenate(shards)) == list(range(30))
        epochs.append(shards[0])
    assert not np.array_equal(*epochs)
    if path == "array_epochs":  # same seed, same global order as a single process
        np.random.seed(0)
        single = epochs_of(make_batches(Indices(30), batch_size=8, shuffle=True), 2)
        for epoch in range(2):
            joined = [np.concatenate([rank[path][epoch][step] for rank in two_ranks]) for step in range(4)]
            for step in range(4):
                np.testing.assert_array_equal(joined[step][:len(single[epoch][step])], single[epoch][step])


# --- the edflow CLI under torchrun ---------------------------------------------------------------

def read_metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def train_losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in read_metrics(run) if r["phase"] == "train"]


class TorchrunRunner(EdflowRunner):
    """:class:`EdflowRunner` under ``torchrun --standalone``, with a private TMPDIR to check for leftovers."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.tmp = self.workdir / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.env = {**self.env, "TMPDIR": str(self.tmp)}

    def torchrun(self, nproc: int, *args: str) -> subprocess.Popen:
        return subprocess.Popen([TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", EDFLOW, *args],
                                cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    def plain(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([EDFLOW, *args], cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


TRAIN = ["-b", "configs/mnist_clf.yaml", "-t", *QUICK, "--num_steps", str(STEPS), "--log_freq", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The same 10 steps (global batch 32) in two processes and in one, run side by side."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("needs ../shared/data")
    runner = TorchrunRunner(tmp_path_factory.mktemp("ddp"))
    two, one = runner.torchrun(2, *TRAIN, "-n", "two"), runner.plain(*TRAIN, "-n", "one")
    return runner, finish(two), finish(one)


@pytest.mark.slow
def test_two_processes_write_one_run(trained):
    runner, output, _ = trained
    run = runner.run_dir("two")
    assert len(list((runner.workdir / "logs").iterdir())) == 2  # "two" and "one"
    assert [p.name for p in (run / "train" / "checkpoints").iterdir()] == [f"model-{STEPS}.ckpt"]
    assert output.count(f"invproto: accuracy at step {STEPS} on") == 1
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())
    assert [entry["step"] for entry in scores["per_epoch"]] == [STEPS]
    assert yaml.safe_load((run / "results" / "model_info.yaml").read_text())["processes"] == 2
    assert not list(runner.tmp.glob("invproto-rank*")), "the other rank's throwaway directory is left over"


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(trained):
    runner = trained[0]
    two, one = runner.run_dir("two"), runner.run_dir("one")
    losses_two, losses_one = train_losses(two), train_losses(one)
    assert len(losses_two) == len(losses_one) == STEPS
    assert losses_two == pytest.approx(losses_one, abs=1e-4)
    assert losses_two[-1] < losses_two[0]
    final_two, final_one = (yaml.safe_load((run / "results" / "scores.yaml").read_text())["final"]
                            for run in (two, one))
    assert final_two["nll"] == pytest.approx(final_one["nll"], abs=1e-4)
    assert final_two["accuracy"] == pytest.approx(final_one["accuracy"], abs=1.5 / 256)  # 256 validation images


@pytest.mark.slow
def test_resume_with_another_number_of_processes(trained):
    """A one-process run continues under torchrun with two processes, in its own run directory."""
    runner = trained[0]
    run = runner.run_dir("one")
    output = finish(runner.torchrun(2, "-p", str(run), "-t", "--num_steps", str(STEPS + 4)))
    assert f"invproto: resumed from {run / 'train' / 'checkpoints' / f'model-{STEPS}.ckpt'} at step {STEPS}" in output
    assert (run / "train" / "checkpoints" / f"model-{STEPS + 4}.ckpt").is_file()
    assert len(list((runner.workdir / "logs").iterdir())) == 2
    assert yaml.safe_load((run / "results" / "scores.yaml").read_text())["final"]["step"] == STEPS + 4
    steps = [int(r["step"]) for r in read_metrics(run) if r["phase"] == "train"]
    assert steps == list(range(STEPS + 4))
