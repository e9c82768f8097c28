"""Per-step cost of training the MNIST classifier under edflow vs a plain PyTorch loop.

Same model (configs/mnist_clf.yaml), batch size, optimizer and schedule; same
dataset object. edflow's time per step is the difference of two CLI runs of
N1 and N2 steps divided by N2 - N1, which cancels start-up, data loading and
the epoch-end evaluation. The plain loop uses a ``torch.utils.data.DataLoader``
over the same dataset with as many workers as invproto gives edflow. It is
timed before and after the edflow runs; the mean is the baseline.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.edflow_overhead
Writes ``mnist_clf.edflow_overhead`` = edflow seconds/step / plain seconds/step.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
import yaml

from benchmarks.results_io import write_result
from benchmarks.runs import REPO, edflow
from invproto.config.schema import OptimizerParams
from invproto.data import MNISTTrain
from invproto.iterators.optimization import build_optimizer, build_schedule
from invproto.models.classifier import Classifier

CONFIG = yaml.safe_load((REPO / "configs" / "mnist_clf.yaml").read_text())
COMMON = ["--data/validation_size", "128", "--log_freq", "100000"]


def plain_seconds_per_step(steps: int, warmup: int = 10) -> float:
    """Seconds per training step of a plain PyTorch loop with the same ingredients."""
    config = {**CONFIG, "data": {**CONFIG["data"], "validation_size": 128}}
    torch.manual_seed(0)
    model = Classifier(config)
    optimizer_params = OptimizerParams(**CONFIG["optimizer"])
    optimizer = build_optimizer(model.parameters(), optimizer_params)
    schedule = build_schedule(optimizer, warmup + steps, optimizer_params)
    loader = torch.utils.data.DataLoader(MNISTTrain(config), batch_size=CONFIG["batch_size"], shuffle=True,
                                         num_workers=os.cpu_count(), persistent_workers=True)
    batches = iter(loader)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        batch = next(batches)
        images = batch["image"].permute(0, 3, 1, 2).contiguous()
        loss = F.cross_entropy(model(images), batch["class"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return (time.perf_counter() - start) / steps


def edflow_seconds_per_step(short: int, long: int) -> float:
    walls = {}
    for steps in (short, long):
        walls[steps], _ = edflow("-b", "configs/mnist_clf.yaml", "-t", *COMMON, "--num_steps", str(steps),
                                 "-n", f"bench_overhead_{steps}")
    return (walls[long] - walls[short]) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=220)
    args = parser.parse_args()
    start = time.perf_counter()
    steps = args.long - args.short
    plain_before = plain_seconds_per_step(steps)
    under_edflow = edflow_seconds_per_step(args.short, args.long)
    plain_after = plain_seconds_per_step(steps)
    plain = (plain_before + plain_after) / 2
    write_result("mnist_clf.edflow_overhead", round(under_edflow / plain, 3), "x (edflow s/step / plain s/step)",
                 1.10, time.perf_counter() - start, steps=steps, edflow_s_per_step=round(under_edflow, 4),
                 plain_s_per_step_before=round(plain_before, 4), plain_s_per_step_after=round(plain_after, 4),
                 batch_size=CONFIG["batch_size"])


if __name__ == "__main__":
    main()
