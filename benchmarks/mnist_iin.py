"""MNIST IIN: FID of samples decoded through the inverse flow and the autoencoder, on the MNIST test split.

Trains ``configs/mnist_iin.yaml`` on a frozen autoencoder of
``configs/mnist_ae_cpu.yaml`` (28 px, the one ``benchmarks/mnist_ae.py``
trains) through the edflow CLI, then evaluates the last checkpoint on the
official test split with ``edflow -p``: N(0, I) samples -> inverse flow ->
decoder, FID on ``n_images`` (10000 with a GPU, 1000 on a CPU). The IIN
reference reports 5.25 (32 px autoencoder trained 50 epochs on a GPU).

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.mnist_iin --first-stage <mnist_ae_cpu ckpt> [--epochs 2]

Writes ``mnist_iin.fid_samples``; the autoencoder's own sample FID on the
same images is ``mnist_ae.fid_samples``.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.results_io import write_result
from benchmarks.runs import evaluate, iin_on_cpu_autoencoder, train

IIN_REFERENCE_FID = 5.25


def fid_overrides(n_images: int) -> list[str]:
    return ["--eval_pipeline/callback_kwargs/fid_samples/n_images", str(n_images)]


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-stage", required=True, help="checkpoint of configs/mnist_ae_cpu.yaml")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (batch 25: 2200 steps each)")
    parser.add_argument("--n-images", type=int, default=10000 if gpu else 1000, help="test images for the FID")
    parser.add_argument("--train-fid-images", type=int, default=10000 if gpu else 100,
                        help="images for the per-epoch FID during training")
    args = parser.parse_args()

    name = "bench_mnist_iin"
    run, train_wall = train("configs/mnist_iin.yaml", name, "--num_epochs", str(args.epochs),
                            *iin_on_cpu_autoencoder(args.first_stage), *fid_overrides(args.train_fid_images))
    test, eval_wall = evaluate(run, "invproto.data.MNISTTest", *fid_overrides(args.n_images))
    write_result("mnist_iin.fid_samples", round(test["fid_samples"], 2), "FID", IIN_REFERENCE_FID,
                 train_wall + eval_wall, epochs=args.epochs, steps=test["step"], n_images=args.n_images,
                 first_stage=args.first_stage, train_wall_s=round(train_wall, 1), eval_wall_s=round(eval_wall, 1),
                 test_bits_per_dim=round(test["bits_per_dim"], 4), run=run.name,
                 note="target: IIN README (32 px AE, GPU, 10000 test images); this run's first stage is the "
                      "28 px CPU autoencoder")


if __name__ == "__main__":
    main()
