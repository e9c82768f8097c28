"""Class-conditional Gaussian mixtures: ProtoFlow's prototype head.

Every class ``c`` owns ``K`` diagonal Gaussians ``N(mu_ck, diag(var_ck))`` over
the flow's latent space ``R^D`` with mixture weights ``softmax(weight_logits_c)``.
Each component is a *prototype*: a distribution that can be scored exactly,
decoded at its mean and sampled.

The variance is parameterised as ``var = exp(log_var)`` -- positive without
clipping -- and this one variance is what the density, the samples and the
diversity term all use (the ProtoFlow reference scores with ``rsqrt(var)`` as
precision, i.e. an effective variance of ``sqrt(var)``, while it samples with
``var``).

Shapes: ``N`` points, ``C`` classes, ``K`` components per class, ``D`` dims.
Log-densities are in nats.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

LOG_TWO_PI = math.log(2 * math.pi)


class ClassGaussianMixtures(nn.Module):
    """``C`` class-conditional mixtures of ``K`` diagonal Gaussians on ``R^D``."""

    def __init__(self, n_classes: int, protos_per_class: int, dim: int, init_std: float = 1.0,
                 seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.means = nn.Parameter(torch.randn(n_classes, protos_per_class, dim, generator=generator) * init_std)
        self.log_var = nn.Parameter(torch.zeros(n_classes, protos_per_class, dim))
        self.weight_logits = nn.Parameter(torch.zeros(n_classes, protos_per_class))

    @property
    def n_classes(self) -> int:
        return self.means.shape[0]

    @property
    def protos_per_class(self) -> int:
        return self.means.shape[1]

    @property
    def dim(self) -> int:
        return self.means.shape[2]

    @property
    def variance(self) -> torch.Tensor:
        """``(C, K, D)`` component variances."""
        return self.log_var.exp()

    def log_weights(self) -> torch.Tensor:
        """``(C, K)`` log mixture weights, normalised within each class."""
        return self.weight_logits.log_softmax(dim=1)

    def component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` points -> ``(N, C, K)`` log N(z; mu_ck, var_ck) (weights not included)."""
        diff = z[:, None, None, :] - self.means[None]
        mahalanobis = (diff.square() * (-self.log_var).exp()[None]).sum(-1)
        return -0.5 * (mahalanobis + self.log_var.sum(-1)[None] + self.dim * LOG_TWO_PI)

    def weighted_component_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``(N, C, K)`` log(w_ck N(z; mu_ck, var_ck)): each prototype's share of ``log p(z | c)``."""
        return self.component_log_prob(z) + self.log_weights()[None]

    def class_log_prob(self, z: torch.Tensor, reduction: str = "logsumexp") -> torch.Tensor:
        """``(N, D)`` -> ``(N, C)`` class scores.

        ``reduction="logsumexp"`` gives the exact mixture density ``log p(z | c)``;
        ``"max"`` scores a class by its best prototype, ``max_k log(w_ck N(z; ...))``.
        """
        weighted = self.weighted_component_log_prob(z)
        if reduction == "logsumexp":
            return weighted.logsumexp(dim=2)
        if reduction == "max":
            return weighted.amax(dim=2)
        raise ValueError(f"reduction must be 'logsumexp' or 'max', not {reduction!r}")

    def marginal_log_prob(self, class_log_prob: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` exact ``log p(z | c)`` -> ``(N,)`` ``log p(z)`` under the uniform class prior."""
        return class_log_prob.logsumexp(dim=1) - math.log(class_log_prob.shape[1])

    @staticmethod
    def posterior(class_log_prob: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` class log-likelihoods -> ``(N, C)`` p(c | z) by Bayes' rule with a uniform prior."""
        return class_log_prob.softmax(dim=1)

    def sample(self, class_index: int, component: int, n: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, D)`` draws from prototype ``(class_index, component)``."""
        mean = self.means[class_index, component]
        std = self.log_var[class_index, component].mul(0.5).exp()
        noise = torch.randn(n, self.dim, generator=generator).to(mean)
        return mean + std * noise

    def diversity_loss(self) -> torch.Tensor:
        """Mean Bhattacharyya coefficient ``exp(-BD)`` between the components of each class.

        In ``(0, 1]``, 1 for identical components; minimising it spreads a
        class's prototypes apart. ``Hellinger^2 = 1 - BC``. Zero with ``K = 1``.
        """
        k = self.protos_per_class
        if k < 2:
            return self.means.new_zeros(())
        mean_i, mean_j = self.means[:, :, None], self.means[:, None, :]
        var_i, var_j = self.variance[:, :, None], self.variance[:, None, :]
        var_mid = (var_i + var_j) / 2
        distance = (0.125 * (mean_i - mean_j).square() / var_mid
                    + 0.5 * (var_mid.log() - 0.5 * (var_i.log() + var_j.log()))).sum(-1)
        off_diagonal = ~torch.eye(k, dtype=torch.bool, device=self.means.device)
        return (-distance).exp()[:, off_diagonal].mean()

    @torch.no_grad()
    def init_kmeans(self, codes: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> None:
        """Set each class's means to k-means centroids (k-means++, scipy) of its ``(N, D)`` codes.

        The variances become each cluster's per-dimension variance and the
        weights its share of the class (both floored, so no component starts dead).
        """
        from scipy.cluster.vq import kmeans2

        codes_np, labels_np = codes.double().cpu().numpy(), labels.cpu().numpy()
        for c in range(self.n_classes):
            points = codes_np[labels_np == c]
            if len(points) < self.protos_per_class:
                raise ValueError(f"class {c} has {len(points)} codes, fewer than protos_per_class="
                                 f"{self.protos_per_class}")
            centroids, assignment = kmeans2(points, self.protos_per_class, minit="++", seed=seed + c)
            variances = np.stack([points[assignment == k].var(axis=0) if (assignment == k).sum() > 1
                                  else points.var(axis=0) for k in range(self.protos_per_class)])
            counts = np.bincount(assignment, minlength=self.protos_per_class) + 1.0
            self.means[c] = torch.as_tensor(centroids, dtype=self.means.dtype)
            self.log_var[c] = torch.as_tensor(np.log(np.maximum(variances, 1e-4)), dtype=self.log_var.dtype)
            self.weight_logits[c] = torch.as_tensor(np.log(counts / counts.sum()), dtype=self.weight_logits.dtype)

    @torch.no_grad()
    def reseed(self, dead: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor,
               generator: torch.Generator | None = None) -> int:
        """Move the ``(C, K)`` boolean ``dead`` components onto random codes of their class.

        The dead components of class ``c`` take, as means, distinct codes drawn
        at random from the ``(N, D)`` ``codes`` labelled ``c``; as log-variance
        the mean of the class's live components; as weight logit
        ``logsumexp(logits_c) - log K`` (a weight of about ``1/K``). So a revived
        component shares the class's mass with the live ones and wins the
        region around its code. (Codes the class explains worst would be
        outliers in ``D`` dimensions: components put there stay dead and decode
        to atypical images.) A class with no live component or with fewer codes
        than dead components keeps its components. Returns how many moved.
        """
        moved = 0
        for c in range(self.n_classes):
            dead_c = dead[c].nonzero()[:, 0]
            live_c = (~dead[c]).nonzero()[:, 0]
            own = (labels == c).nonzero()[:, 0]
            if len(dead_c) == 0 or len(live_c) == 0 or len(own) < len(dead_c):
                continue
            chosen = own[torch.randperm(len(own), generator=generator)[:len(dead_c)].to(own.device)]
            self.means[c, dead_c] = codes[chosen].to(self.means.dtype)
            self.log_var[c, dead_c] = self.log_var[c, live_c].mean(0)
            self.weight_logits[c, dead_c] = self.weight_logits[c].logsumexp(0) - math.log(self.protos_per_class)
            moved += len(dead_c)
        return moved
