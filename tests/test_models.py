"""Model building blocks: ActNorm initialisation and log-det, classifier shapes."""

import pytest
import torch

from invproto.models.classifier import Classifier
from invproto.modules.actnorm import ActNorm


def test_actnorm_data_dependent_init_standardises_first_batch():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([2.0, 0.5, 7.0]).view(1, 3, 1, 1) + 3.0
    norm = ActNorm(3)
    y = norm(x)
    assert bool(norm.initialized)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)
    second = norm(x * 2)  # parameters stay fixed after the first batch
    assert not torch.allclose(second.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_actnorm_log_det_matches_autograd_jacobian():
    torch.manual_seed(1)
    norm = ActNorm(3)
    norm(torch.randn(16, 3))  # initialise
    x = torch.randn(1, 3)
    jacobian = torch.autograd.functional.jacobian(lambda v: norm(v.view(1, 3)).view(3), x.view(3))
    assert torch.allclose(norm.log_det(x), torch.logdet(jacobian).view(1), atol=1e-5)


@pytest.mark.parametrize("size, channels, n_down", [(28, 1, 3), (32, 3, 4), (64, 3, 4)])
def test_classifier_shapes(size, channels, n_down):
    model = Classifier.from_params(in_channels=channels, in_size=size, n_down=n_down, base_channels=4,
                                   n_classes=7)
    images = torch.rand(5, channels, size, size) * 2 - 1
    assert model.encode(images).shape == (5, 64)
    assert model(images).shape == (5, 7)
    assert model.describe() == {"model": "invproto.models.classifier.Classifier",
                                "model_params": {"in_channels": channels, "in_size": size, "n_classes": 7,
                                                 "n_down": n_down, "base_channels": 4, "code_dim": 64}}
