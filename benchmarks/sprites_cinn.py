"""Ground truth for the conditional INN: what do samples under a Sprites classifier's representation keep?

Sprites have known factors, so the method can be checked against the truth.
A classifier trained on shape only should be blind to colour: images sampled
under its representation of an input (``configs/sprites_cinn.yaml``, the
logits layer) must keep the input's shape, as that classifier reads it, and
vary its colour. Under a classifier trained on shape x colour (30 classes)
they must keep both. Colours are read from the pixels
(:func:`invproto.data.synthetic.read_colours`, exact on rendered sprites).

Every stage is trained through the edflow command line with the shipped
configs (autoencoder, both classifiers, both conditional INNs); then
``n_samples`` samples per validation image are drawn from each conditional INN
and read. Figures (``benchmarks/results/``):

* ``sprites_cinn.shape_kept`` -- fraction of samples (shape-only network)
  classified as the network classified the input, target >= 0.90;
* ``sprites_cinn.colour_changed`` -- fraction of those samples whose colour
  differs from the input's, target >= 0.50 (5/6 if blind to colour);
* ``sprites_cinn.colour_kept_control`` -- fraction of samples under the shape x
  colour network that keep the input's colour, target >= 0.90.

    .venv/bin/python -m benchmarks.sprites_cinn     (~1.5 h on a 2-core CPU, most of it the two flows)

``tests/test_cinn.py`` checks the same ground truth on 16 px Sprites with
small in-process stages.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.results_io import write_result
from benchmarks.runs import REPO, train, train_config
from invproto.config import get_obj_from_str
from invproto.data.synthetic import read_colours
from invproto.io import latest_checkpoint, load_weights
from invproto.pictures import per_example_normal, to_hwc

SHAPE_COLOUR_DATA = ["--dataset_params/label", "shape_color"]  # 30 classes: shape * 6 + colour
SHAPE_COLOUR = [*SHAPE_COLOUR_DATA, "--model_params/n_classes", "30"]


@dataclass
class GroundTruth:
    """What the samples kept: fractions over all samples of all evaluated images."""

    shape_kept: float  # shape-only network: samples classified as the input
    colour_changed: float  # shape-only network: samples of another colour than the input
    colour_kept_control: float  # shape x colour network: samples of the input's colour
    shape_colour_kept_control: float  # shape x colour network: samples classified as the input
    shape_floor: float  # shape-only network: the autoencoder's reconstructions classified as the input
    colour_floor: float  # the autoencoder's reconstructions of the input's colour


def checkpoint_of(run: Path) -> str:
    """The highest-step checkpoint of a training run."""
    return latest_checkpoint(run / "train" / "checkpoints")


def load_run_model(run: Path) -> torch.nn.Module:
    """The model of a training run from its saved config and newest checkpoint, in eval mode."""
    config = yaml.safe_load(train_config(run).read_text())
    model = get_obj_from_str(config["model"])(config)
    model.load_state_dict(load_weights(checkpoint_of(run), "checkpoint", "retrain the run")["model"])
    return model.eval()


def cinn_overrides(network: Path, autoencoder: Path, *extra: str) -> list[str]:
    """The two frozen stages named by their run directories (invproto.config.chaining)."""
    return ["--model_params/network/checkpoint", str(network),
            "--model_params/autoencoder/checkpoint", str(autoencoder), *extra]


@torch.no_grad()
def floors(cinn, images: torch.Tensor) -> tuple[float, float]:
    """How often the autoencoder's reconstructions keep the network's class and the read colour of the inputs:
    what samples, which pass through the same decoder, can keep at best."""
    reconstructions = cinn.reconstruct(images)
    same_class = cinn.network.classify(reconstructions).argmax(1) == cinn.network.classify(images).argmax(1)
    same_colour = read_colours(to_hwc(reconstructions)) == read_colours(to_hwc(images))
    return float(same_class.float().mean()), float(same_colour.mean())


@torch.no_grad()
def read_samples(cinn, images: torch.Tensor, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For ``(N, 3, S, S)`` images: the network's classes and the read colours of inputs ``(N,)`` and of
    ``n_samples`` samples each ``(N, n_samples)``."""
    network = cinn.network
    representation, logits = network.encode_and_classify(images)
    noise = per_example_normal(range(len(images)), cinn.code_dim, 0, n_samples)
    samples = cinn.sample(representation.repeat_interleave(n_samples, 0), noise)
    sample_classes = network.classify(samples).argmax(1).view(len(images), n_samples)
    sample_colours = read_colours(to_hwc(samples)).reshape(len(images), n_samples)
    return logits.argmax(1).numpy(), read_colours(to_hwc(images)), sample_classes.numpy(), sample_colours


def run_ground_truth(overrides: dict[str, list[str]], n_images: int, n_samples: int, name: str = "bench",
                     stages: dict[str, Path | None] | None = None) -> GroundTruth:
    """Train the five stages (``overrides`` per stage key: ae, clf, cinn; ``stages`` reuses runs of the
    autoencoder, the classifiers and the conditional INNs: keys ae, shape, joint, cinn, cinn_control) and read
    the samples."""
    stages = stages or {}
    ae = stages.get("ae") or train("configs/sprites_ae_cpu.yaml", f"{name}_sprites_ae", *overrides.get("ae", []))[0]
    shape_clf = stages.get("shape") or train("configs/sprites_clf.yaml", f"{name}_sprites_shape_clf",
                                             *overrides.get("clf", []))[0]
    both_clf = stages.get("joint") or train("configs/sprites_clf.yaml", f"{name}_sprites_shape_colour_clf",
                                            *SHAPE_COLOUR, *overrides.get("clf", []))[0]
    shape_cinn = stages.get("cinn") or train("configs/sprites_cinn.yaml", f"{name}_sprites_cinn",
                                             *cinn_overrides(shape_clf, ae, *overrides.get("cinn", [])))[0]
    both_cinn = stages.get("cinn_control") or train(
        "configs/sprites_cinn.yaml", f"{name}_sprites_cinn_control",
        *cinn_overrides(both_clf, ae, *SHAPE_COLOUR_DATA,
                        *overrides.get("cinn", [])))[0]
    shape_model, both_model = load_run_model(shape_cinn), load_run_model(both_cinn)
    validation = get_obj_from_str("invproto.data.SpritesValidation")(
        yaml.safe_load((REPO / "configs" / "sprites_cinn.yaml").read_text()))
    images = torch.from_numpy(validation.get_batch(np.arange(n_images))["image"]).permute(0, 3, 1, 2)
    classes, colours, sample_classes, sample_colours = read_samples(shape_model, images, n_samples)
    both_classes, _, both_sample_classes, both_sample_colours = read_samples(both_model, images, n_samples)
    shape_floor, colour_floor = floors(shape_model, images)
    return GroundTruth(shape_floor=shape_floor, colour_floor=colour_floor,
                       shape_kept=float((sample_classes == classes[:, None]).mean()),
                       colour_changed=float((sample_colours != colours[:, None]).mean()),
                       colour_kept_control=float((both_sample_colours == colours[:, None]).mean()),
                       shape_colour_kept_control=float((both_sample_classes == both_classes[:, None]).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=500, help="validation images whose samples are read")
    parser.add_argument("--n-samples", type=int, default=6, help="samples per image")
    for stage, config in (("ae", "sprites_ae_cpu"), ("shape", "sprites_clf"), ("joint", "sprites_clf x label"),
                          ("cinn", "sprites_cinn"), ("cinn-control", "sprites_cinn x label")):
        parser.add_argument(f"--{stage}-run", type=Path, help=f"reuse a run of {config} (else trained)")
    args = parser.parse_args()
    start = time.perf_counter()
    reused = {"ae": args.ae_run, "shape": args.shape_run, "joint": args.joint_run,
              "cinn": args.cinn_run, "cinn_control": args.cinn_control_run}
    truth = run_ground_truth({}, args.n_images, args.n_samples, stages=reused)
    wall = time.perf_counter() - start
    extra = dict(n_images=args.n_images, n_samples=args.n_samples, **vars(truth),
                 reused_runs={stage: str(run) for stage, run in reused.items() if run})  # wall_s excludes them
    write_result("sprites_cinn.shape_kept", round(truth.shape_kept, 4), "fraction", 0.90, wall, **extra)
    write_result("sprites_cinn.colour_changed", round(truth.colour_changed, 4), "fraction", 0.50, wall, **extra)
    write_result("sprites_cinn.colour_kept_control", round(truth.colour_kept_control, 4), "fraction", 0.90, wall,
                 **extra)


if __name__ == "__main__":
    main()
