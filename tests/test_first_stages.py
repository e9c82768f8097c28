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
    names = stage.layer_names()
    assert {"layer2", "layer2.0.conv1", "flatten", "layer2.0.add"} <= set(names)
    assert names.index("fc") < names.index("flatten")  # modules first, then the graph nodes that are not modules



def test_later_in_place_operations_leave_the_representation_alone(resnet_file):
    """resnet's blocks add the shortcut in place (``out += identity``) and then apply an in-place ReLU: the
    representation is the value when the layer ran, whether or not the network runs on to its logits."""
    path, network = resnet_file
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    block = network.layer2[0]
    with torch.no_grad():
        x = hooked(network, "layer1", images)
        after_bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        before_second_relu = after_bn2 + block.downsample(x)
    for layer, expected in (("layer2.0.add", before_second_relu), ("layer2.0.bn2", after_bn2),
                            ("layer2.0.relu", torch.relu(block.bn1(block.conv1(x))))):  # relu runs twice: 1st
        stage = resnet_stage(path, layer)
        representation, logits = stage.encode_and_classify(images)
        torch.testing.assert_close(stage.encode(images), expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(representation, expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(logits, network(images), atol=1e-6, rtol=1e-6)


@pytest.mark.slow  # 2 s of weights, two 80 px Inception networks and their forward passes
def test_tf_inception_layers_equal_manual_hooks(monkeypatch):
    from invproto.fid.inception import TFInceptionPool3
    from invproto.fid.weights import load_folded_weights
    from invproto.models.first_stages import sources

    weights = load_folded_weights()  # read once (2 s): the stages below get the same tensors
    monkeypatch.setattr(sources, "load_folded_weights", lambda: weights)
    reference = TFInceptionPool3().eval()
    reference.load_state_dict(weights)
    images = torch.rand(1, 1, 32, 32) * 2 - 1  # grey: the default preprocessing repeats it to RGB
    net_input = torch.nn.functional.interpolate((images.expand(-1, 3, -1, -1) + 1) * (1.9921875 / 2) - 1,
                                                size=(80, 80), mode="bilinear", align_corners=False, antialias=True)
    captured = {}
    for name in ("layers.mixed_5", "layers.mixed_10"):
        reference.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: captured.update({name: o}))
    with torch.no_grad():
        reference.features(net_input)
    expected = {"layers.mixed_5": captured["layers.mixed_5"], "pool3": captured["layers.mixed_10"].mean((2, 3))}
    for layer in ("layers.mixed_5", "pool3"):
        stage = FirstStage({"source": "tf_inception", "layer": layer, "in_channels": 1, "in_size": 32,
                            "preprocess": {"size": 80}})
        torch.testing.assert_close(stage.encode(images), expected[layer], atol=1e-5, rtol=1e-5)
        assert not stage.can_classify
    assert {"pool3", "layers.conv", "layers.mixed", "layers.mixed_10"} <= set(stage.layer_names())


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
        assert script_stage.layer_names() == ["encode"]
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


def test_preprocessing_of_varying_images_equals_the_manual_computation():
    torch.manual_seed(2)
    images = torch.rand(2, 1, 12, 16) * 2 - 1
    x = Preprocess(PreprocessParams(channels=3, value_range=[0, 255], size=6, crop=4, mean=[1.0, 2.0, 3.0],
                                    std=[2.0, 4.0, 8.0]))(images)
    scaled = (images.expand(-1, 3, -1, -1) + 1) * 127.5
    resized = torch.nn.functional.interpolate(scaled, size=(6, 8), mode="bilinear", align_corners=False,
                                              antialias=True)
    cropped = resized[:, :, 1:5, 2:6]  # the centre 4 x 4 of 6 x 8
    expected = (cropped - torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)) / torch.tensor([2.0, 4.0, 8.0]).view(
        1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    assert torch.equal(x[:, 0] * 2 + 1, (x[:, 1] * 4 + 2))  # every channel is the same grey image
    with pytest.raises(ConfigError, match="high > low"):
        Preprocess(PreprocessParams(value_range=[1.0, 0.0]))
    with pytest.raises(ConfigError, match="mean and preprocess.std go together"):
        Preprocess(PreprocessParams(mean=[0.5]))


def saved_classifier(path) -> tuple[nn.Module, dict]:
    """A fresh invproto Classifier saved as an invproto checkpoint at ``path``, and its first-stage config."""
    from invproto.models.classifier import Classifier

    params = {"in_channels": 3, "in_size": 16, "n_classes": 5, "n_down": 3, "base_channels": 4, "code_dim": 8}
    classifier = Classifier.from_params(**params).eval()
    torch.save({"model": classifier.state_dict(), "describe": classifier.describe()}, path)
    return classifier, {"model": "invproto.models.classifier.Classifier", "model_params": params,
                        "checkpoint": str(path)}


def test_an_invproto_classifier_encodes_and_classifies_in_one_pass(tmp_path):
    classifier, spec = saved_classifier(tmp_path / "clf.ckpt")
    stage = FirstStage(spec)
    assert stage.can_classify and not stage.can_decode and stage.representation_shape == (8,)
    assert "encoder" in stage.layer_names() and "head" in stage.layer_names()
    passes = []
    stage.network.encoder.register_forward_hook(lambda *args: passes.append(1))
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    codes, logits = stage.encode_and_classify(images)
    assert len(passes) == 1 and "encode" not in vars(stage.network)  # one pass; the model's encode is restored
    with torch.no_grad():
        torch.testing.assert_close(codes, classifier.encode(images))
        torch.testing.assert_close(logits, classifier(images))


def test_representations_are_differentiable_with_respect_to_the_images(resnet_file):
    path, _ = resnet_file
    stage = resnet_stage(path, "layer2", preprocess={"size": 40, "crop": 36, "value_range": [0, 1],
                                                     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    images = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_()
    representation, logits = stage.encode_and_classify(images)
    (representation.sum() + logits.sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in stage.parameters())


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
    classifier, spec = saved_classifier(tmp_path / "clf.ckpt")
    model = IIN.from_params(first_stage=spec, n_flow=2, hidden_dim=8)
    assert model.describe()["model_params"]["first_stage"] == {"model": spec["model"],
                                                               "model_params": spec["model_params"]}
    old_layout = {key.replace("first_stage.network.", "first_stage."): value.clone() + 1
                  for key, value in model.state_dict().items()}
    fresh = IIN.from_params(first_stage=spec, n_flow=2, hidden_dim=8)
    fresh.load_state_dict(old_layout)
    assert torch.equal(fresh.first_stage.network.head.weight, classifier.head.weight + 1)
