"""Reading a network's representation at a named layer (a "tap") while it runs on preprocessed images.

A tap is called as ``tap(network, x, need_output)`` and returns
``(representation, output)``: the activation of its layer and, when
``need_output``, the network's final output (else ``None``). The network is
passed in at every call, so a tap holds no tensors and follows the network
across devices.

* :class:`OutputTap` -- the network's output is the representation;
* :class:`HookTap` -- a module's output, read with a forward hook; without
  ``need_output`` the forward pass stops right after that module;
* :class:`GraphTap` -- a node of a torchvision ``feature_extraction`` graph
  module built with two outputs (``representation``, ``output``) by
  :func:`graph_with_two_outputs`;
* :class:`MethodTap` -- a TorchScript method (ScriptModules take no hooks);
* :class:`EncodeTap` -- an invproto model's ``encode`` (its posterior mode for
  an autoencoder).

When the network runs on past the layer, the representation is a copy taken
as soon as the layer has computed it: later in-place operations (resnet's
``out += identity``, ``ReLU(inplace=True)``) would otherwise change it, and
``encode`` and ``encode_and_classify`` would disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from invproto.errors import ConfigError

SHOWN_NAMES = 30  # layer names listed in an error message


class _StopForward(Exception):
    """Raised by a hook once the tapped layer has run and the rest of the network is not needed."""


def first_stage_codes(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(N, C, S, S)`` images -> ``(N, D)`` codes of ``model.encode`` (an invproto model or a
    :class:`~invproto.models.first_stages.FirstStage`), flattened after ``N``.

    An encoder returning a distribution instead of a tensor (anything with
    ``mode()``, e.g. the autoencoder's posterior) is reduced to its mode, the
    posterior mean. (Tensors have a ``mode()`` too -- the statistical mode
    along a dimension -- so they are returned as they are.)
    """
    return code_tensor(model.encode(images)).flatten(1)


def code_tensor(encoded) -> torch.Tensor:
    """What an ``encode`` returned, as a tensor: a distribution (anything with ``mode()``) becomes its mode."""
    return encoded if isinstance(encoded, torch.Tensor) else encoded.mode()


class OutputTap:
    def __call__(self, network: nn.Module, x: torch.Tensor, need_output: bool):
        output = network(x)
        return output, output


@dataclass
class HookTap:
    module_name: str

    def __call__(self, network: nn.Module, x: torch.Tensor, need_output: bool):
        captured = {}

        def hook(module, inputs, output):
            if "representation" in captured:  # a module run more than once (resnet's relu): its first output
                return
            if not need_output:
                captured["representation"] = output
                raise _StopForward
            captured["representation"] = output.clone() if isinstance(output, torch.Tensor) else output

        handle = network.get_submodule(self.module_name).register_forward_hook(hook)
        try:
            output = network(x)
        except _StopForward:
            output = None
        finally:
            handle.remove()
        if "representation" not in captured:
            raise ConfigError(f"layer '{self.module_name}' did not run in the network's forward pass; "
                              f"choose a layer the forward pass uses")
        return captured["representation"], output


def graph_with_two_outputs(module: nn.Module, node: str, output_node: str) -> nn.Module:
    """``module`` traced into a graph module returning ``{"representation": <node>, "output": <output_node>}``,
    the representation copied right after ``node`` runs (see the module docstring)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    graph_module = create_feature_extractor(module, return_nodes={node: "representation", output_node: "output"})
    graph = graph_module.graph
    returned = next(graph_node for graph_node in graph.nodes if graph_node.op == "output")
    outputs = dict(returned.args[0])
    with graph.inserting_after(outputs["representation"]):
        outputs["representation"] = graph.call_function(torch.clone, (outputs["representation"],))
    returned.args = (outputs,)
    graph_module.recompile()
    return graph_module


class GraphTap:
    def __call__(self, network: nn.Module, x: torch.Tensor, need_output: bool):
        outputs = network(x)
        return outputs["representation"], outputs["output"]


@dataclass
class MethodTap:
    method: str

    def __call__(self, network: nn.Module, x: torch.Tensor, need_output: bool):
        return getattr(network, self.method)(x), network(x) if need_output else None


class EncodeTap:
    """An invproto model's codes (``encode``), with its output from the same pass when the model shares it
    (:meth:`~invproto.models.base.Model.encode_and_forward`)."""

    def __call__(self, network: nn.Module, x: torch.Tensor, need_output: bool):
        if not need_output:
            return code_tensor(network.encode(x)), None
        codes, output = network.encode_and_forward(x)
        return code_tensor(codes), output


def module_names(network: nn.Module) -> list[str]:
    """Every named submodule, in definition order."""
    return [name for name, _ in network.named_modules() if name]


def unknown_layer(key: str, layer: str, what: str, valid: list[str]) -> ConfigError:
    """The one-line error for a layer name ``valid`` does not hold, listing valid names (shallow ones first)."""
    shown = sorted(valid, key=lambda name: (name.count("."), valid.index(name)))[:SHOWN_NAMES]
    more = f" and {len(valid) - len(shown)} deeper ones" if len(valid) > len(shown) else ""
    return ConfigError(f"{key}.layer '{layer}' is not a layer of {what}; valid layers: "
                       f"{', '.join(shown)}{more}")
