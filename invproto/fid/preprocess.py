"""Pre-processing of images for the TF-Inception network: layout, 8-bit levels, resize to 299x299.

``InceptionFeatures.preprocess`` (:mod:`invproto.fid.features`) reproduces the
reference (``FidHelper`` with its default ``nv_bilinear_float`` resampling)
with the helpers of this module:

1. images in ``[-1, 1]`` are quantised to the 256 levels of 8-bit images
   ``v = round((x + 1) * 127.5)``, as if they had been saved as PNG;
2. they are mapped to the network's input range ``v / 128 - 1``, i.e.
   ``[-1, 0.9921875]``;
3. they are resized to 299x299 with TF1's *legacy* bilinear resize
   (``align_corners=False, half_pixel_centers=False``: output pixel ``i``
   samples input coordinate ``i * in / out``, clamped at the border). That is
   what the original TF FID code does inside the graph and what the reference
   computes with ``grid_sample``; here it is two small matrix products. It
   differs from ``F.interpolate(mode="bilinear")``, whose half-pixel centres
   would shift upsampled MNIST digits by half a source pixel.
"""

from __future__ import annotations

import torch


def tf_legacy_bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of TF1's legacy bilinear resize along one axis.

    Output pixel ``i`` reads input coordinate ``c = i * n_in / n_out`` and mixes
    pixels ``floor(c)`` and ``floor(c) + 1`` (clamped to the last pixel). Rows
    sum to one, so the resize commutes with affine value maps.
    """
    coord = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    low = coord.floor().long()
    frac = coord - low
    high = (low + 1).clamp(max=n_in - 1)
    rows = torch.arange(n_out)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def to_nchw(images: torch.Tensor) -> torch.Tensor:
    """View a 4-d image batch as NCHW; NHWC is recognised by 1 or 3 channels last.

    A batch is NCHW when dim 1 has 1 or 3 entries, else NHWC when the last dim
    does; anything else is rejected.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a 4-d image batch (NCHW or NHWC), got shape {tuple(images.shape)}")
    if images.shape[1] in (1, 3):
        return images
    if images.shape[-1] in (1, 3):
        return images.permute(0, 3, 1, 2)
    raise ValueError(f"cannot find a 1- or 3-channel axis in image batch of shape {tuple(images.shape)}")
