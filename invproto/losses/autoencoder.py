"""Loss of the variational autoencoder: L1 (+ perceptual) reconstruction + KL + optional PatchGAN term.

Per batch of N images (all terms are means over the batch of per-example sums)::

    rec  = |x - x̂| + perceptual_weight * d_p(x, x̂)    (per pixel; d_p per image, see below)
           ((x - x̂)² instead of |x - x̂| with pixel_loss: l2)
    nll  = sum_pixels rec / exp(logvar) + logvar        (logvar = 0 unless learn_logvar)
    kl   = KL(q(z|x) || N(0, I))                      (nats)
    g    = -mean D(x̂)                                 (from step disc_start on)
    loss = nll + kl_weight * kl + w_gan * g

``pixel_loss: l2`` is for images that are mostly one background colour (Sprites):
there L1's optimum for an uninformative code is the per-pixel median, the empty
background, and a small network starting from it gets no useful gradient
(its reconstructions stay at the all-black image); the squared error's optimum
is the mean, which keeps every sprite's trace, so the code learns from the
first steps.

As in the IIN reference, the per-image perceptual distance ``d_p`` is added to
every pixel's reconstruction error (effective weight C*H*W), and ``logvar`` is
one learned scalar (a Laplace scale shared by all pixels) when
``learn_logvar`` is on. ``d_p`` is measured by a frozen invproto encoder
configured in ``perceptual`` (:mod:`invproto.losses.perceptual`; LPIPS's VGG
weights are not available offline).

``w_gan`` is ``discriminator_weight``, or with ``calibrate`` the reference's
adaptive weight ``‖∇nll‖ / (‖∇g‖ + 1e-4)`` at the decoder's last weight,
clamped to [0, 1e4] (then ``discriminator_weight`` is not used).

The discriminator is trained by :meth:`AutoencoderLoss.discriminator_loss` on
*detached* reconstructions, before the decoder's adversarial term is computed
with a fresh discriminator forward pass: no graph is shared between the two
updates, so neither backward pass sees tensors the other modified in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from invproto.config.validation import ConfigError
from invproto.losses.discriminator import DISCRIMINATOR_LOSSES, PatchDiscriminator, generator_loss
from invproto.losses.perceptual import EncoderPerceptualDistance
from invproto.models.first_stages import FirstStageParams
from invproto.modules.gaussian import DiagonalGaussian

CALIBRATION_EPS = 1e-4
CALIBRATION_MAX = 1e4


def calibrated_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """Adaptive GAN weight ``‖∇nll‖ / (‖∇g‖ + 1e-4)`` at ``last_layer``, clamped to [0, 1e4].

    Both losses must depend on ``last_layer`` through a graph that stays
    usable afterwards (the gradients are taken with ``retain_graph=True``).
    Returns a detached scalar.
    """
    nll_grad, = torch.autograd.grad(nll, last_layer, retain_graph=True)
    g_grad, = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    weight = nll_grad.norm() / (g_grad.norm() + CALIBRATION_EPS)
    return weight.clamp(0.0, CALIBRATION_MAX).detach()


class AutoencoderLoss(nn.Module):
    """Owns the discriminator (when ``discriminator`` is on); built by ``instantiate(config["loss"], "loss")``."""

    @dataclass
    class Params:
        kl_weight: float = 1.0  # weight of the KL term (reference: 1)
        pixel_loss: str = "l1"  # per-pixel error |x - x̂| (l1, reference) or (x - x̂)² (l2, see the module docstring)
        discriminator: bool = True  # train a PatchGAN discriminator and add the adversarial term
        disc_start: int = 0  # first global step with discriminator updates and the adversarial term
        disc_loss: str = "softplus"  # discriminator loss: softplus (reference) | hinge
        discriminator_weight: float = 1.0  # fixed weight of the adversarial term (when calibrate is false)
        calibrate: bool = True  # adaptive weight ‖∇nll‖/(‖∇g‖+1e-4) at the decoder's last layer instead
        disc_channels: int = 64  # channels of the discriminator's first convolution (ndf)
        disc_layers: int = 3  # strided convolutions of the discriminator (n_layers)
        spectral_norm: bool = False  # spectral normalisation of every discriminator convolution
        perceptual_weight: float = 0.0  # weight of the perceptual distance (reference: 1.0 with LPIPS)
        perceptual: Optional[Dict[str, Any]] = None  # its frozen feature network: {model, model_params, checkpoint}
        learn_logvar: bool = False  # learn one log-variance scaling the reconstruction term (reference: on)

    def __init__(self, in_channels: int, **params):
        super().__init__()
        self.params = self.Params(**params)
        p = self.params
        if p.disc_loss not in DISCRIMINATOR_LOSSES:
            raise ConfigError(f"config key 'loss.params.disc_loss' must be one of {sorted(DISCRIMINATOR_LOSSES)}, "
                              f"got '{p.disc_loss}'")
        if p.pixel_loss not in ("l1", "l2"):
            raise ConfigError(f"config key 'loss.params.pixel_loss' must be l1 or l2, got '{p.pixel_loss}'")
        self.discriminator = (PatchDiscriminator(in_channels, p.disc_channels, p.disc_layers, p.spectral_norm)
                              if p.discriminator else None)
        if p.perceptual_weight > 0 and p.perceptual is None:
            raise ConfigError("config key 'loss.params.perceptual' is missing: perceptual_weight > 0 needs a "
                              "feature network {model, model_params, checkpoint} (e.g. a trained classifier)")
        self.perceptual = (EncoderPerceptualDistance(FirstStageParams(**p.perceptual))
                           if p.perceptual_weight > 0 else None)
        self.logvar = nn.Parameter(torch.zeros(()), requires_grad=p.learn_logvar)

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of this loss that the autoencoder's optimizer trains (the learned log-variance)."""
        return [self.logvar] if self.params.learn_logvar else []

    def gan_active(self, step: int) -> bool:
        """Whether the discriminator is trained and used at global step ``step``."""
        return self.discriminator is not None and step >= self.params.disc_start

    def discriminator_loss(self, inputs: torch.Tensor, reconstructions: torch.Tensor
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of the discriminator on real ``inputs`` and (detached) ``reconstructions``, NCHW."""
        real = self.discriminator(inputs)
        fake = self.discriminator(reconstructions.detach())
        loss = DISCRIMINATOR_LOSSES[self.params.disc_loss](real, fake)
        return loss, {"d_loss": loss.detach(), "logits_real": real.mean().detach(),
                      "logits_fake": fake.mean().detach()}

    def autoencoder_loss(self, inputs: torch.Tensor, reconstructions: torch.Tensor, posterior: DiagonalGaussian,
                         last_layer: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder/decoder loss (module docstring); ``last_layer`` is the decoder's last weight."""
        error = inputs - reconstructions
        rec = error.abs() if self.params.pixel_loss == "l1" else error.square()
        scalars = {}
        if self.perceptual is not None:
            perceptual = self.perceptual(inputs, reconstructions)
            rec = rec + self.params.perceptual_weight * perceptual[:, None, None, None]
            scalars["perceptual"] = perceptual.mean().detach()
        nll = (rec / self.logvar.exp() + self.logvar).flatten(1).sum(1).mean()
        kl = posterior.kl().mean()
        loss = nll + self.params.kl_weight * kl
        # logvar copied: the optimizer step updates the parameter in place before the scalars are read
        scalars.update(nll=nll.detach(), kl=kl.detach(), logvar=self.logvar.detach().clone())
        if self.gan_active(step):
            g_loss = self._generator_loss(reconstructions)
            weight = (calibrated_weight(nll, g_loss, last_layer) if self.params.calibrate
                      else torch.tensor(self.params.discriminator_weight))
            loss = loss + weight * g_loss
            scalars.update(g_loss=g_loss.detach(), gan_weight=weight.detach())
        return loss, scalars

    def _generator_loss(self, reconstructions: torch.Tensor) -> torch.Tensor:
        """``-mean D(x̂)`` with the discriminator's parameters frozen (gradients reach x̂ only)."""
        self.discriminator.requires_grad_(False)
        try:
            return generator_loss(self.discriminator(reconstructions))
        finally:
            self.discriminator.requires_grad_(True)
