"""Activation normalisation (Glow): a per-channel affine layer initialised from the first batch."""

from __future__ import annotations

import torch
import torch.nn as nn

from invproto.distributed import sum_over_ranks


class ActNorm(nn.Module):
    """Per-channel affine normalisation ``y = (x + loc) * exp(log_scale)``.

    Data-dependent initialisation (Kingma & Dhariwal, 2018): on the first
    forward pass in training mode, ``loc`` and ``log_scale`` are set so that
    the output of that batch has zero mean and unit variance per channel.
    Under torchrun that batch is the global one: every rank contributes its
    part to the sums, so all ranks start from the initialisation a single
    process would compute. Works on ``(N, C)`` and ``(N, C, H, W)`` inputs;
    channel axis 1.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps
        self._known_initialized = False  # host copy of ``initialized`` once True (reading it would wait for the device)

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        """``loc`` = -mean, ``log_scale`` = -log(std + eps) per channel, std with Bessel's correction."""
        per_channel = x.transpose(0, 1).reshape(x.shape[1], -1)
        count = sum_over_ranks(per_channel.new_tensor(per_channel.shape[1]))
        mean = sum_over_ranks(per_channel.sum(dim=1)) / count
        variance = sum_over_ranks(((per_channel - mean[:, None]) ** 2).sum(dim=1)) / (count - 1)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(variance.sqrt() + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._known_initialized:
            if not bool(self.initialized):
                self._initialize(x)
            self._known_initialized = True
        shape = self._shape(x)
        return (x + self.loc.view(shape)) * torch.exp(self.log_scale.view(shape))

    def _load_from_state_dict(self, *args, **kwargs):
        self._known_initialized = False  # the loaded buffer decides again
        super()._load_from_state_dict(*args, **kwargs)

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        """log|det dy/dx| per example, shape ``(N,)``."""
        spatial = x[0, 0].numel()
        return (self.log_scale.sum() * spatial).expand(x.shape[0])
