"""Prototype flows: an invertible map into a latent space where each class is a Gaussian mixture.

A :class:`PrototypeFlow` maps an image ``x`` to ``z`` (``(N, D)``) with a
per-example log-determinant and scores ``z`` under a
:class:`~invproto.modules.gaussian_mixture.ClassGaussianMixtures` head: class
``c`` owns ``K = protos_per_class`` diagonal Gaussians, the *prototypes*. By the
change of variables

    log p(x | c) = log p_head(z | c) + log_det,

where ``log_det`` holds every class-independent term (the flow's log-Jacobian,
and for a latent flow nothing else: the density is the one of the first
stage's code). Prediction is Bayes' rule with a uniform class prior: the class
scores are ``log p_head(z | c)`` reduced over the components by ``logsumexp``
(the exact mixture) or ``max`` (the best prototype), and ``log_det`` cancels in
their softmax.

Two backbones share this base and the
:class:`~invproto.iterators.protoflow.ProtoFlowIterator`:

* :class:`LatentPrototypeFlow` (here): IIN's :class:`~invproto.modules.flow.VectorFlow`
  on the code of a first-stage autoencoder, frozen or fine-tuned; its
  prototypes decode through the inverse flow and the autoencoder's decoder;
* an image flow (multiscale, Glow-like) in its own module.

A subclass builds its backbone, sets :attr:`PrototypeFlow.data_dims` and calls
:meth:`PrototypeFlow.build_head` once it knows ``D``; it implements
:meth:`latent` and :meth:`decode`. Everything else (scores, exact
likelihoods, explanations, prototype images) lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from invproto.config.run import abort_cleanly
from invproto.errors import ConfigError
from invproto.models.base import Model
from invproto.models.iin import IIN, first_stage_codes
from invproto.models.prototype_model import Explanation, PrototypeModel
from invproto.modules.gaussian_mixture import ClassGaussianMixtures

REDUCTIONS = ("logsumexp", "max")


class PrototypeFlow(Model, PrototypeModel):
    """Base of prototype flows: a backbone ``x -> (z, log_det)`` and a class-mixture head on ``z``.

    Shapes: ``N`` images, ``C`` classes, ``K`` prototypes per class, ``D``
    latent dimensions, ``P = C * K`` prototypes in class-major order
    (prototype ``c * K + k`` is component ``k`` of class ``c``).
    Log-densities are in nats.
    """

    @dataclass
    class Params:
        n_classes: int = 10  # C
        protos_per_class: int = 5  # K, Gaussian components (prototypes) per class
        reduction: str = "logsumexp"  # how a class scores its prototypes: logsumexp (exact mixture) | max
        init_std: float = 1.0  # std of the random initial means (before an optional k-means init)

    head: ClassGaussianMixtures
    data_dims: int  # dimensions the bits/dim are per: D for a latent flow, C*H*W for an image flow

    def __init__(self, config):
        super().__init__(config)
        if self.params.reduction not in REDUCTIONS:
            with abort_cleanly():
                raise ConfigError(f"model_params.reduction must be one of {', '.join(REDUCTIONS)}, "
                                  f"got {self.params.reduction!r}")

    def build_head(self, dim: int, seed: int = 0) -> None:
        """Create the ``(C, K, D)`` mixture head and the ``(P,)`` :attr:`prototype_class` buffer."""
        p = self.params
        self.head = ClassGaussianMixtures(p.n_classes, p.protos_per_class, dim, init_std=p.init_std, seed=seed)
        self.register_buffer("prototype_class",
                             torch.arange(p.n_classes).repeat_interleave(p.protos_per_class))

    # --- to implement -------------------------------------------------------
    def latent(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` images in [-1, 1] -> ``(z (N, D), log_det (N,))``.

        ``log_det`` holds every class-independent term of ``log p(x | c)``, so
        that ``log p(x | c) = head.class_log_prob(z)[:, c] + log_det``.
        """
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` latents -> ``(N, C, H, W)`` images in [-1, 1] (the inverse of :meth:`latent`)."""
        raise NotImplementedError

    def auxiliary_loss(self, images: torch.Tensor, target: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """An extra training term of the backbone on ``(N,)`` labelled images (weighted), or ``None`` (the default)."""
        return None

    # --- scores on latents --------------------------------------------------
    def class_scores(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` -> ``(N, C)`` class scores ``log p_head(z | c)`` under ``params.reduction``.

        Their softmax is the predicted class distribution (uniform prior).
        """
        return self.head.class_log_prob(z, self.params.reduction)

    def latent_class_log_likelihood(self, z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` exact ``log p(x | c) = log p_head(z | c) + log_det`` of latents and their ``(N,)`` log_det."""
        return self.head.class_log_prob(z) + log_det[:, None]

    def explanation(self, z: torch.Tensor) -> Explanation:
        """:class:`Explanation` of ``(N, D)`` latents: class scores and ``(N, P)`` weighted component log-densities."""
        return Explanation(logits=self.class_scores(z),
                           similarity=self.head.weighted_component_log_prob(z).flatten(1))

    # --- on images ----------------------------------------------------------
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`latent`."""
        return self.latent(images)

    def class_log_likelihood(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C, H, W)`` -> ``((N, C) exact log p(x | c) (logsumexp over prototypes), (N,) log_det)``."""
        z, log_det = self.latent(images)
        return self.latent_class_log_likelihood(z, log_det), log_det

    def explain(self, images: torch.Tensor) -> Explanation:
        return self.explanation(self.latent(images)[0])

    def prototype_images(self) -> torch.Tensor:
        """``(P, C, H, W)`` decoded prototype means in [-1, 1]."""
        return self.decode(self.head.means.flatten(0, 1))

    def prototype_samples(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(P, n, C, H, W)`` decoded draws from every prototype's Gaussian."""
        head = self.head
        draws = torch.stack([head.sample(c, k, n, generator=generator)
                             for c in range(head.n_classes) for k in range(head.protos_per_class)])
        decoded = self.decode(draws.flatten(0, 1))
        return decoded.view(len(draws), n, *decoded.shape[1:])


class LatentPrototypeFlow(IIN, PrototypeFlow):
    """Prototype flow on a first-stage autoencoder's code (ProtoFlow on an IIN backbone).

    ``z = VectorFlow(code)`` with ``code`` the posterior mean of the first
    stage (configured as in :class:`~invproto.models.iin.IIN`), so
    ``log p(code | c) = log p_head(z | c) + log|det dz/dcode|`` and bits/dim are
    per code dimension (``data_dims = D``). Prototypes decode as
    ``first_stage.decode(flow.inverse(z))``.

    ``train_first_stage: true`` fine-tunes the whole autoencoder too (ProtoFlow's
    ``--trainable all``). The density is the one of the code, which the encoder
    itself defines: shrinking every code would raise it without bound. So
    :meth:`latent` keeps seeing the code without gradient, and the first stage
    learns from :meth:`auxiliary_loss` only: cross-entropy of the class scores of
    its differentiable code plus ``reconstruction_weight`` times the L1
    reconstruction error of the decoded code, which keeps the decoder (and so
    the decoded prototypes) in step with the moving encoder.
    """

    @dataclass
    class Params(IIN.Params, PrototypeFlow.Params):
        train_first_stage: bool = False  # fine-tune the autoencoder by CE + reconstruction (--trainable all)
        reconstruction_weight: float = 1.0  # weight of the L1 reconstruction term when train_first_stage

    def __init__(self, config):
        super().__init__(config)
        if not self.can_decode:
            with abort_cleanly():
                raise ConfigError(f"model_params.first_stage.model {self.params.first_stage['model']} "
                                  f"cannot decode; a prototype flow needs an autoencoder first stage")
        self.data_dims = self.code_dim
        self.build_head(self.code_dim, seed=self.params.seed)
        self.first_stage.requires_grad_(self.params.train_first_stage)

    def train(self, mode: bool = True) -> "LatentPrototypeFlow":
        """The first stage trains only when ``train_first_stage`` (else it stays in eval mode)."""
        super().train(mode)
        self.first_stage.train(mode and self.params.train_first_stage)
        return self

    def latent(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``flow(code)``, the code without gradient (see the class docstring)."""
        return self(images)

    def auxiliary_loss(self, images: torch.Tensor, target: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """With ``train_first_stage``: CE through the differentiable code + weighted L1 reconstruction."""
        if not self.params.train_first_stage:
            return None
        code = first_stage_codes(self.first_stage, images)
        ce = F.cross_entropy(self.class_scores(self.flow(code)[0]), target)
        reconstruction = F.l1_loss(self.first_stage.decode(code), images)
        return (ce + self.params.reconstruction_weight * reconstruction,
                {"first_stage_ce": ce.detach(), "reconstruction_l1": reconstruction.detach()})
