"""A multiscale invertible flow on pixels (Glow / RealNVP style), trained from scratch.

Pipeline of :class:`ImagePrototypeFlow <invproto.models.protoflow_image.ImagePrototypeFlow>`::

    image x in [-1, 1]  --Dequantization-->  v in [-0.5, 0.5)  --MultiscaleFlow-->  (z, factored-out parts)

* :class:`Dequantization` -- the datasets deliver 8-bit images as
  ``x = u8 / 127.5 - 1``. With ``s = (x + 1) * 127.5`` (the pixel value,
  0..255) it adds ``U(0, 1)`` noise in training mode (one quantisation bin;
  at eval the fixed mid-bin offset 1/2, so evaluation is deterministic) and
  scales to ``v = (s + noise) / 256 - 0.5``. Its log-Jacobian
  ``log|det dv/ds| = -D log 256`` (``D = C*H*W``) is part of the model's
  ``log_det``, so densities are on the standard 8-bit scale ``[0, 256)^D`` and
  ``-log2 p / D`` is the bits/dim the literature reports (MNIST flows: about
  1.0-1.3). Images must reach the model *without* the datasets' own
  dequantization (``dataset_params.dequantization: off``, the default).
* :class:`MultiscaleFlow` -- ``n_levels`` levels, each: squeeze (2x2 pixels
  to channels, ``pixel_unshuffle``), ``steps_per_level`` :class:`FlowStep` s,
  then, except on the last level, factor-out: the second half of the
  channels leaves the flow. The final level's output, flattened, is the
  latent ``z``; the factored-out parts are scored under ``N(0, I)`` by the
  caller. Sizes must be divisible by ``2**n_levels``: 28 px MNIST takes
  ``n_levels = 2`` (28 -> 14 -> 7; no padding, so every dimension is a
  pixel), 32 px images up to 5.
* :class:`FlowStep` -- :class:`ActNormStep` (the shared data-dependent
  :class:`~invproto.modules.actnorm.ActNorm`), :class:`InvertibleConv1x1`
  (LU-parameterised), :class:`AffineCoupling2d` (soft-clamped
  log-scale, zero-initialised output so every coupling starts as the identity).

Every step maps ``x -> (y, log|det dy/dx| (N,))`` in nats and has an exact
``inverse``; the steps of a level are an
:class:`~invproto.modules.flow.InvertibleSequence`.

Own code rather than a flow library: ``normflows``' ``MultiscaleFlow`` gives
every level its own (class-conditional) base distribution and runs its
layers in the sampling direction, while a prototype flow needs the class
mixtures on the final latent only and ``N(0, I)`` for the rest; ``zuko``
works on vectors. The layers here are short and tested against autograd
Jacobians (``tests/test_image_flow.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from invproto.errors import ConfigError
from invproto.modules.actnorm import ActNorm
from invproto.modules.flow import InvertibleSequence
from invproto.modules.gaussian_mixture import LOG_TWO_PI

BINS = 256  # 8-bit pixels: the density is on [0, 256)^D
SCALE_CLAMP = 3.0  # bound of a coupling's log-scale: each coupling scales by exp(-3)..exp(3) at most


@dataclass
class ImageFlowParams:
    """Shape of a :class:`MultiscaleFlow` on ``(N, in_channels, in_size, in_size)`` images."""

    in_channels: int = 1  # image channels C
    in_size: int = 28  # image height = width S; divisible by 2**n_levels
    n_levels: int = 2  # squeeze levels; all but the last factor out half their channels
    steps_per_level: int = 4  # ActNorm -> 1x1 conv -> affine coupling steps per level
    hidden_channels: int = 64  # width of the coupling networks
    seed: int = 0  # seed of the 1x1 convolutions' initial rotations (and of the prototype means)


class Dequantization(nn.Module):
    """8-bit images in [-1, 1] -> ``v`` in [-0.5, 0.5) and back (see the module docstring).

    ``forward``: ``(N, C, H, W)`` -> ``(v (N, C, H, W), log|det dv/ds| (N,))`` with
    ``s`` the pixel value on [0, 256): ``-C*H*W * log 256`` per image.
    Uniform noise of one bin in training mode, the mid-bin offset at eval.
    """

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = (images + 1) * 127.5
        offset = torch.rand_like(pixels) if self.training else torch.full_like(pixels, 0.5)
        v = (pixels + offset) / BINS - 0.5
        log_det = images.new_full((images.shape[0],), -images[0].numel() * math.log(BINS))
        return v, log_det

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        """``v`` -> images in [-1, 1], bin centres to their pixel value (inverts the eval map), clamped."""
        pixels = (v + 0.5) * BINS - 0.5
        return (pixels / 127.5 - 1).clamp(-1, 1)


class ActNormStep(ActNorm):
    """:class:`ActNorm` on ``(N, C, H, W)`` as a flow step: ``x -> (y, log_det)``, with its inverse."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x), self.log_det(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale).view(1, -1, 1, 1) - self.loc.view(1, -1, 1, 1)


class InvertibleConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution ``y = W x`` at every pixel, ``W = P L (U + diag(sign * exp(log_s)))``.

    ``P`` (a permutation) and ``sign`` are fixed, ``L`` is unit lower
    triangular, ``U`` strictly upper triangular; so ``log|det W| = sum(log_s)``
    and the step's ``log_det`` is ``H * W * sum(log_s)``. ``W`` starts as a
    random rotation drawn from ``seed``.
    """

    def __init__(self, channels: int, seed: int):
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels,
                                               generator=torch.Generator().manual_seed(seed)))[0]
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = upper.diagonal()
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign", diagonal.sign())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), diagonal=-1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, diagonal=1))
        self.log_s = nn.Parameter(diagonal.abs().log())

    def weight(self) -> torch.Tensor:
        """The ``(C, C)`` matrix ``W``."""
        eye = torch.eye(len(self.log_s), device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_s.exp())
        return self.permutation @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.conv2d(x, self.weight()[:, :, None, None])
        return y, (self.log_s.sum() * x[0, 0].numel()).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


class AffineCoupling2d(nn.Module):
    """The channels ``[C//2:]`` are transformed conditioned on ``[:C//2]`` (which stay unchanged).

    ``b' = b * exp(s) + t`` with ``(s_raw, t) = net(a)`` and the soft clamp
    ``s = SCALE_CLAMP * tanh(s_raw / SCALE_CLAMP)`` (a log-scale bounded to
    ``(-SCALE_CLAMP, SCALE_CLAMP)``, the identity near 0); ``log|det| = sum(s)`` per image.
    ``net``: 3x3 conv -> ActNorm -> ReLU -> 1x1 conv -> ActNorm -> ReLU -> 3x3 conv,
    the last one zero-initialised (``s = t = 0``: the identity).
    """

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.split = channels // 2
        n_change = channels - self.split
        last = nn.Conv2d(hidden_channels, 2 * n_change, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(self.split, hidden_channels, 3, padding=1), ActNorm(hidden_channels), nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 1), ActNorm(hidden_channels), nn.ReLU(),
            last)

    def _scale_shift(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log-scale s, shift t)`` of the changed channels."""
        raw_scale, shift = self.net(condition).chunk(2, dim=1)
        return SCALE_CLAMP * torch.tanh(raw_scale / SCALE_CLAMP), shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        condition, change = x[:, :self.split], x[:, self.split:]
        log_scale, shift = self._scale_shift(condition)
        changed = change * log_scale.exp() + shift
        return torch.cat([condition, changed], dim=1), log_scale.flatten(1).sum(dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        condition, changed = y[:, :self.split], y[:, self.split:]
        log_scale, shift = self._scale_shift(condition)
        return torch.cat([condition, (changed - shift) * torch.exp(-log_scale)], dim=1)


class FlowStep(InvertibleSequence):
    """One Glow step on ``(N, C, H, W)``: ActNorm -> invertible 1x1 conv -> affine coupling."""

    def __init__(self, channels: int, hidden_channels: int, seed: int):
        super().__init__([ActNormStep(channels), InvertibleConv1x1(channels, seed),
                          AffineCoupling2d(channels, hidden_channels)])


class MultiscaleFlow(nn.Module):
    """Squeeze -> steps -> factor-out, ``n_levels`` times (see the module docstring).

    ``forward``: ``(N, C, S, S)`` -> ``(z (N, D), factored, log|det| (N,))``: the
    final level's output flattened, the list of factored-out parts (level ``l``
    gives ``(N, C_l // 2, S / 2**(l+1), S / 2**(l+1))`` with ``C_l`` its
    channels), and the log-determinant of ``x -> (z, factored)``. ``D`` plus
    the factored sizes is ``C*S*S``. ``inverse(z, factored)`` is its exact
    inverse; without ``factored`` the parts are set to 0, their mean under ``N(0, I)``.
    """

    def __init__(self, params: ImageFlowParams):
        super().__init__()
        if params.n_levels < 1 or params.in_size % 2 ** params.n_levels:
            raise ConfigError(f"model_params.in_size {params.in_size} is not divisible by "
                             f"2**n_levels = {2 ** params.n_levels}; use n_levels >= 1 with "
                             f"in_size / 2**n_levels a whole number (28 px: n_levels <= 2)")
        self.params = params
        self.levels = nn.ModuleList()
        self.factored_shapes: list[tuple[int, int, int]] = []
        channels, size = params.in_channels, params.in_size
        for level in range(params.n_levels):
            channels, size = channels * 4, size // 2
            self.levels.append(InvertibleSequence([
                FlowStep(channels, params.hidden_channels, seed=params.seed + level * params.steps_per_level + step)
                for step in range(params.steps_per_level)]))
            if level < params.n_levels - 1:
                self.factored_shapes.append((channels // 2, size, size))
                channels -= channels // 2
        self.latent_shape = (channels, size, size)

    @property
    def latent_dim(self) -> int:
        """``D``, the size of the final latent ``z``."""
        return math.prod(self.latent_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        log_det = x.new_zeros(x.shape[0])
        factored = []
        for level, steps in enumerate(self.levels):
            x, level_log_det = steps(F.pixel_unshuffle(x, 2))
            log_det = log_det + level_log_det
            if level < len(self.factored_shapes):
                keep = x.shape[1] - self.factored_shapes[level][0]
                x, out = x[:, :keep], x[:, keep:]
                factored.append(out)
        return x.flatten(1), factored, log_det

    def inverse(self, z: torch.Tensor, factored: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = z.view(len(z), *self.latent_shape)
        for level in reversed(range(len(self.levels))):
            if level < len(self.factored_shapes):
                out = (factored[level] if factored is not None
                       else x.new_zeros(len(x), *self.factored_shapes[level]))
                x = torch.cat([x, out], dim=1)
            x = F.pixel_shuffle(self.levels[level].inverse(x), 2)
        return x


def standard_normal_log_prob(parts: list[torch.Tensor]) -> torch.Tensor:
    """``sum log N(parts; 0, I)`` per example, ``(N,)`` nats, over a list of ``(N, ...)`` tensors (0 for none)."""
    return sum(-0.5 * (part.square().flatten(1).sum(dim=1) + part[0].numel() * LOG_TWO_PI) for part in parts)
