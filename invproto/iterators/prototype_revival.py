"""Reviving dead prototypes while a prototype flow trains.

A mixture component that explains almost none of its class's codes gets
almost no gradient from the likelihood or the cross-entropy: it stays where it
is, decodes to no recognisable class member, and ``prototype_accuracy``
reports it dead. As k-means implementations re-seed empty clusters (and VQ-VAE
trainers reset unused codes), :class:`PrototypeRevival` counts, over each window
of ``every`` training steps, which component of its own class explains each
training latent best (highest weighted log-density), and at the end of the
window moves every component whose share of its class is below ``min_share``
onto random latents of that class among the last ``pool_size``
(:meth:`~invproto.modules.gaussian_mixture.ClassGaussianMixtures.reseed`).

With several processes the counts are summed over the ranks, rank 0 re-seeds
from its own pool and every rank receives its head. The counts restart after
a resume.
"""

from __future__ import annotations

import torch

from invproto import distributed
from invproto.modules.gaussian_mixture import ClassGaussianMixtures


class PrototypeRevival:
    """Usage counts and a pool of recent training latents of one mixture head; see the module docstring."""

    def __init__(self, head: ClassGaussianMixtures, every: int, min_share: float, pool_size: int, seed: int = 0):
        self.head, self.every, self.min_share, self.pool_size = head, every, min_share, pool_size
        self.generator = torch.Generator().manual_seed(seed)
        self.usage = torch.zeros(head.n_classes, head.protos_per_class)
        self.codes: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    @torch.no_grad()
    def observe(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        """Count which own-class component explains each of the ``(N, D)`` latents; keep them in the pool.

        Nothing to do when revival is off (``every <= 0``)."""
        if self.every <= 0:
            return
        own_class = self.head.weighted_component_log_prob(z)[torch.arange(len(z)), labels]  # (N, K)
        self.usage = self.usage.to(z.device)  # counted where the latents are: no wait for the device
        self.usage.index_put_((labels, own_class.argmax(dim=1)), torch.ones(len(z), device=z.device), accumulate=True)
        self.codes.append(z.detach())
        self.labels.append(labels)
        while sum(len(c) for c in self.codes) - len(self.codes[0]) >= self.pool_size:
            self.codes.pop(0)
            self.labels.pop(0)

    def dead(self, usage: torch.Tensor) -> torch.Tensor:
        """``(C, K)`` counts -> ``(C, K)`` True where a component explains under ``min_share`` of its class."""
        return usage < self.min_share * usage.sum(dim=1, keepdim=True)

    def maybe_revive(self, step: int) -> int:
        """After ``step`` updates, at the end of every window (``step`` a multiple of ``every``): revive and
        restart the counts. Call it before the step's forward pass. Returns how many components moved."""
        if self.every <= 0 or step == 0 or step % self.every:
            return 0
        usage = distributed.sum_over_ranks(self.usage.to(self.head.means.device)).cpu()
        moved = 0
        if distributed.is_main_process():
            moved = self.head.reseed(self.dead(usage).to(self.head.means.device),
                                     torch.cat(self.codes), torch.cat(self.labels), self.generator)
        if distributed.is_distributed():
            state = distributed.broadcast_from_main(
                {k: v.cpu() for k, v in self.head.state_dict().items()} if distributed.is_main_process() else None)
            self.head.load_state_dict(state)
            moved = distributed.broadcast_from_main(moved)
        self.usage.zero_()
        return moved
