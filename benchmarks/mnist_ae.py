"""MNIST autoencoder: FID of reconstructions and of N(0, I) samples on the MNIST test split.

Trains ``configs/mnist_ae_cpu.yaml`` through the edflow CLI, then evaluates the
last checkpoint on the official test split with ``edflow -p`` on ``n_images``
images (default 10000 with a GPU, 1000 on a CPU, where Inception runs at about
8 images/s). Writes ``mnist_ae.fid_reconstruction`` and ``mnist_ae.fid_samples``.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.mnist_ae [--epochs 3] [--n-images N]

The per-epoch FIDs during training only monitor the run; on a CPU they use
100 images (``--train-fid-images``) to keep the benchmark within minutes.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.results_io import write_result
from benchmarks.runs import evaluate, train

CONFIG = "configs/mnist_ae_cpu.yaml"
FIDS = ("fid_reconstruction", "fid_samples")
IIN_SAMPLES_FID = 5.25  # IIN README, MNIST autoencoder samples (32 px, TF-Inception, 10000 test images)


def fid_overrides(n_images: int) -> list[str]:
    return [arg for name in FIDS for arg in (f"--eval_pipeline/callback_kwargs/{name}/n_images", str(n_images))]


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (860 steps each)")
    parser.add_argument("--n-images", type=int, default=10000 if gpu else 1000, help="test images for the FIDs")
    parser.add_argument("--train-fid-images", type=int, default=None if gpu else 100,
                        help="images for the per-epoch FIDs during training (default: the config's)")
    args = parser.parse_args()

    name = "bench_mnist_ae"
    monitoring = fid_overrides(args.train_fid_images) if args.train_fid_images else []
    run, train_wall = train(CONFIG, name, "--num_epochs", str(args.epochs), *monitoring)
    test, eval_wall = evaluate(run, "invproto.data.MNISTTest", *fid_overrides(args.n_images))
    common = dict(command=f"edflow -b {CONFIG} -t --num_epochs {args.epochs} && edflow -p <run>/configs/<train>.yaml "
                          f"--datasets/validation invproto.data.MNISTTest (FID n_images {args.n_images})",
                  epochs=args.epochs, steps=test["step"], n_images=args.n_images, train_wall_s=round(train_wall, 1),
                  eval_wall_s=round(eval_wall, 1), test_l1=round(test["l1"], 4), test_kl=round(test["kl"], 3),
                  run=str(run.relative_to(run.parents[1])))
    wall = train_wall + eval_wall
    write_result("mnist_ae.fid_reconstruction", round(test["fid_reconstruction"], 2), "FID", None, wall, **common)
    write_result("mnist_ae.fid_samples", round(test["fid_samples"], 2), "FID", IIN_SAMPLES_FID, wall, **common,
                 note="target: IIN's MNIST AE samples (32 px, 50 epochs on a GPU, 10000 test images); "
                      "this run is the 28 px CPU config with a few epochs")


if __name__ == "__main__":
    main()
