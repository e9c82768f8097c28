"""Per-step cost of training the MNIST classifier under edflow vs a plain PyTorch loop.

Same model (configs/mnist_clf.yaml), batch size, optimizer and schedule; same
dataset object. How each side is timed: :mod:`benchmarks.step_timing`.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.edflow_overhead
Writes ``mnist_clf.edflow_overhead`` = edflow seconds/step / plain seconds/step.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
import yaml

from benchmarks.runs import REPO
from benchmarks.step_timing import edflow_seconds_per_step, plain_seconds_per_step, write_step_ratio
from invproto.data import MNISTTrain
from invproto.models.classifier import Classifier

CONFIG = yaml.safe_load((REPO / "configs" / "mnist_clf.yaml").read_text())
OVERRIDES = ["--data/validation_size", "128", "--log_freq", "100000"]


def plain(steps: int) -> float:
    config = {**CONFIG, "data": {**CONFIG["data"], "validation_size": 128}}
    torch.manual_seed(0)
    model = Classifier(config)
    return plain_seconds_per_step(model, model.parameters(),
                                  lambda images, labels: F.cross_entropy(model(images), labels),
                                  MNISTTrain(config), CONFIG, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=220)
    args = parser.parse_args()
    steps = args.long - args.short
    write_step_ratio("mnist_clf.edflow_overhead", lambda: plain(steps),
                     lambda: edflow_seconds_per_step("configs/mnist_clf.yaml", OVERRIDES, args.short, args.long,
                                                     "bench_overhead"),
                     steps, CONFIG["batch_size"])


if __name__ == "__main__":
    main()
