"""Part prototypes: MNIST test accuracy, and receptive-field mapping vs bicubic upsampling.

1. Trains ``configs/mnist_partproto.yaml`` as shipped (2 epochs, a push after each) and evaluates
   the last checkpoint on the official MNIST test split with ``edflow -p``: ``accuracy`` and the
   relevance ordering test of both pixel mappings (``relevance_images_per_batch`` images of every
   test batch, all prototypes of their class; see :mod:`invproto.interpret.relevance`).
2. Trains ``configs/sprites_partproto.yaml`` (3 epochs) and evaluates on the Sprites test split,
   whose parts are known exactly: consistency and stability of both mappings
   (:mod:`invproto.interpret.part_metrics`).

Writes

* ``mnist_partproto.test_accuracy`` (fraction),
* ``partproto.relevance_ordering_rf_vs_upsample``: ``relevance_auc_rf - relevance_auc_upsample``
  on MNIST test, the difference of the mean normalised areas under the relevance curves
  (each in [0, 1]); > 0 means the receptive-field mapping ranks the pixels a prototype
  responds to earlier than upsampling does,
* ``partproto.consistency_rf_vs_upsample``: ``consistency_rf - consistency_upsample`` on Sprites
  test (soft consistency, each in [0, 1]); > 0 means the receptive-field mapping's regions land on
  the same sprite part more often.

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.partproto

Smoke test (tiny, writes ``tmp_*`` results to delete afterwards): ``... -m benchmarks.partproto
--steps 20 --override iterator_params/push_images 500 --relevance-images 1 --result-prefix tmp_``.
"""

from __future__ import annotations

import argparse

from benchmarks.results_io import write_result
from benchmarks.runs import evaluate, train

MNIST, SPRITES = "configs/mnist_partproto.yaml", "configs/sprites_partproto.yaml"


def train_and_test(config: str, name: str, test_split: str, steps: int | None, relevance_images: int,
                   overrides: list[list[str]]) -> tuple[dict, dict, float, str]:
    """Train ``config``, evaluate its last checkpoint on ``test_split``; (test scores, run info, wall s, command)."""
    schedule = ["--num_steps", str(steps)] if steps else []
    for key, value in overrides:
        schedule += [f"--{key}", value]
    run, train_wall = train(config, name, *schedule)
    evaluation = ["--iterator_params/relevance_images_per_batch", str(relevance_images)]
    test, eval_wall = evaluate(run, test_split, *evaluation)
    command = (f"edflow -b {config} -t {' '.join(schedule)} && edflow -p <run>/configs/<train>.yaml "
               f"--datasets/validation {test_split} {' '.join(evaluation)}").replace("  ", " ")
    info = {"steps": test["step"], "train_wall_s": round(train_wall, 1), "eval_wall_s": round(eval_wall, 1),
            "run": str(run.relative_to(run.parents[1]))}
    print(f"{name}: train {train_wall:.1f} s, test evaluation {eval_wall:.1f} s", flush=True)
    return test, info, train_wall + eval_wall, command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="override num_steps of both runs (smoke tests)")
    parser.add_argument("--relevance-images", type=int, default=2,
                        help="test images per batch (of 128 MNIST / 64 Sprites) in the relevance ordering test")
    parser.add_argument("--override", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="extra training override of both runs, e.g. iterator_params/push_images 500")
    parser.add_argument("--result-prefix", default="", help="prefix of the result names (tmp_ for smoke tests)")
    args = parser.parse_args()

    mnist, mnist_info, mnist_wall, mnist_command = train_and_test(MNIST, "bench_mnist_partproto",
                                                                  "invproto.data.MNISTTest", args.steps,
                                                                  args.relevance_images, args.override)
    write_result(f"{args.result_prefix}mnist_partproto.test_accuracy", round(mnist["accuracy"], 4), "fraction",
                 0.985, mnist_wall, command=mnist_command, **mnist_info,
                 prototype_class_agreement=round(mnist["prototype_class_agreement"], 4),
                 dead_prototypes=int(mnist["dead_prototypes"]),
                 note="target: the invproto MNIST classifier's level; ProtoPNet/PixPNet report no MNIST figure")
    write_result(f"{args.result_prefix}partproto.relevance_ordering_rf_vs_upsample",
                 round(mnist["relevance_rf_minus_upsample"], 4), "AUC difference (rf - upsample)", 0.0, mnist_wall,
                 command=mnist_command, **mnist_info, relevance_auc_rf=round(mnist["relevance_auc_rf"], 4),
                 relevance_auc_upsample=round(mnist["relevance_auc_upsample"], 4),
                 relevance_images_per_batch=args.relevance_images,
                 note="MNIST test; mean normalised area under the relevance ordering curve (zero baseline, "
                      "17 pixel fractions), receptive-field Gaussian mapping minus bicubic upsampling; "
                      "PixPNet reports the receptive-field mapping ahead (> 0)")

    sprites, sprites_info, sprites_wall, sprites_command = train_and_test(SPRITES, "bench_sprites_partproto",
                                                                          "invproto.data.SpritesTest", args.steps,
                                                                          args.relevance_images, args.override)
    details = {f"{metric}_{mapping}": round(sprites[f"{metric}_{mapping}"], 4) for mapping in ("rf", "upsample")
               for metric in ("consistency", "consistency_hard", "stability", "stability_soft", "relevance_auc")}
    write_result(f"{args.result_prefix}partproto.consistency_rf_vs_upsample",
                 round(sprites["consistency_rf"] - sprites["consistency_upsample"], 4),
                 "consistency difference (rf - upsample)", 0.0, sprites_wall, command=sprites_command,
                 **sprites_info, **details, sprites_test_accuracy=round(sprites["accuracy"], 4),
                 note="Sprites test (the sprite's five keypoints are the annotated parts); soft consistency, "
                      "regions of 11 x 11 px around each heat map's peak")


if __name__ == "__main__":
    main()
