"""The conditional flow of the invariances model and its condition embedders: exact inverse, exact
log-determinant (autograd) through each embedder, the condition's effect, shapes, parameter count."""

from __future__ import annotations

import pytest
import torch

from invproto.errors import ConfigError
from invproto.modules.conditional_flow import ConditionalFlowParams, ConditionalVectorFlow
from invproto.modules.embedders import ConvEmbedder, DenseEmbedder, EmbedderParams, build_embedder

DIM, EMBEDDING = 6, 5
REPRESENTATIONS = {"dense": (32,), "conv": (8, 7, 9)}


def randomised(module: torch.nn.Module, batch: tuple) -> torch.nn.Module:
    """``module`` in float64 with data-initialised ActNorms and random (non-zero) linear weights, eval mode."""
    module = module.double().train()
    module(*batch)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 0.4)
                layer.bias.normal_(0, 0.4)
    return module.eval()


class EmbeddedFlow(torch.nn.Module):
    """Embedder + conditional flow, as the model composes them."""

    def __init__(self, representation_shape: tuple[int, ...]):
        super().__init__()
        self.embedder = build_embedder(representation_shape, EmbedderParams(embedding_dim=EMBEDDING, depth=2,
                                                                            base_channels=4))
        self.flow = ConditionalVectorFlow(ConditionalFlowParams(in_dim=DIM, condition_dim=EMBEDDING, n_flow=3,
                                                                hidden_depth=1, hidden_dim=12))

    def forward(self, x, representation):
        return self.flow(x, self.embedder(representation))

    def inverse(self, z, representation):
        return self.flow.inverse(z, self.embedder(representation))


def embedded_flow(kind: str) -> tuple[EmbeddedFlow, torch.Tensor]:
    torch.manual_seed(0)
    shape = REPRESENTATIONS[kind]
    representation = torch.randn(16, *shape, dtype=torch.float64)
    model = randomised(EmbeddedFlow(shape), (torch.randn(16, DIM, dtype=torch.float64) * 2 + 1, representation))
    return model, representation


@pytest.mark.parametrize("kind", list(REPRESENTATIONS))
def test_inverse_is_exact_under_each_embedder(kind):
    model, representation = embedded_flow(kind)
    x = torch.randn(16, DIM, dtype=torch.float64) * 2
    z, log_det = model(x, representation)
    assert z.shape == x.shape and log_det.shape == (16,)
    assert (z - x).abs().max() > 0.1, "the flow must not be the identity"
    torch.testing.assert_close(model.inverse(z, representation), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(model(model.inverse(z, representation), representation)[0], z, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", list(REPRESENTATIONS))
def test_log_det_equals_autograd_under_each_embedder(kind):
    model, representation = embedded_flow(kind)
    for x, condition in zip(torch.randn(4, DIM, dtype=torch.float64), representation):
        jacobian = torch.autograd.functional.jacobian(lambda v: model(v[None], condition[None])[0][0], x)
        expected = torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(model(x[None], condition[None])[1][0], expected, atol=1e-8, rtol=1e-8)
        assert abs(float(expected)) > 1e-3, "the check must not pass trivially"


@pytest.mark.parametrize("kind", list(REPRESENTATIONS))
def test_the_condition_changes_the_map_and_trains_the_embedder(kind):
    model, representation = embedded_flow(kind)
    x = torch.randn(16, DIM, dtype=torch.float64)
    z_own, _ = model(x, representation)
    z_other, _ = model(x, representation.roll(1, 0))
    assert (z_own - z_other).abs().max() > 1e-3
    z, log_det = model(x, representation)
    (0.5 * z.square().sum(1) - log_det).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.embedder.parameters())


def test_build_embedder_chooses_by_shape_and_refuses_others():
    params = EmbedderParams(embedding_dim=8, depth=3, base_channels=4)
    assert isinstance(build_embedder((10,), params), DenseEmbedder)
    assert isinstance(build_embedder((10, 1, 1), params), DenseEmbedder)
    assert isinstance(build_embedder((3, 28, 20), params), ConvEmbedder)
    for shape, n in (((10,), 2), ((10, 1, 1), 2), ((3, 28, 20), 2), ((3, 5, 5), 1)):
        assert build_embedder(shape, params)(torch.randn(n, *shape)).shape == (n, 8)
    with pytest.raises(ConfigError, match="layer"):
        build_embedder((4, 5), params)
    with pytest.raises(ConfigError, match="n_down"):
        build_embedder((3, 8, 8), EmbedderParams(n_down=5))


@pytest.mark.parametrize("side, expected", [((7, 9), (1, (3, 4))), ((28, 20), (3, (3, 2))),
                                            ((2, 64), (1, (1, 32))), ((1, 16), (0, (1, 16)))])
def test_conv_embedder_halves_until_the_longer_side_is_small_but_keeps_the_shorter(side, expected):
    """Automatic n_down: halve until max(H, W) <= 4, never past one pixel on the shorter side; the last
    convolution's kernel is whatever map is left, so every side ratio embeds to (N, E)."""
    embedder = build_embedder((3, *side), EmbedderParams(embedding_dim=8, base_channels=4))
    strided = [layer for layer in embedder.net if isinstance(layer, torch.nn.Conv2d) and layer.stride == (2, 2)]
    assert (len(strided), embedder.net[-1].kernel_size) == expected
    assert embedder(torch.randn(2, 3, *side)).shape == (2, 8)


def test_conv_embedder_doubles_channels_up_to_the_cap():
    embedder = ConvEmbedder(3, 128, 128, embedding_dim=8, base_channels=128, n_down=5)
    widths = [layer.out_channels for layer in embedder.net if isinstance(layer, torch.nn.Conv2d)]
    assert widths == [128, 256, 512, 512, 512, 8]


def test_dense_widths_are_linearly_spaced():
    widths = [layer.out_features for layer in DenseEmbedder(10, 64, depth=2).net if isinstance(layer, torch.nn.Linear)]
    assert widths == [37, 64]


def test_parameter_count_follows_the_reference_convention():
    """Per block: ActNorm (2D) + 2 couplings x (scale, shift) MLPs of Linear(D/2 + E, h), depth x Linear(h, h),
    Linear(h, D/2)."""
    d, e, h, depth, blocks = 64, 32, 128, 2, 3
    flow = ConditionalVectorFlow(ConditionalFlowParams(in_dim=d, condition_dim=e, n_flow=blocks,
                                                       hidden_depth=depth, hidden_dim=h))
    one_mlp = (d // 2 + e) * h + h + depth * (h * h + h) + h * (d // 2) + d // 2
    expected = blocks * (2 * d + 2 * 2 * one_mlp)
    assert sum(p.numel() for p in flow.parameters()) == expected
