"""Negative log-likelihoods of invertible interpretation networks, in nats.

For a flow ``z = T(c)`` with per-example ``log|det dT/dc|``:

* :class:`IINLoss` -- ``c`` under ``z ~ N(0, I)``:
  ``nll(c) = ½‖z‖² − log|det| + (D/2)·log(2π)``.
  The training loss is the reference's ``mean(½‖z‖²) − mean(log|det|)``
  (the constant has no gradient); the reported ``nats_per_dim`` and
  ``bits_per_dim`` include it.
* :class:`FactorLoss` (dIIN) -- pairs ``(c1, c2)`` sharing factor ``f``:
  ``z1 ~ N(0, I)``; ``z2``'s factor ``f`` is ``ρ``-correlated with ``z1``'s,
  ``½‖z2_f − ρ z1_f‖² / (1 − ρ²)``; its other factors ``½‖z2_k‖²``; minus both
  log-dets. As in the reference the conditional Gaussian's normaliser
  ``(|f|/2)·log(1 − ρ²)`` is dropped, so ``nats_per_dim`` of the pair is an
  energy per dimension (``2·D`` dimensions), not an exact likelihood.
"""

from __future__ import annotations

import math

import torch

from invproto.errors import ConfigError

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def per_dim_scalars(loss: torch.Tensor, dims: int) -> dict[str, torch.Tensor]:
    """``nats_per_dim`` / ``bits_per_dim`` (0-d tensors) of a mean loss over ``dims`` dimensions per example
    (constant added)."""
    nats = loss / dims + HALF_LOG_TWO_PI
    return {"nats_per_dim": nats, "bits_per_dim": nats / math.log(2)}


class IINLoss:
    """``mean(½‖z‖²) − mean(log|det|)`` of ``(N, D)`` outputs and ``(N,)`` log-dets."""

    @staticmethod
    def per_example(z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        """``(N,)`` energies ``½‖z‖² − log|det|`` in nats (without the constant)."""
        return 0.5 * z.pow(2).sum(dim=1) - log_det

    def __call__(self, z: torch.Tensor, log_det: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.per_example(z, log_det).mean()
        return loss, {"nll": loss.detach(), **per_dim_scalars(loss.detach(), z.shape[1])}


class FactorLoss:
    """dIIN pair loss; see the module docstring. ``rho`` in (0, 1): correlation of the shared factor."""

    def __init__(self, rho: float = 0.975):
        if not 0 < rho < 1:
            raise ConfigError(f"loss.params.rho must lie in (0, 1), got {rho}")
        self.rho = rho

    def per_example(self, z1: torch.Tensor, z2: torch.Tensor, log_det1: torch.Tensor, log_det2: torch.Tensor,
                    shared: torch.Tensor) -> torch.Tensor:
        """``(N,)`` pair energies in nats; ``shared`` is the float ``(N, D)`` mask of the shared factor."""
        independent = 0.5 * (z2.pow(2) * (1 - shared)).sum(dim=1)
        correlated = 0.5 * ((z2 - self.rho * z1).pow(2) * shared).sum(dim=1) / (1 - self.rho ** 2)
        return IINLoss.per_example(z1, log_det1) + independent + correlated - log_det2

    def __call__(self, z1: torch.Tensor, z2: torch.Tensor, log_det1: torch.Tensor, log_det2: torch.Tensor,
                 shared: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.per_example(z1, z2, log_det1, log_det2, shared).mean()
        return loss, {"nll": loss.detach(), **per_dim_scalars(loss.detach(), 2 * z1.shape[1])}
