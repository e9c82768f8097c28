"""The conditional INN of the MNIST classifier's logits: do its samples look to the classifier like the input?

Trains (or reuses) the classifier of ``configs/mnist_clf.yaml`` and the
autoencoder of ``configs/mnist_ae_cpu.yaml``, trains ``configs/mnist_cinn.yaml``
on them through the edflow command line, and evaluates it on the MNIST test
split (``edflow -p ... --datasets/validation invproto.data.MNISTTest``), whose
callbacks report (:mod:`invproto.callbacks.invariances`):

* ``mnist_cinn.prediction_agreement`` -- ``agree_samples``: fraction of
  samples the classifier assigns to the class it assigned the input, target
  >= 0.95; the record holds the floor (the autoencoder's reconstructions,
  ``agree_floor``) and the ceiling (another image, ``agree_ceiling``);
* ``mnist_cinn.representation_rel_error`` -- ``rel_error_samples``,
  ‖Φ(sample) − Φ(x)‖ / ‖Φ(x)‖ at the logits, with ``rel_error_floor`` and
  ``rel_error_ceiling`` in the same record (and the cosines).

    .venv/bin/python -m benchmarks.mnist_cinn [--classifier-run logs/<run>] [--autoencoder-run logs/<run>]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.results_io import write_result
from benchmarks.runs import edflow, scores, train, train_config
from benchmarks.sprites_cinn import cinn_overrides


def evaluation_scores(run: Path, *overrides: str) -> dict:
    """The newest evaluation scores of ``run`` after ``edflow -p`` on the MNIST test split."""
    edflow("-p", str(train_config(run)), "--datasets/validation", "invproto.data.MNISTTest", *overrides)
    evaluations = [entry for entry in scores(run)["evaluations"] if entry["dataset"] == "invproto.data.MNISTTest"]
    return evaluations[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classifier-run", type=Path, help="a run of configs/mnist_clf.yaml (else trained)")
    parser.add_argument("--autoencoder-run", type=Path, help="a run of configs/mnist_ae_cpu.yaml (else trained)")
    args = parser.parse_args()
    start = time.perf_counter()
    classifier = args.classifier_run or train("configs/mnist_clf.yaml", "bench_cinn_mnist_clf")[0]
    autoencoder = args.autoencoder_run or train("configs/mnist_ae_cpu.yaml", "bench_cinn_mnist_ae")[0]
    cinn, train_wall = train("configs/mnist_cinn.yaml", "bench_mnist_cinn", *cinn_overrides(classifier, autoencoder))
    test = evaluation_scores(cinn)
    wall = time.perf_counter() - start
    common = dict(classifier_run=str(classifier), autoencoder_run=str(autoencoder), cinn_run=str(cinn),
                  cinn_train_wall_s=round(train_wall, 1), split="MNIST test (10000 images, 6 samples each)")
    write_result("mnist_cinn.prediction_agreement", round(test["agree_samples"], 4), "fraction", 0.95, wall,
                 floor=test["agree_floor"], ceiling=test["agree_ceiling"], **common)
    write_result("mnist_cinn.representation_rel_error", round(test["rel_error_samples"], 4),
                 "relative L2 error of the logits", None, wall,
                 floor=test["rel_error_floor"], ceiling=test["rel_error_ceiling"],
                 cosine_samples=test["cosine_samples"], cosine_floor=test["cosine_floor"],
                 cosine_ceiling=test["cosine_ceiling"], **common)
    if "correct_attacked" in test:
        write_result("mnist_cinn.attacked_decode_agreement", round(test["attacked_decode_agrees"], 4), "fraction",
                     None, wall, clean_accuracy=test["correct_clean"], attacked_accuracy=test["correct_attacked"],
                     random_sign_accuracy=test["correct_random"],
                     random_decode_agreement=test["random_decode_agrees"], **common)


if __name__ == "__main__":
    main()
