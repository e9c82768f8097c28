"""ColorfulMNIST factor dimensionalities of a trained classifier and a trained autoencoder, then a dIIN.

The IIN reference estimates how many of the 64 code dimensions the digit, the
colour and the residual need: [22, 11, 31] for its classifier and
[13, 17, 34] for its autoencoder. This script reproduces the pipeline with the
edflow CLI:

1. ``edflow -b configs/cmnist_clf.yaml -t`` (CPU-sized by the overrides below),
2. ``edflow -b configs/cmnist_clf.yaml configs/cmnist_dimeval.yaml -c <ckpt>`` -> ``cmnist_clf.factor_dims``,
3. the same for ``configs/cmnist_ae.yaml`` -> ``cmnist_ae.factor_dims``,
4. ``edflow -b configs/cmnist_clf_diin.yaml -t`` on the classifier with ``factor_config`` = the estimate
   (its validation NLL is stored beside ``cmnist_clf.factor_dims``).

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.cmnist_factor_dims \
        [--epochs 2] [--only classifier|autoencoder]

The reference trains for many more epochs with 64 base channels on a GPU; the
CPU recipe (``--base-channels``, ``--epochs``) is recorded with the figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.results_io import write_result
from benchmarks.runs import edflow, newest_checkpoint, reported_run, scores, train

DIMEVAL = "configs/cmnist_dimeval.yaml"
REFERENCE = {"clf": [22, 11, 31], "ae": [13, 17, 34]}


def factor_dims(config: str, checkpoint: Path, overrides: list[str]) -> tuple[list[int], float]:
    """Run the dimension-evaluation overlay on ``checkpoint``; the estimate from the evaluation run's scores."""
    name = f"dimeval_{Path(config).stem}"
    wall, output = edflow("-b", config, DIMEVAL, "-c", str(checkpoint), "-n", name, *overrides)
    final = scores(reported_run(output, name))["final"]
    return [int(final[f"factor_dim_{k}"]) for k in range(3)], wall


def classifier_pipeline(args, width: list[str]) -> None:
    """Steps 1, 2 and 4: the classifier (trained now, or ``--classifier-run``), its estimate, a dIIN on it."""
    if args.classifier_run:
        clf_run, clf_wall = Path(args.classifier_run), 0.0
    else:
        clf_run, clf_wall = train("configs/cmnist_clf.yaml", "bench_cmnist_clf",
                                  *width, "--num_epochs", str(args.epochs))
    clf_dims, clf_eval_wall = factor_dims("configs/cmnist_clf.yaml", newest_checkpoint(clf_run), width)
    diin_overrides = ["--model_params/first_stage/checkpoint", str(newest_checkpoint(clf_run)),
                      "--model_params/first_stage/model_params/base_channels", str(args.base_channels),
                      "--model_params/factor_config", str(clf_dims), "--num_epochs", str(args.diin_epochs),
                      "--batch_size", "64", "--optimizer/lr", "1.0e-3"]
    diin_run, diin_wall = train("configs/cmnist_clf_diin.yaml", "bench_cmnist_clf_diin", *diin_overrides)
    write_result("cmnist_clf.factor_dims", clf_dims, "dims [digit, colour, residual]", REFERENCE["clf"],
                 clf_wall + clf_eval_wall + diin_wall,
                 recipe=f"{args.epochs} epochs, base_channels {args.base_channels} (CPU recipe)",
                 classifier_validation_accuracy=round(scores(clf_run)["final"]["accuracy"], 4),
                 classifier_run=clf_run.name, diin_run=diin_run.name, diin_epochs=args.diin_epochs,
                 diin_factor_config=clf_dims,
                 diin_validation_nats_per_dim=round(scores(diin_run)["final"]["nats_per_dim"], 4),
                 note="target: the IIN reference's estimate for its classifier")


def autoencoder_pipeline(args, width: list[str]) -> None:
    """Step 3: the autoencoder, CPU-sized (batch 64 at lr 1e-3, no discriminator, FID monitoring on 100 images)."""
    ae_overrides = [*width, "--num_epochs", str(args.epochs), "--batch_size", "64", "--optimizer/lr", "1.0e-3",
                    "--optimizer/schedule", "cosine", "--loss/params/discriminator", "False",
                    "--eval_pipeline/callback_kwargs/fid_reconstruction/n_images", "100",
                    "--eval_pipeline/callback_kwargs/fid_samples/n_images", "100"]
    ae_run, ae_wall = train("configs/cmnist_ae.yaml", "bench_cmnist_ae", *ae_overrides)
    ae_dims, ae_eval_wall = factor_dims("configs/cmnist_ae.yaml", newest_checkpoint(ae_run), width)
    write_result("cmnist_ae.factor_dims", ae_dims, "dims [digit, colour, residual]", REFERENCE["ae"],
                 ae_wall + ae_eval_wall,
                 recipe=f"{args.epochs} epochs, base_channels {args.base_channels} (CPU recipe), no discriminator",
                 autoencoder_run=ae_run.name, note="target: the IIN reference's estimate for its autoencoder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the classifier and the autoencoder")
    parser.add_argument("--diin-epochs", type=int, default=1)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--classifier-run", help="reuse this logs/<run> of configs/cmnist_clf.yaml (same recipe)")
    parser.add_argument("--only", choices=("classifier", "autoencoder"), help="run one of the two pipelines")
    args = parser.parse_args()
    width = ["--model_params/base_channels", str(args.base_channels)]
    if args.only != "autoencoder":
        classifier_pipeline(args, width)
    if args.only != "classifier":
        autoencoder_pipeline(args, width)


if __name__ == "__main__":
    main()
