"""Building the frozen network of a first stage, one function per ``source``.

Each returns a :class:`Network`: the module (weights loaded, not yet frozen),
the tap reading its ``layer`` (:mod:`~invproto.models.first_stages.layers`),
the images it takes and what it can do. Weights are only ever loaded safely:
invproto checkpoints and state-dict files with ``weights_only``
(:func:`invproto.io.load_weights`); a TorchScript file is TorchScript, not a
pickle; torchvision reads its own weights (or downloads them when the network
allows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch
import torch.nn as nn

from invproto.config.targets import get_obj_from_str
from invproto.errors import CheckpointError, ConfigError
from invproto.fid.inception import TFInceptionPool3
from invproto.fid.weights import load_folded_weights
from invproto.io import load_weights
from invproto.models.base import load_checkpoint
from invproto.models.first_stages.layers import (
    EncodeTap,
    GraphTap,
    HookTap,
    MethodTap,
    OutputTap,
    graph_with_two_outputs,
    module_names,
    unknown_layer,
)
from invproto.models.first_stages.params import FirstStageParams

TF_INCEPTION_RANGE = (-1.0, 0.9921875)  # the input range of the TF-Inception graph (see invproto.fid)


@dataclass
class Network:
    """A first stage's network before freezing."""

    module: nn.Module  # what runs (for a torchvision graph node: the feature-extraction graph module)
    tap: Callable  # (module, x, need_output) -> (representation, output or None)
    layer_names: Callable[[], list[str]]  # the valid `layer` values (besides None), built when asked
    in_channels: int | None = None  # the images it takes, when the source knows (invproto models)
    in_size: int | None = None
    preprocess_defaults: dict = field(default_factory=dict)  # PreprocessParams fields the config leaves null
    outputs_logits: bool | None = None  # None: its output is logits when it is (N, K)
    can_decode: bool = False


class InceptionNetwork(TFInceptionPool3):
    """TF-Inception (the FID network's weights) with a global average pool, so ``pool3`` works at any size >= 75 px."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def state_dict_from_file(path: str, key: str, what: str) -> dict:
    """The tensors of a state-dict file (a bare state dict, or one under ``model`` / ``state_dict``)."""
    state = load_weights(path, f"{key}.checkpoint", f"give a state dict saved from {what}")
    for wrapper in ("model", "state_dict"):
        if isinstance(state.get(wrapper), dict):
            return state[wrapper]
    return state


def load_state(module: nn.Module, path: str, key: str, what: str) -> None:
    """Load a state-dict file into ``module``; another architecture's weights -> :class:`CheckpointError`."""
    try:
        module.load_state_dict(state_dict_from_file(path, key, what))
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"{key}.checkpoint {path} holds weights of another architecture than {what} "
                              f"({detail}); give a state dict saved from {what}") from None


def hooked(module: nn.Module, layer: str | None, key: str, what: str, names: list[str]) -> Callable:
    """The tap of ``layer`` (a module name of ``module``, one of ``names``) on ``module``; ``None``: its output."""
    if layer is None:
        return OutputTap()
    if layer not in names:
        raise unknown_layer(key, layer, what, names)
    return HookTap(layer)


def graph_node_names(module: nn.Module) -> list[str]:
    """The nodes of a torchvision model's traced graph in eval mode, in execution order (the last: its output)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    return get_graph_node_names(module)[1]


def torchvision_layer_names(module: nn.Module) -> list[str]:
    """A torchvision model's module names, then the nodes of its traced graph that are not modules."""
    return list(dict.fromkeys(module_names(module) + graph_node_names(module)))


def script_method_names(module: torch.jit.ScriptModule) -> list[str]:
    """The exported methods of a TorchScript module other than ``forward``."""
    return [name for name in module._c._method_names() if name != "forward"]


def tf_inception_layer_names(module: nn.Module) -> list[str]:
    """``pool3`` (the network's output) and TF-Inception's module names (``layers.conv`` ... ``layers.mixed_10``)."""
    return ["pool3", *module_names(module)]


def invproto_network(p: FirstStageParams, key: str) -> Network:
    if p.model is None or p.checkpoint is None:
        raise ConfigError(f"{key} with source invproto needs 'model' (an invproto Model's import path) and "
                          f"'checkpoint' (one of its checkpoints)")
    model = get_obj_from_str(p.model).from_params(**p.model_params)
    state = load_checkpoint(p.checkpoint, model, f"{key}.checkpoint",
                            f"set {key} (checkpoint, model, model_params) to a checkpoint of {p.model} and "
                            f"the run's own model_params")
    model.load_state_dict(state["model"])
    tap = EncodeTap() if p.layer is None else hooked(model, p.layer, key, p.model, module_names(model))
    return Network(model, tap, partial(module_names, model), model.params.in_channels, model.params.in_size,
                   outputs_logits=getattr(model, "outputs_logits", False),
                   can_decode=p.layer is None and hasattr(model, "decode"))


def torchvision_network(p: FirstStageParams, key: str) -> Network:
    import torchvision

    available = torchvision.models.list_models()
    if p.model not in available:
        raise ConfigError(f"{key}.model '{p.model}' is not a torchvision model; e.g. "
                          f"{', '.join(sorted(available)[:12])} ... ({len(available)} in torchvision.models)")
    if p.weights is not None and p.checkpoint is not None:
        raise ConfigError(f"{key}: give either weights (a torchvision weights enum) or checkpoint (a file), "
                          f"not both")
    what = f"torchvision {p.model}({', '.join(f'{k}={v}' for k, v in p.model_params.items())})"
    try:
        module = torchvision.models.get_model(p.model, weights=p.weights, **p.model_params)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{key}: torchvision cannot build {p.model} with weights {p.weights} and "
                          f"model_params {dict(p.model_params)} ({error})") from None
    if p.checkpoint is not None:
        load_state(module, p.checkpoint, key, what)
    layer_names = partial(torchvision_layer_names, module)
    if p.layer is None or p.layer in module_names(module):
        return Network(module, hooked(module, p.layer, key, what, module_names(module)), layer_names)
    module.eval()
    nodes = graph_node_names(module)
    if p.layer not in nodes:
        raise unknown_layer(key, p.layer, what, layer_names())
    if p.layer == nodes[-1]:  # the graph's output node: the network's output
        return Network(module, OutputTap(), layer_names)
    return Network(graph_with_two_outputs(module, p.layer, nodes[-1]), GraphTap(), layer_names)


def torchscript_network(p: FirstStageParams, key: str) -> Network:
    if p.checkpoint is None:
        raise ConfigError(f"{key} with source torchscript needs 'checkpoint': the TorchScript file")
    try:
        module = torch.jit.load(p.checkpoint, map_location="cpu")
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(f"{key}.checkpoint {p.checkpoint} is not a readable TorchScript file "
                              f"({str(error).strip().splitlines()[0] if str(error).strip() else error}); "
                              f"save one with torch.jit.save(torch.jit.script(model), path)") from None
    layer_names = partial(script_method_names, module)
    if p.layer is None:
        return Network(module, OutputTap(), layer_names)
    if p.layer not in layer_names():
        raise unknown_layer(key, p.layer, f"TorchScript file {p.checkpoint} (TorchScript modules take no "
                            "hooks: a layer is one of its exported methods, or null for forward)", layer_names())
    return Network(module, MethodTap(p.layer), layer_names)


def module_network(p: FirstStageParams, key: str) -> Network:
    if p.model is None or p.checkpoint is None:
        raise ConfigError(f"{key} with source module needs 'model' (import path of an nn.Module class) and "
                          f"'checkpoint' (a state-dict file of it)")
    module_class = get_obj_from_str(p.model)
    if not (isinstance(module_class, type) and issubclass(module_class, nn.Module)):
        raise ConfigError(f"{key}.model '{p.model}' is not an nn.Module class")
    module = module_class(**p.model_params)
    what = f"{p.model}({', '.join(f'{k}={v}' for k, v in p.model_params.items())})"
    load_state(module, p.checkpoint, key, what)
    return Network(module, hooked(module, p.layer, key, what, module_names(module)), partial(module_names, module))


def tf_inception_network(p: FirstStageParams, key: str) -> Network:
    module = InceptionNetwork()
    module.load_state_dict(load_folded_weights())
    layer = None if p.layer == "pool3" else p.layer
    tap = hooked(module, layer, key, "TF-Inception (2015-12-05, weights up to pool3)",
                 tf_inception_layer_names(module))
    return Network(module, tap, partial(tf_inception_layer_names, module),
                   preprocess_defaults={"value_range": list(TF_INCEPTION_RANGE), "channels": 3}, outputs_logits=False)


BUILDERS: dict[str, Callable[[FirstStageParams, str], Network]] = {
    "invproto": invproto_network,
    "torchvision": torchvision_network,
    "torchscript": torchscript_network,
    "module": module_network,
    "tf_inception": tf_inception_network,
}
