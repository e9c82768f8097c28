"""Invertible interpretation networks: a flow on the codes of a frozen first stage.

:class:`IIN` maps an image to its first-stage code ``c`` (a classifier's
64-d code, or an autoencoder posterior's mean) and that code through a
:class:`~invproto.modules.flow.VectorFlow` to ``z`` with ``z ~ N(0, I)`` as the
training target. :class:`FactorIIN` (dIIN) splits ``z`` into semantic
factors, the last one being the residual.

The first stage is configured in ``model_params.first_stage`` and loaded,
frozen (``requires_grad_(False)``, always in eval mode), at construction
(:mod:`invproto.models.first_stages`: an invproto model and checkpoint as
below, or a torchvision model, a TorchScript file, any ``nn.Module``, the
TF-Inception network, read at a named ``layer``; the code is that
representation, flattened)::

    first_stage:
      model: invproto.models.classifier.Classifier   # its import path
      model_params: {in_channels: 3, in_size: 32}    # its Params, as it was trained
      checkpoint: logs/<run>/train/checkpoints/model-<step>.ckpt

Its weights are also part of this model's state dict, so an IIN checkpoint
is self-contained; :meth:`IIN.describe` therefore leaves the first stage's
checkpoint *path* out (a moved first-stage file does not invalidate it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from invproto.config.run import abort_cleanly
from invproto.errors import ConfigError
from invproto.models.base import Model
from invproto.models.first_stages import FirstStageParams, describe_first_stage, first_stage_codes, load_first_stage
from invproto.modules.flow import FlowParams, FlowShape, VectorFlow

__all__ = ["IIN", "FactorIIN", "FirstStageParams", "first_stage_codes", "load_first_stage"]


class IIN(Model):
    """Frozen first stage -> :class:`VectorFlow` on its codes."""

    @dataclass
    class Params(FlowShape):
        first_stage: FirstStageParams = field(default_factory=FirstStageParams)

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        self.first_stage = load_first_stage(p.first_stage)
        self.code_dim = self.first_stage.representation_dim
        self.flow = VectorFlow(FlowParams(in_dim=self.code_dim, n_flow=p.n_flow, hidden_depth=p.hidden_depth,
                                          hidden_dim=p.hidden_dim, seed=p.seed))

    def describe(self) -> dict:
        """As :meth:`Model.describe`, with the first stage described without its checkpoint path (its weights are
        saved here) and without fields left at their defaults."""
        description = copy.deepcopy(super().describe())
        description["model_params"]["first_stage"] = describe_first_stage(description["model_params"]["first_stage"])
        return description

    def train(self, mode: bool = True) -> "IIN":
        """Only the flow ever trains; the first stage stays in eval mode."""
        super().train(mode)
        self.first_stage.eval()
        return self

    @property
    def can_decode(self) -> bool:
        return self.first_stage.can_decode

    @torch.no_grad()
    def codes(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, D)`` first-stage codes, flattened (no gradient).

        Without a ``generator``: the code (an autoencoder posterior's mean); with one: an autoencoder
        posterior's sample drawn from it (:meth:`~invproto.models.first_stages.FirstStage.sample_code`, what
        the IIN reference trains on), any other first stage's code as without.
        """
        if generator is None:
            return first_stage_codes(self.first_stage, images)
        return self.first_stage.sample_code(images, generator).flatten(1)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, S, S)`` images -> ``(z (N, D), log|det dz/dc| (N,))`` of their :meth:`codes`."""
        return self.flow(self.codes(images, generator))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` flow outputs -> ``(N, C, S, S)`` images through the inverse flow and the first stage's decoder."""
        return self.first_stage.decode(self.flow.inverse(z))


class FactorIIN(IIN):
    """dIIN: an :class:`IIN` whose output is split into factors, the last one the residual.

    The sizes are ``factor_config`` when given (they must add up to the code
    size), else ``torch.chunk``-like: ``n_factors`` parts of ``ceil(D / n)``,
    the last one smaller (64 -> 22/22/20).
    """

    @dataclass
    class Params(IIN.Params):
        n_factors: int = 3  # named factors + 1 residual; ignored when factor_config is set
        factor_config: Optional[Any] = None  # explicit factor sizes, the last = residual (e.g. [22, 11, 31]), or a
        #   run directory whose recorded factor_dim_<k> they are (invproto.config.chaining resolves it)

    def __init__(self, config):
        super().__init__(config)
        self.factor_sizes = self._factor_sizes()

    def _factor_sizes(self) -> list[int]:
        p, dim = self.params, self.code_dim
        if p.factor_config is not None:
            sizes = list(p.factor_config) if isinstance(p.factor_config, (list, tuple)) else None
            if sizes is None or not all(isinstance(n, int) for n in sizes) or sum(sizes) != dim or min(sizes) < 1:
                with abort_cleanly():
                    raise ConfigError(f"model_params.factor_config {p.factor_config!r} must be positive sizes "
                                      f"adding up to the code size {dim} (a run directory is read by the edflow "
                                      f"command: invproto.config.chaining)")
            return sizes
        chunk = -(-dim // p.n_factors)
        sizes = [min(chunk, dim - start) for start in range(0, dim, chunk)]
        return sizes

    @property
    def n_factors(self) -> int:
        return len(self.factor_sizes)

    def factor_mask(self, factor: torch.Tensor) -> torch.Tensor:
        """``(N,)`` factor indices -> float ``(N, D)`` mask, 1 on the dimensions of each example's factor."""
        owner = torch.repeat_interleave(torch.arange(self.n_factors, device=factor.device),
                                        torch.tensor(self.factor_sizes, device=factor.device))
        return (owner[None, :] == factor[:, None]).float()

    def swap_factor(self, z_target: torch.Tensor, z_source: torch.Tensor, factor: int) -> torch.Tensor:
        """``z_target`` with factor ``factor`` taken from ``z_source`` (both ``(N, D)``)."""
        mask = self.factor_mask(torch.full((z_target.shape[0],), factor, device=z_target.device))
        return z_target * (1 - mask) + z_source * mask

    def swap_grid(self, images_target: torch.Tensor, images_source: torch.Tensor, factor: int) -> torch.Tensor:
        """Decoded factor swaps: ``(n, C, S, S)`` targets and sources -> ``(n * n, C, S, S)``.

        Image ``i * n + j`` is target ``i`` with factor ``factor`` of source ``j``.
        Needs a first stage that can decode.
        """
        z_target, _ = self(images_target)
        z_source, _ = self(images_source)
        n = z_target.shape[0]
        swapped = self.swap_factor(z_target.repeat_interleave(n, dim=0), z_source.repeat(n, 1), factor)
        return self.decode(swapped)
