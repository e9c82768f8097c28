"""An invertible flow on vectors, after IIN's ``VectorTransformer``.

``n_flow`` blocks, each::

    ActNorm  ->  DoubleAffineCoupling  ->  fixed random permutation

* :class:`InvertibleActNorm` -- per-dimension ``y = (x + loc) * exp(log_scale)``
  with data-dependent initialisation (the shared :class:`ActNorm`) plus its inverse.
* :class:`AffineCoupling` -- one half of the vector, ``b``, is transformed
  conditioned on the other, ``a``: ``b' = b * exp(s(a)) + t(a)`` with
  ``s = tanh(mlp_s(a))`` (bounded log-scale) and ``t = mlp_t(a)``;
  ``log|det| = sum(s)``. :class:`DoubleAffineCoupling` applies two of them
  with the roles of the halves exchanged, so every dimension is transformed.
  Each MLP counts its depth as the reference's ``BasicFullyConnectedNet``
  does: ``Linear(in, h)``, ``hidden_depth`` x ``Linear(h, h)``,
  ``Linear(h, out)``, LeakyReLU(0.2) between -- ``hidden_depth + 1`` hidden
  layers, so the reference's ``hidden_depth: 2`` has three.
* :class:`Permutation` -- a fixed permutation drawn from ``seed`` and stored
  as a buffer (it is saved with the checkpoint).

Conditioning: a coupling built with ``condition_dim = E > 0`` also feeds an
``(N, E)`` condition to its MLPs, ``s = tanh(mlp_s(cat(a, c)))``, ``t =
mlp_t(cat(a, c))``; :class:`InvertibleSequence` and :class:`FlowBlock` pass
such a condition on to their steps (``forward(x, *condition)``), so the
conditional flow (:mod:`invproto.modules.conditional_flow`) is built from
these same layers. Without a condition nothing changes.

Initialisation choice: the last linear layer of every scale and shift MLP
is zero, so each coupling starts as the identity (``s = t = 0``) and the
untrained flow is ActNorm and permutations only -- training starts from a
well-conditioned, exactly volume-tracked map (the reference drew these
layers at random).

All maps take ``(N, D)`` and return ``(N, D)``; log-determinants are per
example, ``(N,)``, in nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from invproto.modules.actnorm import ActNorm


@dataclass
class FlowShape:
    """How a model configures its vector flow (``model_params``); the vector size comes from its first stage."""

    n_flow: int = 12  # flow blocks (ActNorm -> double affine coupling -> permutation)
    hidden_depth: int = 2  # coupling MLPs: Linear(in, h), hidden_depth x Linear(h, h), Linear(h, out)
    hidden_dim: int = 512  # width of the coupling MLPs
    seed: int = 0  # seed of the flow's fixed permutations


@dataclass
class FlowParams:
    """Shape of a :class:`VectorFlow`."""

    in_dim: int = 64  # D, size of the vectors (the first stage's code)
    n_flow: int = 12  # blocks of ActNorm -> double coupling -> permutation
    hidden_depth: int = 2  # Linear(h, h) layers of each scale / shift MLP, between Linear(in, h) and Linear(h, out)
    hidden_dim: int = 512  # width of those hidden layers
    seed: int = 0  # seed of the fixed permutations


def mlp(in_dim: int, out_dim: int, hidden_dim: int, hidden_depth: int) -> nn.Sequential:
    """``(N, in_dim) -> (N, out_dim)``: ``Linear(in, h)``, ``hidden_depth`` x ``Linear(h, h)``, ``Linear(h, out)``.

    LeakyReLU(0.2) follows every layer but the last, which starts at zero.
    """
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.LeakyReLU(0.2)]
    for _ in range(hidden_depth):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2)]
    last = nn.Linear(hidden_dim, out_dim)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class InvertibleActNorm(ActNorm):
    """:class:`ActNorm` on ``(N, D)`` vectors with its inverse."""

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class AffineCoupling(nn.Module):
    """Transforms one half of ``(N, D)`` given the other half (and an optional ``(N, E)`` condition).

    The halves are ``x[:, :D//2]`` and ``x[:, D//2:]``; ``condition_on_first``
    says which one is kept (and conditions the other). With ``condition_dim
    = E > 0``, ``forward`` and ``inverse`` take the condition as a second
    argument and the scale and shift MLPs see ``cat(kept half, condition)``.
    """

    def __init__(self, dim: int, hidden_dim: int, hidden_depth: int, condition_on_first: bool,
                 condition_dim: int = 0):
        super().__init__()
        self.split = dim // 2
        self.condition_on_first = condition_on_first
        n_kept = self.split if condition_on_first else dim - self.split
        n_change = dim - n_kept
        self.scale = mlp(n_kept + condition_dim, n_change, hidden_dim, hidden_depth)
        self.shift = mlp(n_kept + condition_dim, n_change, hidden_dim, hidden_depth)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(kept, change)`` parts of ``x``."""
        first, second = x[:, :self.split], x[:, self.split:]
        return (first, second) if self.condition_on_first else (second, first)

    def _join(self, kept: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.cat((kept, change) if self.condition_on_first else (change, kept), dim=1)

    def _log_scale_and_shift(self, kept: torch.Tensor, condition: tuple[torch.Tensor, ...]
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``s = tanh(mlp_s(h))``, ``t = mlp_t(h)`` for ``h = cat(kept, *condition)``: each ``(N, n_change)``."""
        inputs = torch.cat((kept, *condition), dim=1) if condition else kept
        return torch.tanh(self.scale(inputs)), self.shift(inputs)

    def forward(self, x: torch.Tensor, *condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, change = self._halves(x)
        log_scale, shift = self._log_scale_and_shift(kept, condition)
        return self._join(kept, change * torch.exp(log_scale) + shift), log_scale.sum(dim=1)

    def inverse(self, y: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        kept, changed = self._halves(y)
        log_scale, shift = self._log_scale_and_shift(kept, condition)
        return self._join(kept, (changed - shift) * torch.exp(-log_scale))


class InvertibleSequence(nn.Module):
    """Steps applied in order; each maps ``x -> (y, log_det (N,))`` and has an ``inverse``.

    The log-determinants of the steps add up; the inverse runs the steps
    backwards. A ``condition`` (tensors after ``x``, none for an unconditional
    flow) is passed unchanged to every step, forwards and backwards.
    """

    def __init__(self, steps: list[nn.Module]):
        super().__init__()
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor, *condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_det = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, step_log_det = step(x, *condition)
            log_det = log_det + step_log_det
        return x, log_det

    def inverse(self, y: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        for step in reversed(self.steps):
            y = step.inverse(y, *condition)
        return y


class DoubleAffineCoupling(InvertibleSequence):
    """Two :class:`AffineCoupling` layers: the second half given the first, then the first given the second.

    With ``condition_dim = E > 0`` both couplings also see the ``(N, E)`` condition.
    """

    def __init__(self, dim: int, hidden_dim: int, hidden_depth: int, condition_dim: int = 0):
        super().__init__([AffineCoupling(dim, hidden_dim, hidden_depth, condition_on_first=first,
                                         condition_dim=condition_dim)
                          for first in (True, False)])


class Permutation(nn.Module):
    """A fixed random permutation of the ``D`` dimensions (volume preserving)."""

    def __init__(self, dim: int, seed: int):
        super().__init__()
        order = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.order]

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y[:, self.inverse_order]


class FlowBlock(nn.Module):
    """ActNorm -> double affine coupling -> permutation; a condition (``condition_dim > 0``) goes to the coupling."""

    def __init__(self, dim: int, hidden_dim: int, hidden_depth: int, seed: int, condition_dim: int = 0):
        super().__init__()
        self.norm = InvertibleActNorm(dim)
        self.coupling = DoubleAffineCoupling(dim, hidden_dim, hidden_depth, condition_dim)
        self.permutation = Permutation(dim, seed)

    def forward(self, x: torch.Tensor, *condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.norm(x)
        coupled, coupling_log_det = self.coupling(normed, *condition)
        return self.permutation(coupled), self.norm.log_det(x) + coupling_log_det

    def inverse(self, y: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        return self.norm.inverse(self.coupling.inverse(self.permutation.inverse(y), *condition))


class VectorFlow(InvertibleSequence):
    """``n_flow`` :class:`FlowBlock` s on ``(N, in_dim)`` vectors; block ``i`` permutes with seed ``seed + i``.

    ``forward``: ``(N, D)`` -> ``(z (N, D), log|det dz/dx| (N,))``; ``inverse`` is its exact inverse.
    """

    def __init__(self, params: FlowParams):
        super().__init__([FlowBlock(params.in_dim, params.hidden_dim, params.hidden_depth, params.seed + i)
                          for i in range(params.n_flow)])
        self.params = params
