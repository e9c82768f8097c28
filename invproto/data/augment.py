"""Random augmentation of whole image batches on their device, each image with its own draw.

Used for training views (prototype flows, prototypeDL, classifiers) and
test-time augmentation; the draws come from an optional CPU ``torch.Generator``
so evaluation views are reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, max_shift: int, flip: bool,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` -> the same shape, each image shifted by its own random offset.

    Offsets are uniform in ``[-max_shift, max_shift]`` pixels per axis; the
    uncovered border repeats the edge pixels. With ``flip`` each image is
    mirrored left-right with probability 1/2 first. ``generator`` (CPU) makes
    the draws reproducible.
    """
    n, channels, height, width = images.shape
    device = images.device
    if flip:
        flipped = (torch.rand(n, generator=generator) < 0.5).to(device)
        images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    if max_shift > 0:
        padded = F.pad(images, [max_shift] * 4, mode="replicate")
        top, left = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(device)
        rows = top[:, None] + torch.arange(height, device=device)
        cols = left[:, None] + torch.arange(width, device=device)
        images = padded[torch.arange(n, device=device)[:, None, None, None],
                        torch.arange(channels, device=device)[None, :, None, None],
                        rows[:, None, :, None], cols[:, None, None, :]]
    return images


def random_blur(images: torch.Tensor, max_sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` -> the same shape, each image blurred by a Gaussian of its own standard deviation.

    The deviations are uniform in ``[0, max_sigma]`` pixels (0 leaves the image as it is); the separable
    kernels span ``± ceil(2 max_sigma)`` pixels and are normalised to sum 1; borders reflect.
    """
    if max_sigma <= 0:
        return images
    n, channels, height, width = images.shape
    radius = math.ceil(2 * max_sigma)
    sigma = (torch.rand(n, generator=generator) * max_sigma).to(images.device, images.dtype)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-0.5 * (offsets / sigma.clamp(min=1e-6)[:, None]) ** 2)  # (N, 2r+1); sigma 0: a delta
    kernels = (kernels / kernels.sum(1, keepdim=True)).repeat_interleave(channels, 0)  # (N * C, 2r+1)
    flat = F.pad(images.reshape(1, n * channels, height, width), [radius] * 4, mode="reflect")
    flat = F.conv2d(flat, kernels[:, None, :, None], groups=n * channels)  # along the height
    flat = F.conv2d(flat, kernels[:, None, None, :], groups=n * channels)  # along the width
    return flat.reshape(n, channels, height, width)
