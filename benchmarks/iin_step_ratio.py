"""Per-step cost of training an IIN under edflow vs a plain PyTorch loop with the same flow.

Same model (``configs/mnist_iin.yaml``'s flow on a frozen MNIST autoencoder of
``configs/mnist_ae_cpu.yaml``), loss, batch size, optimizer and dataset object.
How each side is timed: :mod:`benchmarks.step_timing`. On a GPU it also
times the flow's forward + inverse on 1000 codes.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.iin_step_ratio --first-stage <mnist_ae_cpu ckpt>

Writes ``iin.step_ratio_vs_plain`` = edflow seconds/step / plain seconds/step.
"""

from __future__ import annotations

import argparse
import time

import torch
import yaml

from benchmarks.runs import REPO, iin_on_cpu_autoencoder
from benchmarks.step_timing import edflow_seconds_per_step, plain_seconds_per_step, write_step_ratio
from invproto import distributed
from invproto.data import MNISTTrain
from invproto.losses.iin import IINLoss
from invproto.models.iin import IIN

CONFIG = yaml.safe_load((REPO / "configs" / "mnist_iin.yaml").read_text())
FIRST_STAGE = yaml.safe_load((REPO / "configs" / "mnist_ae_cpu.yaml").read_text())


def first_stage(checkpoint: str) -> dict:
    return {"model": FIRST_STAGE["model"], "model_params": FIRST_STAGE["model_params"], "checkpoint": checkpoint}


def edflow_overrides(checkpoint: str) -> list[str]:
    """The IIN config on the 28 px CPU autoencoder with a small validation split and no logging."""
    return [*iin_on_cpu_autoencoder(checkpoint), "--data/validation_size", "128", "--log_freq", "100000"]


def plain(checkpoint: str, steps: int) -> float:
    config = {**CONFIG, "model_params": {**CONFIG["model_params"], "first_stage": first_stage(checkpoint)},
              "data": {**CONFIG["data"], "validation_size": 128}}
    torch.manual_seed(0)
    model = IIN(config).to(distributed.device())
    loss = IINLoss()
    return plain_seconds_per_step(model, model.flow.parameters(), lambda images, labels: loss(*model(images))[0],
                                  MNISTTrain(config), CONFIG, steps)


def flow_ms_per_1k_codes(checkpoint: str, repeats: int = 20) -> float:
    """Forward + inverse of the flow on 1000 codes, milliseconds (GPU, after warm-up)."""
    config = {"model_params": {**CONFIG["model_params"], "first_stage": first_stage(checkpoint)}}
    model = IIN(config)
    flow = model.flow.cuda().eval()
    codes = torch.randn(1000, model.code_dim, device="cuda")
    with torch.inference_mode():
        for _ in range(3):
            flow.inverse(flow(codes)[0])
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            flow.inverse(flow(codes)[0])
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-stage", required=True, help="checkpoint of configs/mnist_ae_cpu.yaml")
    parser.add_argument("--short", type=int, default=20)
    parser.add_argument("--long", type=int, default=220)
    args = parser.parse_args()
    steps = args.long - args.short
    extra = {"flow_forward_inverse_ms_per_1k_codes": round(flow_ms_per_1k_codes(args.first_stage), 3)
             } if torch.cuda.is_available() else {}
    write_step_ratio("iin.step_ratio_vs_plain", lambda: plain(args.first_stage, steps),
                     lambda: edflow_seconds_per_step("configs/mnist_iin.yaml", edflow_overrides(args.first_stage),
                                                     args.short, args.long, "bench_iin_steps"),
                     steps, CONFIG["batch_size"], **extra)


if __name__ == "__main__":
    main()
