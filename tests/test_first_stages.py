"""First stages from any source (invproto.models.first_stages): the representation at a named layer equals what
a manual hook reads, wrong layers and weights fail in one line naming the fix, preprocessing does what it
declares, and an IIN trains on a torchvision model, a TorchScript file and an nn.Module class."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from invproto.errors import CheckpointError, ConfigError
from invproto.losses.iin import IINLoss
from invproto.models.first_stages import FirstStage, PreprocessParams
from invproto.models.first_stages.preprocessing import Preprocess
from invproto.models.iin import IIN


class TinyNet(nn.Module):
    """An importable nn.Module for the ``module`` source (tests.test_first_stages.TinyNet)."""

    def __init__(self, width: int = 4, n_classes: int = 3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(width * 8 * 8, n_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class ScriptedNet(TinyNet):
    @torch.jit.export
    def encode(self, x):
        return self.features(x)


def hooked(network: nn.Module, module_name: str, inputs: torch.Tensor, forward=None) -> torch.Tensor:
    """The output of ``network``'s module ``module_name`` while ``forward`` (default: the network) runs."""
    captured = []
    handle = network.get_submodule(module_name).register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        (forward or network)(inputs)
    handle.remove()
    return captured[0]


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> tuple[str, nn.Module]:
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path_factory.mktemp("resnet") / "resnet18.pth"
    torch.save(network.state_dict(), path)
    return str(path), network


def resnet_stage(path: str, layer: str | None, **extra) -> FirstStage:
    return FirstStage({"source": "torchvision", "model": "resnet18", "model_params": {"num_classes": 10},
                       "checkpoint": path, "layer": layer, "in_channels": 3, "in_size": 32, **extra})


def test_torchvision_module_layer_equals_a_manual_hook(resnet_file):
    path, network = resnet_file
    stage = resnet_stage(path, "layer2", preprocess={"value_range": [0, 1]})
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    expected = hooked(network, "layer2", (images + 1) / 2)
    assert stage.representation_shape == tuple(expected.shape[1:]) == (128, 4, 4)
    torch.testing.assert_close(stage.encode(images), expected, atol=1e-6, rtol=1e-6)
    representation, logits = stage.encode_and_classify(images)
    torch.testing.assert_close(logits, network((images + 1) / 2), atol=1e-6, rtol=1e-6)
    assert stage.can_classify and not stage.can_decode
    assert not any(p.requires_grad for p in stage.parameters()) and not stage.training


def test_torchvision_graph_node_equals_the_manual_computation(resnet_file):
    path, network = resnet_file
    stage = resnet_stage(path, "flatten")  # torch.flatten in resnet's forward: a graph node, not a module
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(stage.encode(images), hooked(network, "avgpool", images).flatten(1),
                               atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(stage.classify(images), network(images), atol=1e-6, rtol=1e-6)


def test_tf_inception_layers_equal_manual_hooks():
    from invproto.fid.inception import TFInceptionPool3
    from invproto.fid.weights import load_folded_weights

    reference = TFInceptionPool3().eval()
    reference.load_state_dict(load_folded_weights())
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    net_input = torch.nn.functional.interpolate((images + 1) * (1.9921875 / 2) - 1, size=(96, 96), mode="bilinear",
                                                align_corners=False, antialias=True)
    for layer in ("layers.mixed_5", "pool3"):
        stage = FirstStage({"source": "tf_inception", "layer": layer, "in_channels": 3, "in_size": 32,
                            "preprocess": {"size": 96}})
        expected = (hooked(reference, "layers.mixed_10", net_input, reference.features).mean((2, 3))
                    if layer == "pool3" else hooked(reference, layer, net_input, reference.features))
        torch.testing.assert_close(stage.encode(images), expected, atol=1e-5, rtol=1e-5)
        assert not stage.can_classify


def test_a_wrong_layer_name_lists_the_valid_ones(resnet_file, tmp_path):
    path, _ = resnet_file
    with pytest.raises(ConfigError, match=r"layer 'layer9' is not a layer of torchvision resnet18.*layer1, layer2"):
        resnet_stage(path, "layer9")
    with pytest.raises(ConfigError, match=r"not a layer of TF-Inception.*pool3.*layers.mixed_10"):
        FirstStage({"source": "tf_inception", "layer": "mixed_11", "in_channels": 3, "in_size": 80})


def test_bad_sources_shapes_and_weights_fail_in_one_line(resnet_file, tmp_path):
    path, _ = resnet_file
    with pytest.raises(ConfigError, match="source must be one of"):
        FirstStage({"source": "keras", "in_channels": 3, "in_size": 32})
    with pytest.raises(ConfigError, match="missing config key 'model_params.first_stage.in_channels'"):
        FirstStage({"source": "torchvision", "model": "resnet18", "in_size": 32})
    with pytest.raises(ConfigError, match="not a torchvision model"):
        FirstStage({"source": "torchvision", "model": "resnet1800", "in_channels": 3, "in_size": 32})
    with pytest.raises(CheckpointError, match="another architecture than torchvision resnet34.*give a state dict"):
        FirstStage({"source": "torchvision", "model": "resnet34", "model_params": {"num_classes": 10},
                    "checkpoint": path, "in_channels": 3, "in_size": 32})
    with pytest.raises(ConfigError, match="cannot take .*preprocess"):
        FirstStage({"source": "tf_inception", "in_channels": 3, "in_size": 32})  # 32 px: below 75
    for error in ("missing", "pickled_code"):
        bad = tmp_path / f"{error}.pth"
        if error == "pickled_code":
            torch.save({"weights": TinyNet()}, bad)  # a whole module: only an unsafe load builds it
        with pytest.raises(CheckpointError):
            FirstStage({"source": "module", "model": "test_first_stages.TinyNet", "checkpoint": str(bad),
                        "in_channels": 3, "in_size": 16})


def test_module_class_and_torchscript_file(tmp_path):
    torch.manual_seed(1)
    original = TinyNet(width=4).eval()
    torch.save(original.state_dict(), tmp_path / "tiny.pth")
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    stage = FirstStage({"source": "module", "model": "test_first_stages.TinyNet", "model_params": {"width": 4},
                        "checkpoint": str(tmp_path / "tiny.pth"), "layer": "features", "in_channels": 3,
                        "in_size": 16})
    torch.testing.assert_close(stage.encode(images), original.features(images))
    torch.testing.assert_close(stage.classify(images), original(images))

    scripted = ScriptedNet(width=4).eval()
    scripted.load_state_dict(original.state_dict())
    torch.jit.save(torch.jit.script(scripted), tmp_path / "tiny.pt")
    for layer, expected in ((None, original(images)), ("encode", original.features(images))):
        script_stage = FirstStage({"source": "torchscript", "checkpoint": str(tmp_path / "tiny.pt"), "layer": layer,
                                   "in_channels": 3, "in_size": 16})
        torch.testing.assert_close(script_stage.encode(images), expected)
    with pytest.raises(ConfigError, match="exported methods.*encode"):
        FirstStage({"source": "torchscript", "checkpoint": str(tmp_path / "tiny.pt"), "layer": "features",
                    "in_channels": 3, "in_size": 16})


def test_preprocessing_steps():
    images = torch.full((2, 1, 8, 12), 0.5)
    x = Preprocess(PreprocessParams(channels=3, value_range=[0, 1], size=4, crop=4, mean=[0.5, 0.5, 0.5],
                                    std=[0.25, 0.25, 0.25]))(images)
    assert x.shape == (2, 3, 4, 4)  # shorter side 8 -> 4 (12 -> 6), centre crop 4 x 4
    torch.testing.assert_close(x, torch.full_like(x, (0.75 - 0.5) / 0.25))
    assert torch.equal(Preprocess(PreprocessParams())(images), images)
    with pytest.raises(ConfigError, match="mean and preprocess.std go together"):
        Preprocess(PreprocessParams(mean=[0.5]))


@pytest.mark.parametrize("source", ["torchvision", "torchscript", "module"])
def test_an_iin_trains_on_an_external_first_stage(source, tmp_path):
    torch.manual_seed(0)
    original = TinyNet(width=2).eval()
    torch.save(original.state_dict(), tmp_path / "tiny.pth")
    torch.jit.save(torch.jit.script(original), tmp_path / "tiny.pt")
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), tmp_path / "resnet.pth")
    first_stage = {
        "torchvision": {"source": "torchvision", "model": "resnet18", "model_params": {"num_classes": 4},
                        "checkpoint": str(tmp_path / "resnet.pth"), "layer": "fc"},
        "torchscript": {"source": "torchscript", "checkpoint": str(tmp_path / "tiny.pt")},
        "module": {"source": "module", "model": "test_first_stages.TinyNet", "model_params": {"width": 2},
                   "checkpoint": str(tmp_path / "tiny.pth"), "layer": "features"},
    }[source]
    model = IIN.from_params(first_stage={**first_stage, "in_channels": 3, "in_size": 16}, n_flow=2, hidden_dim=8)
    frozen = [p.clone() for p in model.first_stage.parameters()]
    flow_before = [p.clone() for p in model.flow.parameters()]
    optimizer = torch.optim.Adam(model.flow.parameters(), 1e-2)
    model.train()
    for _ in range(3):
        loss, _ = IINLoss()(*model(torch.rand(8, 3, 16, 16) * 2 - 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.first_stage.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(flow_before, model.flow.parameters()))
    assert "checkpoint" not in model.describe()["model_params"]["first_stage"]


def test_iin_checkpoints_from_before_the_adapter_still_load(tmp_path):
    from invproto.models.classifier import Classifier

    params = {"in_channels": 3, "in_size": 16, "n_classes": 5, "n_down": 3, "base_channels": 4, "code_dim": 8}
    classifier = Classifier.from_params(**params)
    torch.save({"model": classifier.state_dict(), "describe": classifier.describe()}, tmp_path / "clf.ckpt")
    spec = {"model": "invproto.models.classifier.Classifier", "model_params": params,
            "checkpoint": str(tmp_path / "clf.ckpt")}
    model = IIN.from_params(first_stage=spec, n_flow=2, hidden_dim=8)
    assert model.describe()["model_params"]["first_stage"] == {"model": spec["model"], "model_params": params}
    old_layout = {key.replace("first_stage.network.", "first_stage."): value.clone() + 1
                  for key, value in model.state_dict().items()}
    fresh = IIN.from_params(first_stage=spec, n_flow=2, hidden_dim=8)
    fresh.load_state_dict(old_layout)
    assert torch.equal(fresh.first_stage.network.head.weight, classifier.head.weight + 1)
