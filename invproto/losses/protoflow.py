"""Training objective of prototype flows (after ProtoFlow, Carmichael et al., ECCV 2024).

With class scores ``s (N, C)`` (the mixture head's ``log p(z | c)`` under the
model's reduction), exact class-conditional log-likelihoods
``log p(x | c) (N, C)`` and ``dims`` dimensions per example:

* ``ce``: ``cross_entropy(s, y)``, Bayes' rule with a uniform prior (nats);
* ``nll``: the class-conditional NLL of the true class in bits/dim,
  ``mean(-log p(x | y)) / (ln 2 * dims)`` (ProtoFlow's ``elbo_loss2``);
* ``consistency``: the same NLL of view 1 under the pseudo-label
  ``argmax`` of view 2's scores (no gradient through view 2), weighted by
  ``consistency_weight * min(1, step / consistency_rampup_steps)``;
* ``diversity``: the mean Bhattacharyya coefficient between the components
  of each class (:meth:`~invproto.modules.gaussian_mixture.ClassGaussianMixtures.diversity_loss`),
  weighted by ``diversity_weight``.

``loss = ce_weight * ce + nll_weight * nll + ramped consistency + diversity_weight * diversity``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bits_per_dim(log_likelihood: torch.Tensor, dims: int) -> torch.Tensor:
    """``(N,)`` log-likelihoods in nats -> ``(N,)`` ``-log2 p / dims``."""
    return -log_likelihood / (math.log(2) * dims)


def marginal_log_likelihood(class_log_likelihood: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` exact ``log p(x | c)`` -> ``(N,)`` ``log p(x) = logsumexp_c log p(x | c) - log C`` (uniform prior)."""
    return class_log_likelihood.logsumexp(dim=1) - math.log(class_log_likelihood.shape[1])


def conditional_bits_per_dim(class_log_likelihood: torch.Tensor, label: torch.Tensor, dims: int) -> torch.Tensor:
    """``(N,)`` ``-log2 p(x | label) / dims`` of ``(N, C)`` class log-likelihoods."""
    return bits_per_dim(class_log_likelihood.gather(1, label[:, None])[:, 0], dims)


class ProtoFlowLoss:
    """The weighted sum in the module docstring; returns ``(loss, scalars)``."""

    def __init__(self, ce_weight: float = 1.0, nll_weight: float = 1.0, consistency_weight: float = 0.0,
                 consistency_rampup_steps: int = 0, diversity_weight: float = 0.0):
        self.ce_weight, self.nll_weight = ce_weight, nll_weight
        self.consistency_weight, self.consistency_rampup_steps = consistency_weight, consistency_rampup_steps
        self.diversity_weight = diversity_weight

    @property
    def uses_second_view(self) -> bool:
        return self.consistency_weight > 0

    def consistency_ramp(self, step: int) -> float:
        """Linear ramp of the consistency weight from 0 (step 0) to 1 (step ``consistency_rampup_steps``)."""
        if self.consistency_rampup_steps <= 0:
            return 1.0
        return min(1.0, step / self.consistency_rampup_steps)

    def __call__(self, scores: torch.Tensor, class_log_likelihood: torch.Tensor, target: torch.Tensor, dims: int,
                 step: int, diversity: torch.Tensor, second_view_scores: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``scores``, ``class_log_likelihood``: ``(N, C)`` of view 1; ``target``: ``(N,)`` labels;
        ``diversity``: the head's scalar diversity term; ``second_view_scores``: ``(N, C)``
        scores of view 2; without them (logging) the consistency term is left out."""
        ce = F.cross_entropy(scores, target)
        nll = conditional_bits_per_dim(class_log_likelihood, target, dims).mean()
        loss = self.ce_weight * ce + self.nll_weight * nll + self.diversity_weight * diversity
        scalars = {"ce": ce, "nll_bits_per_dim": nll, "diversity": diversity,
                   "accuracy": (scores.argmax(1) == target).float().mean(),
                   "bits_per_dim": bits_per_dim(marginal_log_likelihood(class_log_likelihood), dims).mean()}
        if second_view_scores is not None and self.uses_second_view:
            pseudo_label = second_view_scores.detach().argmax(dim=1)
            consistency = conditional_bits_per_dim(class_log_likelihood, pseudo_label, dims).mean()
            weight = self.consistency_weight * self.consistency_ramp(step)
            loss = loss + weight * consistency
            scalars.update(consistency=consistency, consistency_weight=weight,
                           pseudo_label_agreement=(pseudo_label == target).float().mean())
        return loss, {name: value.detach() if torch.is_tensor(value) else float(value)
                      for name, value in scalars.items()}
