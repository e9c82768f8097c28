"""The vector flow: exact inverse, exact log-determinant, fixed permutations, identity couplings at init,
the reference's MLP depth and parameter count."""

import pytest
import torch

from invproto.modules.flow import AffineCoupling, FlowParams, Permutation, VectorFlow, mlp


def trained_like_flow(in_dim: int = 6, n_flow: int = 2, seed: int = 0) -> VectorFlow:
    """A float64 flow with data-initialised ActNorm and random (non-zero) coupling weights."""
    torch.manual_seed(seed)
    flow = VectorFlow(FlowParams(in_dim=in_dim, n_flow=n_flow, hidden_depth=2, hidden_dim=16, seed=seed)).double()
    flow.train()
    flow(torch.randn(64, in_dim, dtype=torch.float64) * 3 + 1)  # data-dependent ActNorm init
    with torch.no_grad():
        for module in flow.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.5)
                module.bias.normal_(0, 0.5)
    return flow.eval()


@pytest.mark.parametrize("in_dim", [6, 7])
def test_inverse_of_forward_is_identity(in_dim):
    flow = trained_like_flow(in_dim=in_dim, n_flow=3)
    x = torch.randn(32, in_dim, dtype=torch.float64) * 2
    z, log_det = flow(x)
    assert z.shape == x.shape and log_det.shape == (32,)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(flow(flow.inverse(z))[0], z, atol=1e-5, rtol=0)


def test_log_det_equals_log_det_of_autograd_jacobian():
    flow = trained_like_flow(in_dim=6, n_flow=2)
    for x in torch.randn(5, 6, dtype=torch.float64):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x)
        _, log_det = flow(x[None])
        expected = torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(log_det[0], expected, atol=1e-8, rtol=1e-8)
        assert abs(float(expected)) > 1e-3, "the check must not pass trivially"


def test_permutation_is_a_seeded_bijection_saved_with_the_model():
    permutation = Permutation(64, seed=3)
    assert sorted(permutation.order.tolist()) == list(range(64))
    x = torch.randn(4, 64)
    torch.testing.assert_close(permutation.inverse(permutation(x)), x)
    assert torch.equal(Permutation(64, seed=3).order, permutation.order)
    assert not torch.equal(Permutation(64, seed=4).order, permutation.order)
    assert {"order", "inverse_order"} <= set(permutation.state_dict())


def test_couplings_start_as_identity():
    """Zero-initialised last layers: s = t = 0, so the untrained coupling is the identity with log-det 0."""
    coupling = AffineCoupling(7, hidden_dim=8, hidden_depth=2, condition_on_first=False)
    x = torch.randn(5, 7)
    y, log_det = coupling(x)
    assert torch.equal(y, x) and torch.equal(log_det, torch.zeros(5))
    flow = VectorFlow(FlowParams(in_dim=7, n_flow=2, hidden_dim=8)).eval()  # ActNorm not initialised: identity
    z, log_det = flow(x)
    permuted = x[:, flow.steps[0].permutation.order][:, flow.steps[1].permutation.order]
    assert torch.equal(z, permuted) and torch.equal(log_det, torch.zeros(5))


def test_actnorm_data_dependent_init_standardises_the_first_batch():
    flow = VectorFlow(FlowParams(in_dim=8, n_flow=1, hidden_dim=8))
    x = torch.randn(256, 8) * 5 + 3
    normed = flow.steps[0].norm(x)
    torch.testing.assert_close(normed.mean(0), torch.zeros(8), atol=1e-4, rtol=0)
    torch.testing.assert_close(normed.std(0), torch.ones(8), atol=1e-4, rtol=0)


def reference_flow_parameters(in_dim: int, n_flow: int, hidden_dim: int, hidden_depth: int) -> int:
    """Parameters of the IIN reference's vector flow, from its layer shapes.

    A block is ActNorm (loc and log-scale, ``2 D``) and a double coupling: two
    couplings, each with a scale and a shift ``BasicFullyConnectedNet`` from
    one half (``D/2``) to the other: ``Linear(D/2, h)``, ``hidden_depth`` x
    ``Linear(h, h)``, ``Linear(h, D/2)``, each with its bias.
    """
    half = in_dim // 2
    mlp = (half * hidden_dim + hidden_dim) + hidden_depth * (hidden_dim * hidden_dim + hidden_dim) \
        + (hidden_dim * half + half)
    return n_flow * (2 * in_dim + 2 * 2 * mlp)


def test_parameter_count_matches_the_reference_shape():
    """12 blocks of width 512 and hidden_depth 2 on a 64-d code: the reference's 26.8M parameters."""
    flow = VectorFlow(FlowParams(in_dim=64, n_flow=12, hidden_dim=512, hidden_depth=2))
    expected = reference_flow_parameters(in_dim=64, n_flow=12, hidden_dim=512, hidden_depth=2)
    assert sum(p.numel() for p in flow.parameters()) == expected
    assert round(expected / 1e6, 1) == 26.8


def test_hidden_depth_zero_is_one_hidden_layer():
    """``hidden_depth=0``: Linear(in, h) -> LeakyReLU -> Linear(h, out)."""
    net = mlp(in_dim=5, out_dim=3, hidden_dim=16, hidden_depth=0)
    assert [type(module) for module in net] == [torch.nn.Linear, torch.nn.LeakyReLU, torch.nn.Linear]
    assert [(net[0].in_features, net[0].out_features), (net[2].in_features, net[2].out_features)] == [(5, 16), (16, 3)]
