"""Latent prototype flow: test accuracy, calibration and recognisable prototypes on MNIST / Fashion-MNIST.

1. First stage: the given autoencoder checkpoint, else one trained now with
   ``configs/mnist_ae_cpu.yaml`` (on Fashion-MNIST for ``--dataset fashionmnist``;
   the per-epoch FIDs use 100 images to stay within minutes on a CPU).
2. ``edflow -b configs/<dataset>_protoflow.yaml -t`` on it, then
   ``edflow -p`` of the last checkpoint on the official test split.
3. MNIST only: every prototype mean is decoded (inverse flow, then the
   autoencoder's decoder) and classified by a separately trained MNIST
   classifier (``--classifier``, else the newest ``logs/*_bench_mnist_clf``
   run, else one trained now with ``configs/mnist_clf.yaml``); the figure is
   the fraction assigned to the prototype's own class.

Writes ``<dataset>_protoflow.test_accuracy`` and, for MNIST,
``mnist_protoflow.ece`` and ``mnist_protoflow.decoded_prototype_class_rate``.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.protoflow_accuracy --dataset mnist \\
        [--first-stage logs/<mnist_ae_cpu run>/train/checkpoints/model-<step>.ckpt]
    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.protoflow_accuracy --dataset fashionmnist

``--set key=value`` (repeatable) overrides a config key for training, e.g.
``--set model_params/reconstruction_weight=0.1``. ``--tta-num N`` evaluates
the test split a second time with N augmented views per image (ProtoFlow's
test-time augmentation); the figures then use it and the plain ones are
stored beside them. ``--epochs``/``--steps`` shorten the run and
``--dry-run`` writes no result (smoke tests).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from benchmarks.results_io import write_results
from benchmarks.runs import REPO, evaluate, latest_run, newest_checkpoint, train, train_and_test, train_config
from invproto.models.base import load_checkpoint
from invproto.models.classifier import Classifier
from invproto.models.protoflow import LatentPrototypeFlow

DATASETS = {  # dataset -> (data class prefix, test accuracy target)
    "mnist": ("MNIST", 0.99),
    "fashionmnist": ("FashionMNIST", 0.904),
}
DECODED_CLASS_RATE_TARGET = 0.9


def train_first_stage(dataset: str) -> Path:
    """Train ``configs/mnist_ae_cpu.yaml`` on ``dataset``; return its last checkpoint."""
    prefix, _ = DATASETS[dataset]
    name = f"bench_{dataset}_ae_first_stage"
    fid = [arg for callback in ("fid_reconstruction", "fid_samples")
           for arg in (f"--eval_pipeline/callback_kwargs/{callback}/n_images", "100")]
    run, _ = train("configs/mnist_ae_cpu.yaml", name, "--datasets/train", f"invproto.data.{prefix}Train",
                   "--datasets/validation", f"invproto.data.{prefix}Validation", *fid)
    return newest_checkpoint(run)


def mnist_classifier(checkpoint: Path | None) -> Classifier:
    """The classifier of ``checkpoint`` (configs/mnist_clf.yaml), else of the newest benchmark run, else a new one."""
    if checkpoint is None:
        try:
            run = latest_run("bench_mnist_clf")
        except FileNotFoundError:
            run, _ = train("configs/mnist_clf.yaml", "bench_mnist_clf")
        checkpoint = newest_checkpoint(run)
    params = yaml.safe_load((REPO / "configs" / "mnist_clf.yaml").read_text())["model_params"]
    classifier = Classifier.from_params(**params)
    state = load_checkpoint(checkpoint, classifier, "classifier checkpoint", "pass a configs/mnist_clf.yaml checkpoint")
    classifier.load_state_dict(state["model"])
    return classifier.eval()


@torch.no_grad()
def decoded_prototype_class_rate(run: Path, classifier: Classifier) -> float:
    """Fraction of decoded prototype means that ``classifier`` assigns to the prototype's own class."""
    config = yaml.safe_load(train_config(run).read_text())
    model = LatentPrototypeFlow(config)
    state = load_checkpoint(newest_checkpoint(run), model, "checkpoint", "pass the run's own checkpoint")
    model.load_state_dict(state["model"])
    predicted = classifier(model.eval().prototype_images()).argmax(dim=1)
    return float((predicted == model.prototype_class).float().mean())


def config_override(setting: str) -> list[str]:
    """``"a/b=value"`` -> edflow's ``["--a/b", "value"]``."""
    key, separator, value = setting.partition("=")
    if not separator or not key:
        raise SystemExit(f"--set takes KEY=VALUE, got {setting!r}")
    return [f"--{key}", value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    parser.add_argument("--first-stage", type=Path, help="autoencoder checkpoint of configs/mnist_ae_cpu.yaml "
                                                         "(default: train one)")
    parser.add_argument("--classifier", type=Path, help="configs/mnist_clf.yaml checkpoint (MNIST only)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
    parser.add_argument("--steps", type=int, help="stop training after this many steps (smoke tests)")
    parser.add_argument("--tta-num", type=int, default=0,
                        help="also evaluate with this many augmented views per test image; the figures use it")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key for training (edflow's --KEY VALUE), repeatable")
    parser.add_argument("--dry-run", action="store_true", help="print the figures, write no result file")
    args = parser.parse_args()

    start = time.perf_counter()
    prefix, target = DATASETS[args.dataset]
    first_stage = args.first_stage.resolve() if args.first_stage else train_first_stage(args.dataset)
    config = f"configs/{args.dataset}_protoflow.yaml"
    name = f"bench_{args.dataset}_protoflow"
    schedule = [*(["--num_epochs", str(args.epochs)] if args.epochs else []),
                *(["--num_steps", str(args.steps)] if args.steps else []),
                *(arg for setting in args.set for arg in config_override(setting))]
    run, validation, test, train_wall = train_and_test(
        config, name, ["--model_params/first_stage/checkpoint", str(first_stage), *schedule],
        f"invproto.data.{prefix}Test")
    tta = {}
    if args.tta_num:
        tta = {"tta_num": args.tta_num, "test_accuracy_without_tta": round(test["accuracy"], 4),
               "test_ece_without_tta": round(test["ece"], 4)}
        test, _ = evaluate(run, f"invproto.data.{prefix}Test", "--iterator_params/tta_num", str(args.tta_num))
    wall = time.perf_counter() - start
    common = dict(steps=test["step"], train_wall_s=round(train_wall, 1), first_stage=str(first_stage),
                  validation_accuracy=round(validation["accuracy"], 4),
                  test_bits_per_dim=round(test["bits_per_dim"], 4),
                  dead_prototypes=int(test["dead_prototypes"]), run=str(run.relative_to(run.parents[1])), **tta)
    figures = [(f"{args.dataset}_protoflow.test_accuracy", round(test["accuracy"], 4), "fraction", target),
               (f"{args.dataset}_protoflow.ece", round(test["ece"], 4), "fraction (15 bins)", None)]
    if args.dataset == "mnist":
        rate = decoded_prototype_class_rate(run, mnist_classifier(args.classifier))
        figures.append(("mnist_protoflow.decoded_prototype_class_rate", round(rate, 4), "fraction",
                        DECODED_CLASS_RATE_TARGET))
    write_results(figures, wall, args.dry_run, **common)
    print(f"wall time: {wall:.0f} s")


if __name__ == "__main__":
    main()
