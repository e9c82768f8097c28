"""The conditional INN of a genuinely pretrained network, offline: TF-Inception's pool3 on 32 px Sprites.

Trains, through the edflow command line, the linear probe that gives
TF-Inception's pool3 features class predictions on Sprites
(``configs/inception_probe.yaml``; the wheel holds no ImageNet logits), the
Sprites autoencoder (``configs/sprites_ae_cpu.yaml``) and the conditional INN
(``configs/inception_cinn.yaml``), then evaluates it on the Sprites test split.

* ``inception_cinn.prediction_agreement`` -- fraction of samples that the probe
  assigns to the class it assigned the input (reported, no target), with the
  floor and ceiling and the representation errors in the record.

    .venv/bin/python -m benchmarks.inception_cinn [--autoencoder-run logs/<sprites_ae_cpu run>]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.results_io import write_result
from benchmarks.runs import edflow, scores, train, train_config
from benchmarks.sprites_cinn import cinn_overrides

TEST = "invproto.data.SpritesTest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--autoencoder-run", type=Path, help="a run of configs/sprites_ae_cpu.yaml (else trained)")
    parser.add_argument("--n-test", type=int, default=500, help="test images evaluated")
    args = parser.parse_args()
    start = time.perf_counter()
    probe, probe_wall = train("configs/inception_probe.yaml", "bench_inception_probe")
    autoencoder = args.autoencoder_run or train("configs/sprites_ae_cpu.yaml", "bench_sprites_ae")[0]
    cinn, cinn_wall = train("configs/inception_cinn.yaml", "bench_inception_cinn",
                            *cinn_overrides(probe, autoencoder))
    edflow("-p", str(train_config(cinn)), "--datasets/validation", TEST, "--dataset_params/n_test", str(args.n_test))
    test = [entry for entry in scores(cinn)["evaluations"] if entry["dataset"] == TEST][-1]
    probe_accuracy = scores(probe)["final"]["accuracy"]
    wall = time.perf_counter() - start
    write_result("inception_cinn.prediction_agreement", round(test["agree_samples"], 4), "fraction", None, wall,
                 floor=test["agree_floor"], ceiling=test["agree_ceiling"],
                 rel_error_samples=test["rel_error_samples"], rel_error_floor=test["rel_error_floor"],
                 rel_error_ceiling=test["rel_error_ceiling"], probe_validation_accuracy=probe_accuracy,
                 layer="TF-Inception pool3 (2048-d), 32 px Sprites resized to 96 px", n_test=args.n_test,
                 probe_run=str(probe), autoencoder_run=str(autoencoder), cinn_run=str(cinn),
                 probe_train_wall_s=round(probe_wall, 1), cinn_train_wall_s=round(cinn_wall, 1))


if __name__ == "__main__":
    main()
