"""Inception feature extraction against the CPU's compute limit: ``fid.images_per_s_vs_limit``.

The limit is what this CPU's float32 matrix product reaches: a 2048x2048
``a @ b`` (MKL) at G GFLOP/s would turn G / F images per second through the
network if the network were nothing but such products, where F is the
network's convolution work per image (2 x multiply-accumulates of every
convolution, counted with hooks: 11.42 GFLOP for TF-Inception at 299 px).
The figure is invproto's images/s divided by that limit (target: at least
0.85).

Both are measured in one process and interleaved, because other processes
share the CPU and its speed varies by a factor of two within minutes: before
and after every timed batch of images comes a block of ``--matmul-reps``
products (median GFLOP/s of the block), and each batch is compared with the
mean of the two blocks around it. The value is the median of these per-batch
ratios. A batch is timed as the FID callback runs it: uint8 MNIST test
images (28 px) as float NHWC in [-1, 1], to 2048-d features on the host,
pre-processing (quantisation, resize to 299) included.

``--compare-plain`` also times the plain ``nn.Module`` network
(``InceptionFeatures(fused=False)``, the implementation before the oneDNN
path) in the same rounds, alternating which goes first, and records its ratio
and the speed-up.

Run from the repository root::

    .venv/bin/python -m benchmarks.fid_speed --n 300 --compare-plain
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.results_io import write_results
from invproto.fid.features import InceptionFeatures, TFInceptionPool3, convolution_flops

MNIST_DIR = Path("../shared/data/mnist")
MATMUL_SIZE = 2048
TARGET = 0.85
UNIT = "x (images/s / (matmul GFLOP/s / GFLOP per image))"


def read_idx_images(path: Path, n: int) -> np.ndarray:
    """First ``n`` images of a gzipped IDX image file as uint8 (n, 28, 28)."""
    with gzip.open(path) as file:
        data = file.read(16 + n * 28 * 28)
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 28, 28)


class Matmul:
    """Times float32 ``MATMUL_SIZE``^3 matrix products."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)
        self.b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=generator)
        self.out = torch.empty(MATMUL_SIZE, MATMUL_SIZE)
        self.flop = 2 * MATMUL_SIZE ** 3

    def gflops(self) -> float:
        start = time.perf_counter()
        torch.matmul(self.a, self.b, out=self.out)
        return self.flop / (time.perf_counter() - start) / 1e9

    def block(self, reps: int) -> float:
        """Median GFLOP/s of ``reps`` products."""
        return statistics.median(self.gflops() for _ in range(reps))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="timed images (after one warm-up batch)")
    parser.add_argument("--batch-size", type=int, default=50, help="images per call (the FID callback's 50)")
    parser.add_argument("--matmul-reps", type=int, default=5, help="products per matmul block")
    parser.add_argument("--compare-plain", action="store_true",
                        help="also time the plain nn.Module network, interleaved")
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    parser.add_argument("--dry-run", action="store_true", help="print the figure instead of writing it")
    args = parser.parse_args(argv)
    if args.n < args.batch_size or args.batch_size < 1:
        parser.error("need --n >= --batch-size >= 1")

    started = time.perf_counter()
    load_start = load_average()
    torch.manual_seed(0)
    gflop_per_image = convolution_flops(TFInceptionPool3()) / 1e9
    n_batches = args.n // args.batch_size
    images = read_idx_images(args.mnist_dir / "t10k-images-idx3-ubyte.gz", (n_batches + 1) * args.batch_size)
    batches = [images[i:i + args.batch_size, ..., None].astype(np.float32) / 127.5 - 1
               for i in range(0, len(images), args.batch_size)]  # as invproto.callbacks.fid.uint8_batches
    sides = {"fused": InceptionFeatures("cpu")}
    if args.compare_plain:
        sides["plain"] = InceptionFeatures("cpu", fused=False)
    matmul = Matmul()

    def run(side: str, batch: np.ndarray) -> np.ndarray:
        return sides[side](torch.from_numpy(batch)).cpu().numpy()

    for side in sides:  # warm-up: weight packing, oneDNN primitive creation, first-touch memory
        run(side, batches[0])
    if args.compare_plain:
        np.testing.assert_allclose(run("fused", batches[1]), run("plain", batches[1]), rtol=1e-5, atol=1e-5)
    matmul.block(args.matmul_reps)

    ratios: dict[str, list[float]] = {side: [] for side in sides}
    seconds = {side: 0.0 for side in sides}
    blocks = [matmul.block(args.matmul_reps)]
    for i, batch in enumerate(batches[1:]):
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]
        for side in order:
            start = time.perf_counter()
            run(side, batch)
            elapsed = time.perf_counter() - start
            blocks.append(matmul.block(args.matmul_reps))
            limit = (blocks[-2] + blocks[-1]) / 2 / gflop_per_image
            seconds[side] += elapsed
            ratios[side].append(len(batch) / elapsed / limit)
            print(f"batch {i + 1}/{n_batches} {side}: {len(batch) / elapsed:.2f} images/s, "
                  f"limit {limit:.2f} images/s, ratio {ratios[side][-1]:.3f}", flush=True)

    value = {side: statistics.median(r) for side, r in ratios.items()}
    images_per_s = {side: n_batches * args.batch_size / s for side, s in seconds.items()}
    matmul_median = statistics.median(blocks)
    record = dict(
        n_images=n_batches * args.batch_size, batch_size=args.batch_size,
        chunk=getattr(sides["fused"].net, "chunk", None), workers=torch.get_num_threads(),
        network=type(sides["fused"].net).__name__,
        threads=torch.get_num_threads(), gflop_per_image=round(gflop_per_image, 4),
        images_per_s=round(images_per_s["fused"], 2),
        matmul_gflops_median=round(matmul_median, 1), matmul_gflops_best=round(max(blocks), 1),
        limit_images_per_s_median=round(matmul_median / gflop_per_image, 2),
        ratio_per_batch=[round(r, 3) for r in ratios["fused"]],
        matmul_gflops_blocks=[round(b, 1) for b in blocks], matmul_reps=args.matmul_reps,
        load_average_start=load_start, load_average_end=load_average())
    if args.compare_plain:
        speedups = [f / p for f, p in zip(ratios["fused"], ratios["plain"])]
        record.update(plain_ratio=round(value["plain"], 3), plain_images_per_s=round(images_per_s["plain"], 2),
                      plain_ratio_per_batch=[round(r, 3) for r in ratios["plain"]],
                      speedup_vs_plain_median=round(statistics.median(speedups), 3))
    print(f"fused {images_per_s['fused']:.2f} images/s, ratio {value['fused']:.3f}"
          + (f"; plain {images_per_s['plain']:.2f} images/s, ratio {value['plain']:.3f}" if args.compare_plain else "")
          + f"; matmul median {matmul_median:.1f} GFLOP/s; load {load_start} -> {record['load_average_end']}")
    write_results([("fid.images_per_s_vs_limit", round(value["fused"], 3), UNIT, TARGET)],
                  time.perf_counter() - started, dry_run=args.dry_run, **record)


if __name__ == "__main__":
    main()
