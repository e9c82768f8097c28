"""Tensors to pictures: what the iterators log and the demo shows.

Models see ``(N, C, H, W)`` float tensors in [-1, 1]; edflow logs and the
page show ``(N, H, W, C)`` arrays. Seeded noise lives here too, so the demo
draws exactly the samples the evaluation drew for an example.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision
from matplotlib import colormaps


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` tensor -> ``(N, H, W, C)`` float32 array, as edflow logs images (inverse of ``to_tensors``)."""
    return images.permute(0, 2, 3, 1).float().cpu().numpy()


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in [-1, 1] -> ``(N, H, W, C)`` uint8, ``round((x + 1) * 127.5)``: 8-bit images."""
    return to_hwc(((images.float() + 1) * 127.5).round().clamp(0, 255)).astype(np.uint8)


def standard_normal(shape: tuple[int, ...], *seed: int) -> torch.Tensor:
    """float32 N(0, I) noise of ``shape`` drawn from a NumPy generator seeded with ``seed``; device independent."""
    return torch.from_numpy(np.random.default_rng(list(seed)).standard_normal(shape, dtype=np.float32))


def per_example_normal(indices, dim: int, seed: int, n_samples: int = 1) -> torch.Tensor:
    """``(N * n_samples, dim)`` N(0, I) draws, ``n_samples`` rows per example seeded by ``(seed, index)``:
    an example's draws do not depend on its batch, its device or the batch size."""
    return torch.cat([standard_normal((n_samples, dim), seed, int(i)) for i in indices])


def heat_overlay(images: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """``(n, C, S, S)`` images, ``(n, S, S)`` heat maps -> ``(n, 3, S, S)``, half image, half jet (all in [-1, 1])."""
    low, high = heat.amin(dim=(1, 2), keepdim=True), heat.amax(dim=(1, 2), keepdim=True)
    scaled = ((heat - low) / (high - low).clamp(min=1e-12)).cpu().numpy()
    colours = torch.from_numpy(colormaps["jet"](scaled)[..., :3]).permute(0, 3, 1, 2).float()
    grey_or_rgb = ((images.float().cpu() + 1) / 2).expand(-1, 3, -1, -1)
    return (0.5 * grey_or_rgb + 0.5 * colours) * 2 - 1


def boxed(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(n, C, S, S)`` images in [-1, 1] with ``(n, 4)`` boxes ``x0, y0, x1, y1`` (exclusive ends) drawn in red."""
    pixels = ((images.float().cpu() + 1) * 127.5).round().byte().expand(-1, 3, -1, -1)
    corners = boxes.cpu() - torch.tensor([0, 0, 1, 1])  # draw_bounding_boxes takes inclusive corners
    drawn = [torchvision.utils.draw_bounding_boxes(image, box[None], colors="red")
             for image, box in zip(pixels, corners)]
    return torch.stack(drawn).float() / 127.5 - 1


def top_share_box(heat: torch.Tensor, share: float = 0.05) -> torch.Tensor:
    """``(S, S)`` heat map -> ``(4,)`` box ``x0, y0, x1, y1`` (exclusive ends) around its hottest ``share`` of
    pixels (ProtoPNet's box: the 95th percentile of the upsampled activation and above)."""
    rows, columns = torch.nonzero(heat >= torch.quantile(heat.float().flatten(), 1 - share), as_tuple=True)
    return torch.stack([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]).cpu()


def grid_rows(columns: list[torch.Tensor]) -> torch.Tensor:
    """One picture, row ``i`` = image ``i`` of every column: ``K`` tensors ``(R, C, H, W)`` -> ``(1, C, H', W')``.

    Rows never wrap, so "first column = input" holds for every row; one pixel of padding at -1 (black).
    """
    stacked = torch.stack([column.float().cpu() for column in columns], dim=1)  # (R, K, C, H, W)
    grid = torchvision.utils.make_grid(stacked.flatten(0, 1), nrow=stacked.shape[1], padding=1, pad_value=-1)
    return grid[None]
