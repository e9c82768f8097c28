"""The multiscale image flow: exact inverses and log-determinants of every layer and of the whole flow.

Log-determinants are checked against ``slogdet`` of the Jacobian computed by
autograd on tiny inputs (float64); every layer gets random, non-identity
parameters first, so the checks cannot pass by the identity initialisation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from invproto.errors import ConfigError
from invproto.modules.image_flow import (
    SCALE_CLAMP,
    ActNormStep,
    AffineCoupling2d,
    Dequantization,
    FlowStep,
    ImageFlowParams,
    InvertibleConv1x1,
    MultiscaleFlow,
    standard_normal_log_prob,
)


def randomize(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """float64, eval mode, every parameter moved by ``scale * N(0, 1)`` (the zero-initialised layers included)."""
    generator = torch.Generator().manual_seed(seed)
    module = module.double().eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def autograd_log_det(function, x: torch.Tensor) -> torch.Tensor:
    """``log|det d function(x) / dx|`` of a map of one example ``(1, ...)`` to a flat vector."""
    jacobian = torch.autograd.functional.jacobian(lambda flat: function(flat.view_as(x)), x.flatten())
    return torch.linalg.slogdet(jacobian)[1]


def tiny(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("make_step", [
    lambda: ActNormStep(4),
    lambda: InvertibleConv1x1(4, seed=3),
    lambda: AffineCoupling2d(4, hidden_channels=8),
    lambda: FlowStep(4, hidden_channels=8, seed=3),
], ids=["actnorm", "conv1x1", "coupling", "flow_step"])
def test_each_step_inverts_exactly_and_its_log_det_is_the_jacobians(make_step):
    step = randomize(make_step())
    x = tiny(3, 4, 2, 2)
    y, log_det = step(x)
    assert y.shape == x.shape and log_det.shape == (3,)
    assert torch.allclose(step.inverse(y), x, atol=1e-10)
    for i in range(3):
        exact = autograd_log_det(lambda image: step(image)[0].flatten(), x[i:i + 1])
        assert torch.allclose(log_det[i], exact, atol=1e-8), (float(log_det[i]), float(exact))


def test_conv1x1_log_det_is_the_slogdet_of_its_lu_weight_and_starts_as_a_rotation():
    conv = InvertibleConv1x1(6, seed=0)
    weight = conv.weight()
    assert torch.allclose(weight @ weight.T, torch.eye(6), atol=1e-5)  # a random rotation, |det| = 1
    randomize(conv)
    x = tiny(2, 6, 3, 5)
    _, log_det = conv(x)
    assert torch.allclose(log_det, torch.linalg.slogdet(conv.weight())[1] * 15, atol=1e-10)
    assert abs(float(torch.linalg.slogdet(conv.weight().detach())[1])) > 0.1  # the randomised weight is no rotation


def test_coupling_starts_as_the_identity_and_keeps_its_conditioning_half():
    coupling = AffineCoupling2d(4, hidden_channels=8).eval()
    x = torch.randn(2, 4, 3, 3)
    y, log_det = coupling(x)
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(2))
    randomize(coupling)
    y, _ = coupling(x.double())
    assert torch.equal(y[:, :2], x.double()[:, :2]) and not torch.allclose(y[:, 2:], x.double()[:, 2:])


def test_coupling_log_scale_is_soft_clamped():
    coupling = randomize(AffineCoupling2d(2, hidden_channels=4), scale=50.0)  # huge raw scales
    with torch.no_grad():
        log_scale, _ = coupling._scale_shift(tiny(1, 1, 3, 3))
        _, log_det = coupling(tiny(1, 2, 3, 3))
    assert 0.9 * SCALE_CLAMP < log_scale.abs().max() <= SCALE_CLAMP
    assert abs(float(log_det)) <= 9 * SCALE_CLAMP  # 9 changed values


def test_actnorm_step_initialises_from_the_first_training_batch_per_channel():
    step = ActNormStep(3).train()
    x = torch.randn(16, 3, 4, 4) * torch.tensor([0.5, 2.0, 7.0]).view(1, 3, 1, 1) + 3.0
    y, log_det = step(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    assert torch.allclose(log_det, -x.transpose(0, 1).flatten(1).std(dim=1).log().sum().expand(16) * 16, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("shape,n_levels", [((1, 4, 4), 2), ((2, 4, 4), 2), ((1, 8, 8), 3)])
def test_multiscale_flow_inverts_exactly_with_its_factored_parts_and_log_det_is_the_jacobians(shape, n_levels):
    channels, size, _ = shape
    flow = randomize(MultiscaleFlow(ImageFlowParams(in_channels=channels, in_size=size, n_levels=n_levels,
                                                    steps_per_level=2, hidden_channels=8)), scale=0.1)
    x = tiny(2, *shape)
    z, factored, log_det = flow(x)
    assert z.shape == (2, flow.latent_dim) and len(factored) == n_levels - 1
    assert flow.latent_dim + sum(math.prod(part.shape[1:]) for part in factored) == math.prod(shape)
    assert torch.allclose(flow.inverse(z, factored), x, atol=1e-10)

    def everything(image):
        latent, parts, _ = flow(image)
        return torch.cat([latent.flatten()] + [part.flatten() for part in parts])

    for i in range(2):
        assert torch.allclose(log_det[i], autograd_log_det(everything, x[i:i + 1]), atol=1e-8)


def test_multiscale_flow_inverse_float32_is_exact_to_1e5_and_sets_missing_parts_to_zero():
    flow = randomize(MultiscaleFlow(ImageFlowParams(in_channels=1, in_size=28, n_levels=2, steps_per_level=2,
                                                    hidden_channels=16)), scale=0.05).float()
    x = torch.rand(4, 1, 28, 28) - 0.5
    z, factored, _ = flow(x)
    assert factored[0].shape == (4, 2, 14, 14) and flow.latent_shape == (8, 7, 7)
    assert (flow.inverse(z, factored) - x).abs().max() < 1e-5
    zeroed = [torch.zeros_like(part) for part in factored]
    assert torch.equal(flow.inverse(z), flow.inverse(z, zeroed))


def test_multiscale_flow_refuses_sizes_it_cannot_squeeze():
    with pytest.raises(ConfigError, match="in_size 28 is not divisible by 2\\*\\*n_levels = 8"):
        MultiscaleFlow(ImageFlowParams(in_size=28, n_levels=3))


def test_dequantization_adds_at_most_one_bin_in_training_and_the_mid_bin_at_eval():
    pixels = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16)
    images = pixels / 127.5 - 1
    dequantization = Dequantization()
    v, log_det = dequantization.eval()(images)
    assert torch.allclose(v, (pixels + 0.5) / 256 - 0.5)
    assert torch.allclose(log_det, torch.tensor([-256 * math.log(256)]))
    assert torch.allclose(dequantization.inverse(v), images, atol=1e-6)
    noisy, _ = dequantization.train()(images.expand(8, 1, 16, 16))
    bins = ((noisy + 0.5) * 256).floor()
    assert torch.equal(bins, pixels.expand(8, 1, 16, 16)) and noisy.std(dim=0).min() > 0


def test_standard_normal_log_prob_sums_every_part():
    parts = [torch.randn(3, 2, 2, 2), torch.randn(3, 5)]
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = normal.log_prob(parts[0]).flatten(1).sum(1) + normal.log_prob(parts[1]).sum(1)
    assert torch.allclose(standard_normal_log_prob(parts), expected, atol=1e-5)
