"""``python -m invproto.fid A B``: FID and KID between two sets of images.

Each of A and B is a folder of .png/.jpg/.jpeg images (searched recursively,
any size, read as RGB) or an .npy/.npz image array (see
:mod:`invproto.fid.image_sets` for what is accepted).

Prints ``FID: <value>`` and ``KID: <mean> (std over subsets <std>)`` (see
:mod:`invproto.fid.kid`) and exits 0. An input it cannot use, or missing
Inception weights, exits 1 with one line on stderr and nothing on stdout;
both sets are checked before the Inception network is loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from invproto.errors import InvprotoError
from invproto.fid.features import InceptionFeatures
from invproto.fid.image_sets import InputError, open_images
from invproto.fid.kid import kernel_inception_distance
from invproto.fid.statistics import FeatureStatistics, fid_from_statistics

ERROR_STATUS = InvprotoError.exit_status  # an input or weights problem, reported in one line

ACCEPTED_INPUTS = """\
accepted inputs:
  folder        .png/.jpg/.jpeg files, searched recursively, any size and mode (read as RGB)
  .npy / .npz   one array (an .npz: a single array or one named 'images') of shape
                (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3, and dtype
                uint8 (0..255) or float (finite values in [-1, 1]; convert [0, 255]
                floats with x / 127.5 - 1 and [0, 1] floats with 2 * x - 1)

Other dtypes (uint16, int64, ...), floats outside [-1, 1], NaN/inf, other channel
counts and unreadable files are refused before any work: exit status 1, one line
on stderr naming the file and the fix."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="invproto-fid", description=__doc__.split("\n\n")[0],
                                     epilog=ACCEPTED_INPUTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="folder of png/jpg images, or .npy/.npz image array")
    parser.add_argument("b", help="folder of png/jpg images, or .npy/.npz image array")
    parser.add_argument("--n", type=int, default=None, help="use the first N images of each set (default: all)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cuda if available)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``invproto-fid``; returns the exit status."""
    args = parse_args(argv)
    try:
        image_sets = [open_images(args.a), open_images(args.b)]
        counts = [len(s) if args.n is None else args.n for s in image_sets]
        for location, image_set, n in zip((args.a, args.b), image_sets, counts):
            if not 2 <= n <= len(image_set):
                raise InputError(f"{location} has {len(image_set)} images; cannot use {n} (need at least 2)")
            image_set.check(n)
        network = InceptionFeatures(args.device)
        a, b = [FeatureStatistics.of(network.extract(s.batches(n, args.batch_size), total=n))
                for s, n in zip(image_sets, counts)]
    except InvprotoError as error:  # InputError (a DataError), WeightsError (a CheckpointError), ...
        print(f"invproto-fid: error: {error}", file=sys.stderr)
        return error.exit_status
    kid = kernel_inception_distance(a.features, b.features, device=network.device)
    print(f"FID: {fid_from_statistics(a, b):.6f}")
    print(f"KID: {kid.mean:.6f} (std over subsets {kid.std:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
