"""The invariances of a network's layer: a conditional INN (after "Making Sense of CNNs", Rombach et al. 2020).

Three parts, two of them frozen:

* the **network to interpret**, ``Φ``, cut at a layer (``model_params.network``,
  any source of :mod:`invproto.models.first_stages`: an invproto model, a
  torchvision model, a TorchScript file, any ``nn.Module``, TF-Inception);
  ``Φ(x)`` is its representation of the image ``x``, a vector or a feature map;
* an invproto **autoencoder** (``model_params.autoencoder``) with code
  ``c = E(x)`` (its posterior mean, ``D`` numbers) and decoder ``Dec``;
* the trained part: an **embedder** ``e`` of the representation
  (:func:`~invproto.modules.embedders.build_embedder`: dense for vectors,
  strided convolutions for maps) and a **conditional flow**
  ``z = t(c | e(Φ(x)))`` (:class:`~invproto.modules.conditional_flow.ConditionalVectorFlow`),
  trained so that ``z ~ N(0, I)`` (the IIN loss).

What the flow learns is the part of ``c`` that ``Φ(x)`` does not determine.
So for ``v ~ N(0, I)``, ``Dec(t⁻¹(v | e(Φ(x))))`` are images that the network
(ideally) cannot tell apart from ``x`` at that layer: what varies across them
is what the layer is invariant to (:meth:`ConditionalIIN.sample`). Both frozen
parts' weights are in this model's state dict, so a checkpoint is
self-contained; :meth:`ConditionalIIN.describe` leaves their checkpoint paths out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from invproto.config.run import abort_cleanly
from invproto.errors import ConfigError
from invproto.models.base import Model
from invproto.models.first_stages import FirstStage, FirstStageParams, describe_first_stage, load_first_stage
from invproto.modules.conditional_flow import ConditionalFlowParams, ConditionalVectorFlow
from invproto.modules.embedders import EmbedderParams, build_embedder
from invproto.modules.flow import FlowShape


class ConditionalIIN(Model):
    """Frozen network ``Φ`` and autoencoder ``(E, Dec)``; trained embedder ``e`` and flow ``t(c | e(Φ(x)))``."""

    @dataclass
    class Params(FlowShape):  # n_flow blocks of ActNorm -> conditional double coupling -> permutation
        network: FirstStageParams = field(default_factory=FirstStageParams)  # the network to interpret, read at
        #   its `layer` (any source of invproto.models.first_stages)
        autoencoder: FirstStageParams = field(default_factory=FirstStageParams)  # a trained invproto autoencoder:
        #   {model, model_params, checkpoint}
        embedder: EmbedderParams = field(default_factory=EmbedderParams)  # how Φ(x) becomes the flow's condition

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        self.network: FirstStage = load_first_stage(p.network, "model_params.network")
        self.autoencoder: FirstStage = load_first_stage(p.autoencoder, "model_params.autoencoder")
        if not self.autoencoder.can_decode:
            with abort_cleanly():
                raise ConfigError(f"model_params.autoencoder.model {p.autoencoder.get('model')} cannot decode; "
                                  "give a trained invproto autoencoder (invproto.models.autoencoder.Autoencoder)")
        self.code_dim = int(torch.Size(self.autoencoder.representation_shape).numel())
        embedder_params = EmbedderParams(**p.embedder)
        self.embedder = build_embedder(tuple(self.network.representation_shape), embedder_params)
        self.flow = ConditionalVectorFlow(ConditionalFlowParams(
            in_dim=self.code_dim, condition_dim=embedder_params.embedding_dim, n_flow=p.n_flow,
            hidden_depth=p.hidden_depth, hidden_dim=p.hidden_dim, seed=p.seed))

    def describe(self) -> dict:
        """As :meth:`Model.describe`, with both frozen parts described without their checkpoint paths."""
        description = copy.deepcopy(super().describe())
        for part in ("network", "autoencoder"):
            description["model_params"][part] = describe_first_stage(description["model_params"][part])
        return description

    def train(self, mode: bool = True) -> "ConditionalIIN":
        """Only the embedder and the flow ever train; the network and the autoencoder stay in eval mode."""
        super().train(mode)
        self.network.eval()
        self.autoencoder.eval()
        return self

    def trainable_parameters(self):
        """The embedder's and the flow's parameters."""
        yield from self.embedder.parameters()
        yield from self.flow.parameters()

    @torch.no_grad()
    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``Φ(x)``, ``(N, *network.representation_shape)``."""
        return self.network.encode(images)

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, D)`` autoencoder codes (posterior means)."""
        return self.autoencoder.encode(images).flatten(1)

    def condition(self, representation: torch.Tensor) -> torch.Tensor:
        """``Φ(x)`` -> ``(N, E)`` embedding the flow is conditioned on."""
        return self.embedder(representation)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, S, S)`` images -> ``(z (N, D), log|det dz/dc| (N,))`` given their own representation."""
        return self.flow(self.codes(images), self.condition(self.representation(images)))

    def decode(self, z: torch.Tensor, representation: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` flow codes under ``(N, ...)`` representations -> ``(N, C, S, S)`` images in [-1, 1]."""
        return self.autoencoder.decode(self.flow.inverse(z, self.condition(representation)))

    def sample(self, representation: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Images sharing a representation: ``(N, ...)`` ``Φ(x)`` and ``(N, D)`` N(0, I) draws -> ``(N, C, S, S)``."""
        return self.decode(noise, representation)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images through the flow and back, ``Dec(t⁻¹(t(E(x) | Φ(x)) | Φ(x)))``: ``Dec(E(x))``."""
        representation = self.representation(images)
        z, _ = self.flow(self.codes(images), self.condition(representation))
        return self.decode(z, representation)
