"""Per-step cost of training an IIN under edflow vs a plain PyTorch loop with the same flow.

Same model (``configs/mnist_iin.yaml``'s flow on a frozen MNIST autoencoder of
``configs/mnist_ae_cpu.yaml``), loss, batch size, optimizer and dataset object.
edflow's time per step is the difference of two CLI runs of N1 and N2 steps
divided by N2 - N1 (start-up, data loading and the epoch-end evaluation
cancel). The plain loop -- a ``DataLoader`` with as many workers as invproto
gives edflow -- is timed before and after the edflow runs; the mean is the
baseline. On a GPU it also times the flow's forward + inverse on 1000 codes.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.iin_step_ratio --first-stage <mnist_ae_cpu ckpt>

Writes ``iin.step_ratio_vs_plain`` = edflow seconds/step / plain seconds/step.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import yaml

from benchmarks.results_io import write_result
from benchmarks.runs import REPO, edflow, iin_on_cpu_autoencoder
from invproto.config.schema import OptimizerParams
from invproto.data import MNISTTrain
from invproto.iterators.base import default_device
from invproto.iterators.optimization import build_optimizer, build_schedule
from invproto.losses.iin import IINLoss
from invproto.models.iin import IIN

CONFIG = yaml.safe_load((REPO / "configs" / "mnist_iin.yaml").read_text())
FIRST_STAGE = yaml.safe_load((REPO / "configs" / "mnist_ae_cpu.yaml").read_text())


def first_stage(checkpoint: str) -> dict:
    return {"model": FIRST_STAGE["model"], "model_params": FIRST_STAGE["model_params"], "checkpoint": checkpoint}


def edflow_overrides(checkpoint: str) -> list[str]:
    """The IIN config on the 28 px CPU autoencoder with a small validation split and no logging."""
    return [*iin_on_cpu_autoencoder(checkpoint), "--data/validation_size", "128", "--log_freq", "100000"]


def plain_seconds_per_step(checkpoint: str, steps: int, warmup: int = 10) -> float:
    config = {**CONFIG, "model_params": {**CONFIG["model_params"], "first_stage": first_stage(checkpoint)},
              "data": {**CONFIG["data"], "validation_size": 128}}
    torch.manual_seed(0)
    device = default_device()
    model = IIN(config).to(device)
    loss_fn = IINLoss()
    optimizer_params = OptimizerParams(**CONFIG["optimizer"])
    optimizer = build_optimizer(model.flow.parameters(), optimizer_params)
    schedule = build_schedule(optimizer, warmup + steps, optimizer_params)
    loader = torch.utils.data.DataLoader(MNISTTrain(config), batch_size=CONFIG["batch_size"], shuffle=True,
                                         num_workers=os.cpu_count(), persistent_workers=True)
    batches = iter(loader)
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        images = next(batches)["image"].permute(0, 3, 1, 2).contiguous().to(device)
        loss, _ = loss_fn(*model(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def edflow_seconds_per_step(checkpoint: str, short: int, long: int) -> float:
    walls = {}
    for steps in (short, long):
        walls[steps], _ = edflow("-b", "configs/mnist_iin.yaml", "-t", *edflow_overrides(checkpoint),
                                 "--num_steps", str(steps), "-n", f"bench_iin_steps_{steps}")
    return (walls[long] - walls[short]) / (long - short)


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
    start = time.perf_counter()
    steps = args.long - args.short
    plain_before = plain_seconds_per_step(args.first_stage, steps)
    under_edflow = edflow_seconds_per_step(args.first_stage, args.short, args.long)
    plain_after = plain_seconds_per_step(args.first_stage, steps)
    plain = (plain_before + plain_after) / 2
    extra = {"flow_forward_inverse_ms_per_1k_codes": round(flow_ms_per_1k_codes(args.first_stage), 3)
             } if torch.cuda.is_available() else {}
    write_result("iin.step_ratio_vs_plain", round(under_edflow / plain, 3), "x (edflow s/step / plain s/step)",
                 1.10, time.perf_counter() - start, steps=steps, edflow_s_per_step=round(under_edflow, 4),
                 plain_s_per_step_before=round(plain_before, 4), plain_s_per_step_after=round(plain_after, 4),
                 batch_size=CONFIG["batch_size"], **extra)


if __name__ == "__main__":
    main()
