"""prototypeDL: test accuracy on MNIST or Fashion-MNIST, the checkpoint selected on validation.

Trains ``configs/<dataset>_protodl.yaml`` as shipped (a checkpoint and a
validation score after every epoch), picks the epoch with the best validation
accuracy, and evaluates only that checkpoint on the official test split with
``edflow -p -c``. Writes ``<dataset>_protodl.test_accuracy``. The reference
table's best (0.9920 MNIST, 0.9039 Fashion-MNIST) was selected on the test set.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.protodl_accuracy --dataset mnist
    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.protodl_accuracy --dataset fashionmnist

Smoke test: ``--steps 20 --output smoke`` (writes ``smoke.test_accuracy.json``; delete it).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.results_io import write_result
from benchmarks.runs import scores, test_selected, train

TARGETS = {"mnist": 0.99, "fashionmnist": 0.904}
TEST_SPLITS = {"mnist": "invproto.data.MNISTTest", "fashionmnist": "invproto.data.FashionMNISTTest"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(TARGETS), required=True)
    parser.add_argument("--epochs", type=int, help="override num_epochs of the config")
    parser.add_argument("--steps", type=int, help="stop after this many steps (smoke tests)")
    parser.add_argument("--output", help="result name prefix (default <dataset>_protodl)")
    args = parser.parse_args()

    config = f"configs/{args.dataset}_protodl.yaml"
    overrides = [*(["--num_epochs", str(args.epochs)] if args.epochs else []),
                 *(["--num_steps", str(args.steps)] if args.steps else [])]
    name = f"bench_{args.dataset}_protodl"
    start = time.perf_counter()
    run, train_wall = train(config, name, *overrides)
    selected, test = test_selected(run, TEST_SPLITS[args.dataset])
    wall = time.perf_counter() - start
    print(f"train {train_wall:.0f} s, total {wall:.0f} s; selected step {selected['step']} "
          f"(validation accuracy {selected['accuracy']:.4f}) -> test accuracy {test['accuracy']:.4f}")
    write_result(f"{args.output or args.dataset + '_protodl'}.test_accuracy", round(test["accuracy"], 4),
                 "fraction", TARGETS[args.dataset], wall,
                 command=f"edflow -b {config} -t {' '.join(overrides)} && edflow -p <run>/configs/<train>.yaml "
                         f"-c <best validation checkpoint> --datasets/validation {TEST_SPLITS[args.dataset]}",
                 epochs=len(scores(run)["per_epoch"]), selected_step=selected["step"],
                 validation_accuracy=round(selected["accuracy"], 4), train_wall_s=round(train_wall, 1),
                 run=str(run.relative_to(run.parents[1])))


if __name__ == "__main__":
    main()
