"""Exact receptive fields of conv stacks, and pixel-space heat maps of feature-cell similarities.

**Receptive fields.** Along one axis, output cell ``o`` of a convolution or
pooling layer (kernel ``k``, stride ``s``, padding ``p``, dilation ``d``)
reads the input positions ``o*s - p`` to ``o*s - p + d*(k - 1)`` (both
inclusive); positions outside ``[0, n_in - 1]`` are padding and depend on no
pixel. Mapping the interval of every final cell back through the layers, last
to first, and clipping it to the real positions at every layer gives the
exact interval of image pixels each cell depends on: its receptive field,
clipped where padding reaches past the image border. The two axes are
independent; pointwise layers (activations, normalisations) leave fields
unchanged. With dilation > 1, or a stride larger than the kernel, a field
has holes; the interval reported is its hull. The *unclipped* interval (no
clipping) is the field a cell would have in an infinitely padded image; its
centre and size place the Gaussians of the heat maps below.

**Heat maps** of a ``(N, P, Hc, Wc)`` cell similarity map in pixel space:

* ``rf`` (PixPNet): each cell spreads its similarity over its clipped field,
  weighted by a Gaussian centred on its unclipped field (peak 1, ``sigma =
  sigma_factor * field size``), and the cells are reduced per pixel by
  ``max``, ``mean`` (over the cells covering the pixel) or ``sum``. The map is
  built from the similarity minus its minimum over the cells (per image and
  prototype): non-negative for every distance/similarity choice, and a
  similarity offset shared by all cells does not paint the coverage pattern
  of the fields into the map. Centring on the unclipped field keeps cells
  apart even when every clipped field is the whole image.
* ``upsample`` (ProtoPNet): bicubic interpolation of the cell map to the
  image size (half-pixel centres, as ``cv2.resize``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck

from invproto.modules.actnorm import ActNorm

MAPPINGS = ("rf", "upsample")
REDUCTIONS = ("max", "mean", "sum")
POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid, nn.Tanh,
             nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm, ActNorm,
             nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass(frozen=True)
class Window:
    """The sliding window of a convolution or pooling layer along one axis."""

    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    ceil_mode: bool = False

    def output_size(self, n_in: int) -> int:
        """Number of output cells for ``n_in`` input positions (PyTorch's rule, ``ceil_mode`` included)."""
        span = n_in + 2 * self.padding - self.dilation * (self.kernel - 1) - 1
        if span < 0:
            raise ValueError(f"a {self.kernel}-wide window does not fit {n_in} positions")
        if not self.ceil_mode:
            return span // self.stride + 1
        n_out = -(-span // self.stride) + 1
        return n_out - 1 if (n_out - 1) * self.stride >= n_in + self.padding else n_out

    def reads(self, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input interval (inclusive; may reach into the padding) read by output cells ``[first, last]``."""
        return first * self.stride - self.padding, last * self.stride - self.padding + self.dilation * (self.kernel - 1)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _windows(layer: nn.Module) -> tuple[Window, Window]:
    """(rows, columns) windows of a ``Conv2d``, ``MaxPool2d`` or ``AvgPool2d``."""
    kernel, stride = _pair(layer.kernel_size), _pair(layer.stride or layer.kernel_size)
    dilation = _pair(getattr(layer, "dilation", 1))
    padding = layer.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":
        if stride != (1, 1) or any(d * (k - 1) % 2 for k, d in zip(kernel, dilation)):
            raise ValueError(f"receptive field: asymmetric 'same' padding of {layer} is not supported")
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    padding, ceil_mode = _pair(padding), bool(getattr(layer, "ceil_mode", False))
    return tuple(Window(kernel[a], stride[a], padding[a], dilation[a], ceil_mode) for a in range(2))


def layer_windows(module: nn.Module) -> list[tuple[Window, Window]]:
    """The spatial windows a module applies in order, as (rows, columns) pairs.

    ``nn.Sequential`` is flattened; a torchvision ResNet block counts as its
    main path (its shortcut, a strided 1x1 convolution or the identity, reads
    a subset of the main path's field). Anything else that is neither a
    convolution, a pooling nor a known pointwise layer is refused: its field
    cannot be known from its type.
    """
    if isinstance(module, nn.Sequential):
        return [window for child in module for window in layer_windows(child)]
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return [_windows(module)]
    if isinstance(module, BasicBlock):
        return [_windows(module.conv1), _windows(module.conv2)]
    if isinstance(module, Bottleneck):
        return [_windows(module.conv1), _windows(module.conv2), _windows(module.conv3)]
    if isinstance(module, POINTWISE):
        return []
    raise ValueError(f"receptive field: unsupported layer {type(module).__name__}; cut the backbone before it "
                     "or use convolutions, poolings and pointwise layers only")


@dataclass(frozen=True)
class AxisField:
    """Receptive fields of the cells along one axis, in image pixels."""

    start: np.ndarray  # (n_cells,) int, first pixel of each field (clipped to the image)
    stop: np.ndarray  # (n_cells,) int, one past the last pixel (clipped)
    center: np.ndarray  # (n_cells,) float, centre of each unclipped field (may lie beyond the border)
    size: int  # length of the unclipped field, the same for every cell
    n_pixels: int  # image size along this axis

    @property
    def n_cells(self) -> int:
        return len(self.start)

    def covers(self) -> torch.Tensor:
        """bool ``(n_cells, n_pixels)``: pixel ``y`` lies in the clipped field of cell ``i``."""
        y = torch.arange(self.n_pixels)
        return (y >= torch.from_numpy(self.start)[:, None]) & (y < torch.from_numpy(self.stop)[:, None])

    def gaussian(self, sigma: float) -> torch.Tensor:
        """float ``(n_cells, n_pixels)``: Gaussian weights on each clipped field, 0 elsewhere.

        Centred on the unclipped field and max-normalised over it: its pixels
        nearest the centre (distance 0 for odd sizes, 1/2 for even) weigh 1.
        """
        y = torch.arange(self.n_pixels, dtype=torch.float64)
        nearest = 0.0 if self.size % 2 else 0.5
        squared = (y - torch.from_numpy(self.center.astype(np.float64))[:, None]) ** 2 - nearest ** 2
        return (torch.exp(-squared / (2 * sigma ** 2)) * self.covers()).float()


def axis_field(windows: Sequence[Window], n_pixels: int) -> AxisField:
    """Receptive fields along one axis of the windows applied in order to ``n_pixels`` positions."""
    sizes = [n_pixels]
    for window in windows:
        sizes.append(window.output_size(sizes[-1]))
    first = last = np.arange(sizes[-1])  # clipped field, inclusive ends, in the current layer's input
    low = high = first  # unclipped field
    for window, n_in in zip(reversed(windows), reversed(sizes[:-1])):
        first, last = window.reads(first, last)
        first, last = np.maximum(first, 0), np.minimum(last, n_in - 1)
        if np.any(first > last):
            raise ValueError(f"receptive field: a cell reads only padding ({window})")
        low, high = window.reads(low, high)
    return AxisField(start=first, stop=last + 1, center=(low + high) / 2, size=int(high[0] - low[0] + 1),
                     n_pixels=n_pixels)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive fields of every cell of an ``(Hc, Wc)`` feature map of ``(H, W)`` images."""

    rows: AxisField
    cols: AxisField

    @property
    def feature_shape(self) -> tuple[int, int]:
        return self.rows.n_cells, self.cols.n_cells

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.rows.n_pixels, self.cols.n_pixels

    def boxes(self, cells: torch.Tensor) -> torch.Tensor:
        """Flat cell indices ``(...)`` (row-major) -> long ``(..., 4)`` boxes ``x0, y0, x1, y1`` (ends exclusive)."""
        row, col = (cells // self.cols.n_cells).cpu().numpy(), (cells % self.cols.n_cells).cpu().numpy()
        box = np.stack([self.cols.start[col], self.rows.start[row], self.cols.stop[col], self.rows.stop[row]], -1)
        return torch.from_numpy(box).long()


def receptive_field(windows: Sequence[tuple[Window, Window]], image_shape: tuple[int, int]) -> ReceptiveField:
    """Receptive fields of the cells after ``windows`` (``(rows, columns)`` pairs, in order, e.g. from
    :func:`layer_windows`) on ``(H, W)`` images."""
    return ReceptiveField(rows=axis_field([w[0] for w in windows], image_shape[0]),
                          cols=axis_field([w[1] for w in windows], image_shape[1]))


def receptive_field_heatmap(similarity: torch.Tensor, field: ReceptiveField, sigma_factor: float = 1.0,
                            reduction: str = "max") -> torch.Tensor:
    """PixPNet's mapping: ``(N, P, Hc, Wc)`` cell similarities -> ``(N, P, H, W)`` pixel map (module docstring)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    relative = similarity - similarity.amin(dim=(-2, -1), keepdim=True)
    sigma = sigma_factor * max(field.rows.size, field.cols.size)
    rows, cols = (axis.gaussian(sigma).to(similarity) for axis in (field.rows, field.cols))
    if reduction == "max":  # max_ij rows[i, y] s_ij cols[j, x] = max_i rows[i, y] max_j s_ij cols[j, x]: weights >= 0
        along_cols = (relative[..., None] * cols).amax(dim=3)  # (N, P, Hc, Wc, W) -> (N, P, Hc, W)
        return (rows[:, :, None] * along_cols[..., None, :]).amax(dim=2)  # (N, P, H, W)
    heat = torch.einsum("npij,iy,jx->npyx", relative, rows, cols)
    if reduction == "sum":
        return heat
    covers = [axis.covers().to(similarity) for axis in (field.rows, field.cols)]
    count = torch.einsum("iy,jx->yx", *covers)
    return heat / count.clamp(min=1)


def upsampled_heatmap(similarity: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """ProtoPNet's mapping: ``(N, P, Hc, Wc)`` -> ``(N, P, H, W)`` by bicubic interpolation."""
    return F.interpolate(similarity, size=image_shape, mode="bicubic", align_corners=False)


def pixel_heatmap(similarity: torch.Tensor, field: ReceptiveField, mapping: str, sigma_factor: float = 1.0,
                  reduction: str = "max") -> torch.Tensor:
    """``(N, P, Hc, Wc)`` cell similarities -> ``(N, P, H, W)`` by ``mapping`` (``rf`` or ``upsample``)."""
    if mapping == "rf":
        return receptive_field_heatmap(similarity, field, sigma_factor, reduction)
    if mapping == "upsample":
        return upsampled_heatmap(similarity, field.image_shape)
    raise ValueError(f"mapping must be one of {', '.join(MAPPINGS)}, got {mapping!r}")
