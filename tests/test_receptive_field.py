"""Receptive fields: hand-computed stacks (borders included), agreement with autograd, torchvision
backbones, and the two pixel-space heat maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from invproto.errors import ConfigError
from invproto.interpret.receptive_field import (
    Window,
    axis_field,
    layer_windows,
    pixel_heatmap,
    receptive_field,
    receptive_field_heatmap,
    upsampled_heatmap,
)
from invproto.models.part_prototypes import PartPrototypeNet


def hand_stack() -> nn.Sequential:
    """Conv 3x3 s1 p1 -> MaxPool 2 -> Conv 3x3 s2 p1 (10 px -> 10 -> 5 -> 3 cells)."""
    return nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.BatchNorm2d(1))


def test_receptive_field_of_a_known_stack_equals_the_hand_computed_one():
    """Cell o reads [2o-1, 2o+1] of the 5-grid (clipped to [0, 4]) -> pool [2a, 2b+1] of the 10-grid
    -> conv [a-1, b+1] clipped to [0, 9]:

    o=0: [-1,1]->[0,1] -> [0,3] -> [-1,4]->[0,4];   o=1: [1,3] -> [2,7] -> [1,8];
    o=2: [3,5]->[3,4] -> [6,9] -> [5,10]->[5,9].
    Unclipped: [2o-1, 2o+1] -> [4o-2, 4o+3] -> [4o-3, 4o+4]: size 8, centres 4o + 1/2.
    """
    field = receptive_field(layer_windows(hand_stack()), (10, 10))
    for axis in (field.rows, field.cols):
        np.testing.assert_array_equal(axis.start, [0, 1, 5])
        np.testing.assert_array_equal(axis.stop, [5, 9, 10])
        np.testing.assert_array_equal(axis.center, [0.5, 4.5, 8.5])
        assert axis.size == 8
    assert field.feature_shape == (3, 3)
    # boxes x0, y0, x1, y1 of cells (row 0, col 2) and (row 2, col 1), row-major flat indices 2 and 7
    assert field.boxes(torch.tensor([2, 7])).tolist() == [[5, 0, 10, 5], [1, 5, 9, 10]]


def test_dilation_ceil_mode_and_asymmetric_kernels_by_hand():
    # dilated conv, k 3, d 2, p 2 on 7 px: cell o reads [o-2, o+2], clipped at both borders
    dilated = axis_field([Window(kernel=3, dilation=2, padding=2)], 7)
    np.testing.assert_array_equal(dilated.start, [0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(dilated.stop, [3, 4, 5, 6, 7, 7, 7])
    assert dilated.size == 5
    # ceil-mode pool 2 on 5 px: 3 cells, the last one reads pixel 4 only
    pooled = axis_field([Window(kernel=2, stride=2, ceil_mode=True)], 5)
    np.testing.assert_array_equal(pooled.start, [0, 2, 4])
    np.testing.assert_array_equal(pooled.stop, [2, 4, 5])
    # a (3, 1) kernel widens rows only
    field = receptive_field(layer_windows(nn.Conv2d(1, 1, (3, 1), padding=(1, 0))), (4, 4))
    np.testing.assert_array_equal(field.rows.stop - field.rows.start, [2, 3, 3, 2])
    np.testing.assert_array_equal(field.cols.stop - field.cols.start, [1, 1, 1, 1])


def gradient_support(module: nn.Module, size: int, cell: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding box ``x0, y0, x1, y1`` of the pixels with a non-zero gradient of one output cell."""
    image = torch.zeros(1, 1, size, size, requires_grad=True)
    module(image)[0, 0, cell[0], cell[1]].backward()
    rows, cols = torch.nonzero(image.grad[0, 0].abs().sum(1)), torch.nonzero(image.grad[0, 0].abs().sum(0))
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_receptive_fields_agree_with_the_pixels_autograd_reaches():
    """A linear stack with positive weights: every pixel in a cell's field has a non-zero gradient."""
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(2, 2, 5, stride=2, padding=2),
                          nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(2, 1, 3, stride=1, padding=0))
    for module in stack:
        if isinstance(module, nn.Conv2d):
            nn.init.uniform_(module.weight, 0.1, 1.0)
    size = 19
    field = receptive_field(layer_windows(stack), (size, size))
    assert field.feature_shape == tuple(stack(torch.zeros(1, 1, size, size)).shape[-2:])
    n_rows, n_cols = field.feature_shape
    for row in range(n_rows):
        for col in range(n_cols):
            expected = field.boxes(torch.tensor(row * n_cols + col)).tolist()
            assert list(gradient_support(stack, size, (row, col))) == expected, (row, col)


@pytest.mark.parametrize("backbone, cut", [("vgg11_bn", "features.14"), ("resnet18", "layer2")])
def test_torchvision_backbones_cut_at_a_named_layer(backbone, cut):
    """Random weights, no download; the field's grid is checked against a real forward pass in the model."""
    model = PartPrototypeNet.from_params(backbone=backbone, cut=cut, in_channels=1, in_size=64, n_classes=2,
                                         prototypes_per_class=1, prototype_dim=4)
    assert model.field.feature_shape == (8, 8)
    assert model(torch.zeros(2, 1, 64, 64)).distances.shape == (2, 2, 8, 8)


def test_an_unsupported_layer_is_refused_in_one_line():
    with pytest.raises(ValueError, match="unsupported layer Upsample"):
        layer_windows(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2)))
    with pytest.raises(ConfigError, match="model_params.cut 'features.99' is not a layer"):
        PartPrototypeNet.from_params(backbone="vgg11", cut="features.99")


def test_gaussian_mapping_spreads_one_cell_over_its_clipped_field():
    """Only cell (0, 1) is active: its Gaussian (sigma = 8, centred on the unclipped field at 0.5 / 4.5)
    covers rows 0..4 and columns 1..8, and weighs 1 at the pixels nearest the centre."""
    field = receptive_field(layer_windows(hand_stack()), (10, 10))
    similarity = torch.zeros(1, 1, 3, 3)
    similarity[0, 0, 0, 1] = 2.0
    for reduction in ("max", "sum"):
        heat = receptive_field_heatmap(similarity, field, sigma_factor=1.0, reduction=reduction)[0, 0]
        assert torch.all(heat[5:] == 0) and torch.all(heat[:, :1] == 0) and torch.all(heat[:, 9:] == 0)
        assert torch.all(heat[:5, 1:9] > 0)
        torch.testing.assert_close(heat[0, 4], torch.tensor(2.0))  # distance 1/2 from both centres
        torch.testing.assert_close(heat[4, 8], torch.tensor(2.0 * math.exp(-(3.5 ** 2 - 0.25) * 2 / (2 * 64))))
    # mean: the sum divided by how many cells cover each pixel (pixel (0, 4) is covered by 1 x 2 cells)
    mean = receptive_field_heatmap(similarity, field, reduction="mean")[0, 0]
    torch.testing.assert_close(mean[0, 4], torch.tensor(1.0))


def test_mappings_are_shift_free_and_shaped_like_the_image():
    field = receptive_field(layer_windows(hand_stack()), (10, 10))
    similarity = torch.rand(2, 3, 3, 3)
    heat = pixel_heatmap(similarity, field, "rf")
    assert heat.shape == (2, 3, 10, 10)
    torch.testing.assert_close(pixel_heatmap(similarity + 5.0, field, "rf"), heat)  # relative to the minimum cell
    heat = pixel_heatmap(similarity, field, "upsample")
    assert heat.shape == (2, 3, 10, 10)
    torch.testing.assert_close(pixel_heatmap(similarity + 5.0, field, "upsample") - 5.0, heat)
    constant = torch.full((1, 1, 3, 3), 4.0)
    torch.testing.assert_close(upsampled_heatmap(constant, (10, 10)), torch.full((1, 1, 10, 10), 4.0))
    with pytest.raises(ValueError, match="mapping must be one of rf, upsample"):
        pixel_heatmap(similarity, field, "nearest")
