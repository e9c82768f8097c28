"""The diagonal Gaussian posterior of a variational autoencoder."""

from __future__ import annotations

import torch

LOGVAR_MIN, LOGVAR_MAX = -30.0, 10.0  # clamp of the posterior's log-variance (reference values)


class DiagonalGaussian:
    """Gaussian ``N(mean, diag(exp(logvar)))`` per example.

    ``parameters`` is ``(N, 2 * D)``: mean ``(N, D)`` followed by log-variance
    ``(N, D)``; the log-variance is clamped to ``[LOGVAR_MIN, LOGVAR_MAX]``.
    """

    def __init__(self, parameters: torch.Tensor):
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised sample ``mean + std * eps``, ``(N, D)``; differentiable. ``eps`` is drawn on the
        generator's device (a CPU generator for a CUDA posterior: the same draws on any device)."""
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        """The mean, ``(N, D)``."""
        return self.mean

    def kl(self) -> torch.Tensor:
        """``KL(self || N(0, I))`` per example in nats, ``(N,)``."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=1)
