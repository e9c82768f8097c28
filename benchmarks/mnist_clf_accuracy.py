"""MNIST classifier: test accuracy after `edflow -b configs/mnist_clf.yaml -t` (2 epochs).

Trains with the config as shipped, then evaluates the last checkpoint on the
official test split with `edflow -p`. Writes ``mnist_clf.test_accuracy``.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.mnist_clf_accuracy
"""

from __future__ import annotations

from benchmarks.results_io import write_result
from benchmarks.runs import train_and_test


def main() -> None:
    name = "bench_mnist_clf"
    run, validation, test, train_wall = train_and_test("configs/mnist_clf.yaml", name, [], "invproto.data.MNISTTest")
    write_result("mnist_clf.test_accuracy", round(test["accuracy"], 4), "fraction", 0.985, train_wall,
                 command="edflow -b configs/mnist_clf.yaml -t && edflow -p <run>/configs/<train>.yaml "
                         "--datasets/validation invproto.data.MNISTTest",
                 epochs=2, steps=test["step"], validation_accuracy=round(validation["accuracy"], 4),
                 test_ece=round(test["ece"], 4), run=str(run.relative_to(run.parents[1])))


if __name__ == "__main__":
    main()
