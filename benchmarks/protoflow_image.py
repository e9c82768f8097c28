"""Image prototype flow: MNIST test accuracy, calibration and bits/dim of a flow trained from scratch on pixels.

Trains ``configs/mnist_protoflow_image.yaml`` (a two-level Glow-style flow,
5 Gaussian prototypes per digit on its final latent), then evaluates the last
checkpoint on the official MNIST test split with ``edflow -p``.

Writes

* ``mnist_protoflow_image.test_accuracy`` (fraction; ECE, NLL and the
  validation accuracy ride along),
* ``mnist_protoflow_image.bpd``: test bits/dim, ``-log2 p(x) / 784`` with
  ``p(x)`` the exact marginal under the uniform class prior on the standard
  8-bit scale (flows of this size on MNIST: about 1.0-1.3).

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.protoflow_image

Smoke test (writes nothing): ``... -m benchmarks.protoflow_image --steps 20 --dry-run``
(``--override KEY VALUE`` adds training overrides, e.g. ``model_params/hidden_channels 8``).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.results_io import write_results
from benchmarks.runs import train_and_test

CONFIG = "configs/mnist_protoflow_image.yaml"
ACCURACY_TARGET = 0.985  # the invproto MNIST classifier's level (configs/mnist_clf.yaml)
BPD_TARGET = 1.3  # upper end of published MNIST flows (RealNVP/Glow: about 1.0-1.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    parser.add_argument("--steps", type=int, help="stop training after this many steps (smoke tests)")
    parser.add_argument("--override", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="extra training override, e.g. model_params/hidden_channels 8")
    parser.add_argument("--dry-run", action="store_true", help="print the figures, write no result file")
    args = parser.parse_args()

    start = time.perf_counter()
    name = "bench_mnist_protoflow_image"
    schedule = [*(["--num_epochs", str(args.epochs)] if args.epochs else []),
                *(["--num_steps", str(args.steps)] if args.steps else []),
                *(arg for key, value in args.override for arg in (f"--{key}", value))]
    run, validation, test, train_wall = train_and_test(CONFIG, name, schedule, "invproto.data.MNISTTest")
    wall = time.perf_counter() - start
    common = dict(command=f"edflow -b {CONFIG} -t {' '.join(schedule)} && edflow -p <run>/configs/<train>.yaml "
                          f"--datasets/validation invproto.data.MNISTTest".replace("  ", " "),
                  steps=test["step"], train_wall_s=round(train_wall, 1),
                  validation_accuracy=round(validation["accuracy"], 4),
                  validation_bits_per_dim=round(validation["bits_per_dim"], 4),
                  test_ece=round(test["ece"], 4), test_nll=round(test["nll"], 4),
                  dead_prototypes=int(test["dead_prototypes"]), run=str(run.relative_to(run.parents[1])))
    figures = [("mnist_protoflow_image.test_accuracy", round(test["accuracy"], 4), "fraction", ACCURACY_TARGET),
               ("mnist_protoflow_image.bpd", round(test["bits_per_dim"], 4), "bits/dim (8-bit, test)", BPD_TARGET)]
    write_results(figures, wall, args.dry_run, **common)
    print(f"test ECE: {test['ece']:.4f}; wall time: {wall:.0f} s")


if __name__ == "__main__":
    main()
