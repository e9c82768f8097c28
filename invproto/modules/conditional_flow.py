"""A conditional invertible flow on vectors, after the cINN of "Making Sense of CNNs" (CompVis/invariances).

``z = t(x | c)``: ``n_flow`` blocks, each::

    ActNorm  ->  conditional double affine coupling  ->  fixed random permutation

on ``(N, D)`` vectors ``x`` (an autoencoder's code), given an ``(N, E)``
condition ``c`` (an embedded representation, :mod:`invproto.modules.embedders`).
Each coupling keeps one half ``a`` of the vector and transforms the other,
``b' = b * exp(s) + t`` with ``s = tanh(mlp_s(cat(a, c)))`` and ``t =
mlp_t(cat(a, c))``: the condition steers every scale and shift but never
enters the Jacobian, so ``log|det dz/dx| = sum(s)`` per coupling plus
ActNorm's term, exactly as for the unconditional flow. For a fixed ``c`` the
map ``x -> z`` is a bijection; :meth:`ConditionalVectorFlow.inverse` is its
exact inverse under the same ``c``.

The layers are those of :mod:`invproto.modules.flow` (``mlp`` with the
reference's depth convention, zero-initialised last layers so each coupling
starts as the identity, ActNorm, seeded permutations), built with
``condition_dim = E``. The reference's optional invertible leaky ReLU and
per-block conditioning layers are left out ("none" in its configs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invproto.errors import DataError
from invproto.modules.flow import FlowBlock, InvertibleSequence


@dataclass
class ConditionalFlowParams:
    """Shape of a :class:`ConditionalVectorFlow`."""

    in_dim: int = 64  # D, size of the vectors the flow maps (an autoencoder's code)
    condition_dim: int = 64  # E, size of the embedded condition every coupling sees
    n_flow: int = 12  # blocks of ActNorm -> conditional double coupling -> permutation
    hidden_depth: int = 2  # Linear(h, h) layers of each scale / shift MLP, as in FlowParams
    hidden_dim: int = 512  # width of those hidden layers
    seed: int = 0  # seed of the fixed permutations (block i uses seed + i)


class ConditionalFlowBlock(FlowBlock):
    """ActNorm -> conditional double affine coupling -> permutation.

    ``forward(x (N, D), condition (N, E))`` -> ``(y (N, D), log|det dy/dx| (N,))``;
    ``inverse(y, condition)`` undoes it. Both couplings' scale and shift MLPs
    take ``cat(kept half, condition)``: ``Linear(D/2 + E, h)``, ``hidden_depth``
    x ``Linear(h, h)``, ``Linear(h, D/2)``.
    """

    def __init__(self, dim: int, condition_dim: int, hidden_dim: int, hidden_depth: int, seed: int):
        super().__init__(dim, hidden_dim, hidden_depth, seed, condition_dim=condition_dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x, condition)

    def inverse(self, y: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return super().inverse(y, condition)


class ConditionalVectorFlow(InvertibleSequence):
    """``n_flow`` :class:`ConditionalFlowBlock` s; block ``i`` permutes with seed ``seed + i``.

    ``forward(x (N, D), condition (N, E))`` -> ``(z (N, D), log|det dz/dx| (N,))``
    (nats, the condition held fixed); ``inverse(z, condition)`` is its exact
    inverse. A condition or vector of the wrong shape raises a one-line
    :class:`~invproto.errors.DataError`.
    """

    def __init__(self, params: ConditionalFlowParams):
        super().__init__([ConditionalFlowBlock(params.in_dim, params.condition_dim, params.hidden_dim,
                                               params.hidden_depth, params.seed + i)
                          for i in range(params.n_flow)])
        self.params = params

    def _check(self, x: torch.Tensor, condition: torch.Tensor) -> None:
        """``x`` must be ``(N, D)`` and ``condition`` ``(N, E)``, with the same ``N``."""
        d, e = self.params.in_dim, self.params.condition_dim
        if x.dim() != 2 or x.shape[1] != d or condition.shape != (x.shape[0], e):
            raise DataError(f"the conditional flow maps (N, {d}) vectors under (N, {e}) conditions, got "
                            f"{tuple(x.shape)} and {tuple(condition.shape)}; set in_dim to the code size "
                            f"and condition_dim to the embedder's embedding_dim")

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x, condition)
        return super().forward(x, condition)

    def inverse(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        self._check(z, condition)
        return super().inverse(z, condition)
