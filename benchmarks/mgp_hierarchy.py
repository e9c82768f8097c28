"""Metric-guided prototypes vs plain cross-entropy on Fashion-MNIST with its class tree.

Trains ``configs/fashionmnist_mgp.yaml`` (learnt prototypes + distortion loss)
and the plain classifier ``configs/fashionmnist_clf.yaml`` with the
``average_cost`` overlay, the same encoder, epochs and optimizer. Each run's
checkpoint is selected on validation accuracy and evaluated once on the test
split. Average cost = mean tree distance between prediction and truth (0 right,
2 within a garment group, 4 across; ``invproto/hierarchy.py``). Writes
``fashionmnist_mgp.test_accuracy``, ``fashionmnist_mgp.average_cost`` and
``fashionmnist_ce.average_cost`` (the plain classifier's accuracy is stored
beside its cost).

    INVPROTO_DATA=../shared/data .venv/bin/python -m benchmarks.mgp_hierarchy

Smoke test: ``--steps 20 --output smoke`` (writes ``smoke_*.json``; delete them).
"""

from __future__ import annotations

import argparse
import time

from benchmarks.results_io import write_result
from benchmarks.runs import test_selected, train

TEST_SPLIT = "invproto.data.FashionMNISTTest"
RUNS = {"mgp": ["configs/fashionmnist_mgp.yaml"],
        "ce": ["configs/fashionmnist_clf.yaml", "configs/fashionmnist_average_cost.yaml"]}


def train_select_test(kind: str, overrides: list[str]) -> dict:
    """Train one of :data:`RUNS`, select on validation, test; the test scores plus bookkeeping."""
    name = f"bench_fashionmnist_{kind}"
    start = time.perf_counter()
    run, train_wall = train(RUNS[kind], name, *overrides)
    selected, test = test_selected(run, TEST_SPLIT)
    print(f"{kind}: selected step {selected['step']} (validation accuracy {selected['accuracy']:.4f}) -> "
          f"test accuracy {test['accuracy']:.4f}, average cost {test['average_cost']:.4f}")
    return {**test, "wall_s": time.perf_counter() - start, "train_wall_s": round(train_wall, 1),
            "validation_accuracy": round(selected["accuracy"], 4),
            "run": str(run.relative_to(run.parents[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="override num_epochs of both configs")
    parser.add_argument("--steps", type=int, help="stop after this many steps (smoke tests)")
    parser.add_argument("--output", help="result name prefix (default fashionmnist)")
    args = parser.parse_args()
    overrides = [*(["--num_epochs", str(args.epochs)] if args.epochs else []),
                 *(["--num_steps", str(args.steps)] if args.steps else [])]
    prefix = args.output or "fashionmnist"
    mgp, ce = (train_select_test(kind, overrides) for kind in RUNS)

    def command(kind: str) -> str:
        return (f"edflow -b {' '.join(RUNS[kind])} -t {' '.join(overrides)} && edflow -p <run>/configs/<train>.yaml "
                f"-c <best validation checkpoint> --datasets/validation {TEST_SPLIT}")

    def details(run: dict) -> dict:
        return {key: run[key] for key in ("step", "validation_accuracy", "train_wall_s", "run")}

    write_result(f"{prefix}_mgp.test_accuracy", round(mgp["accuracy"], 4), "fraction", round(ce["accuracy"], 4),
                 mgp["wall_s"], command=command("mgp"), ce_test_accuracy=round(ce["accuracy"], 4), **details(mgp))
    write_result(f"{prefix}_mgp.average_cost", round(mgp["average_cost"], 4), "tree edges",
                 round(ce["average_cost"], 4), mgp["wall_s"], command=command("mgp"),
                 mistake_cost=round(mgp.get("mistake_cost", 0.0), 4), **details(mgp))
    write_result(f"{prefix}_ce.average_cost", round(ce["average_cost"], 4), "tree edges", None, ce["wall_s"],
                 command=command("ce"), test_accuracy=round(ce["accuracy"], 4),
                 mistake_cost=round(ce.get("mistake_cost", 0.0), 4), **details(ce))
    print(f"wall: mgp {mgp['wall_s']:.0f} s, ce {ce['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
