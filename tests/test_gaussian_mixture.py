"""The prototype head: class-conditional diagonal Gaussian mixtures, checked against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from invproto.modules.gaussian_mixture import ClassGaussianMixtures

C, K, D = 3, 4, 5


@pytest.fixture
def head() -> ClassGaussianMixtures:
    """A head with random means, variances in (e^-1, e^1) and unequal mixture weights."""
    torch.manual_seed(0)
    head = ClassGaussianMixtures(C, K, D, init_std=2.0, seed=1).double()
    with torch.no_grad():
        head.log_var.uniform_(-1, 1)
        head.weight_logits.normal_()
    return head


def scipy_class_log_prob(head: ClassGaussianMixtures, points: np.ndarray) -> np.ndarray:
    """``(N, C)`` log p(z | c) = logsumexp_k [log w_ck + log N(z; mu_ck, diag(var_ck))] by scipy."""
    means, variances = head.means.detach().numpy(), head.variance.detach().numpy()
    weights = torch.softmax(head.weight_logits.detach(), dim=1).numpy()
    components = np.array([[multivariate_normal(means[c, k], np.diag(variances[c, k])).logpdf(points)
                            for k in range(K)] for c in range(C)]).transpose(2, 0, 1)  # (N, C, K)
    return logsumexp(components + np.log(weights)[None], axis=2)


def test_class_log_density_equals_scipy(head):
    points = np.random.default_rng(0).normal(scale=2.0, size=(50, D))
    ours = head.class_log_prob(torch.from_numpy(points)).detach().numpy()
    np.testing.assert_allclose(ours, scipy_class_log_prob(head, points), rtol=1e-10, atol=1e-10)


def test_max_reduction_scores_the_best_weighted_component(head):
    z = torch.randn(20, D, dtype=torch.float64)
    weighted = head.weighted_component_log_prob(z)
    torch.testing.assert_close(head.class_log_prob(z, "max"), weighted.max(dim=2).values)
    assert (head.class_log_prob(z, "max") <= head.class_log_prob(z, "logsumexp")).all()
    with pytest.raises(ValueError, match="reduction"):
        head.class_log_prob(z, "mean")


def test_bayes_posterior_sums_to_one_and_follows_the_likelihood_ratio(head):
    z = torch.randn(30, D, dtype=torch.float64) * 3
    log_likelihood = head.class_log_prob(z)
    posterior = head.posterior(log_likelihood)
    torch.testing.assert_close(posterior.sum(dim=1), torch.ones(30, dtype=torch.float64))
    # uniform prior: p(c | z) / p(c' | z) = p(z | c) / p(z | c')
    torch.testing.assert_close(posterior[:, 0].log() - posterior[:, 1].log(),
                               log_likelihood[:, 0] - log_likelihood[:, 1])


def test_marginal_is_the_uniform_mixture_of_the_classes(head):
    points = np.random.default_rng(1).normal(size=(10, D))
    marginal = head.marginal_log_prob(head.class_log_prob(torch.from_numpy(points))).detach().numpy()
    expected = logsumexp(scipy_class_log_prob(head, points), axis=1) - math.log(C)
    np.testing.assert_allclose(marginal, expected, rtol=1e-10)


def test_samples_of_a_component_have_its_mean_and_variance(head):
    """n = 40000 draws: the sample mean is within 5 standard errors sqrt(var / n) of mu, the sample
    variance within 5 standard errors var * sqrt(2 / (n - 1)) of var (Gaussian), per dimension."""
    n = 40000
    draws = head.sample(2, 1, n, generator=torch.Generator().manual_seed(0)).detach()
    mean, variance = head.means[2, 1].detach(), head.variance[2, 1].detach()
    assert draws.shape == (n, D)
    assert ((draws.mean(0) - mean).abs() < 5 * (variance / n).sqrt()).all()
    assert ((draws.var(0) - variance).abs() < 5 * variance * math.sqrt(2 / (n - 1))).all()


def test_diversity_is_the_bhattacharyya_coefficient():
    """1-d, K = 2: N(0, 1) vs N(2, 1) have BD = (2 - 0)^2 / 8 = 0.5, so BC = exp(-0.5); equal
    means with variances 1 and 4 have BD = 0.5 * ln(2.5 / 2) (variance mismatch only)."""
    head = ClassGaussianMixtures(1, 2, 1).double()
    with torch.no_grad():
        head.means.copy_(torch.tensor([[[0.0], [2.0]]]))
        head.log_var.zero_()
    assert math.isclose(float(head.diversity_loss().detach()), math.exp(-0.5), rel_tol=1e-12)
    with torch.no_grad():
        head.means.zero_()
        head.log_var.copy_(torch.tensor([[[0.0], [math.log(4.0)]]], dtype=torch.float64))
    assert math.isclose(float(head.diversity_loss().detach()), math.exp(-0.5 * math.log(2.5 / 2)), rel_tol=1e-12)
    assert float(ClassGaussianMixtures(2, 1, 3).diversity_loss()) == 0.0


def test_kmeans_init_finds_the_clusters_of_each_class():
    """Class c has two tight clusters at +-(10 c + 5) e_0; k-means puts one mean on each."""
    rng = np.random.default_rng(0)
    codes, labels = [], []
    for c in range(2):
        for sign in (-1, 1):
            centre = np.zeros(3)
            centre[0] = sign * (10 * c + 5)
            codes.append(centre + 0.1 * rng.standard_normal((100, 3)))
            labels += [c] * 100
    head = ClassGaussianMixtures(2, 2, 3)
    head.init_kmeans(torch.from_numpy(np.concatenate(codes)).float(), torch.tensor(labels))
    for c in range(2):
        found = sorted(head.means[c, :, 0].tolist())
        np.testing.assert_allclose(found, [-(10 * c + 5), 10 * c + 5], atol=0.05)
    np.testing.assert_allclose(head.variance.detach().numpy(), 0.01, rtol=0.35)
    np.testing.assert_allclose(head.log_weights().exp().detach().numpy(), 0.5, atol=1e-6)


def test_reseed_moves_dead_components_onto_distinct_codes_of_their_class(head):
    """Class 0 loses components 1 and 3: they land on two different class-0 codes; other classes keep theirs."""
    rng = np.random.default_rng(0)
    codes = torch.from_numpy(rng.normal(scale=2.0, size=(40, D)))
    labels = torch.arange(40) % C
    before = {name: p.detach().clone() for name, p in head.named_parameters()}
    dead = torch.zeros(C, K, dtype=torch.bool)
    dead[0, [1, 3]] = True
    assert head.reseed(dead, codes, labels, torch.Generator().manual_seed(0)) == 2

    own_codes = codes[labels == 0]
    landed = [int((own_codes == head.means[0, k].detach()).all(dim=1).nonzero()) for k in (1, 3)]
    assert landed[0] != landed[1]
    torch.testing.assert_close(head.log_var[0, 1].detach(), before["log_var"][0, [0, 2]].mean(0))
    expected_logit = before["weight_logits"][0].logsumexp(0) - math.log(K)
    torch.testing.assert_close(head.weight_logits[0, [1, 3]].detach(), expected_logit.repeat(2))
    for name, value in before.items():  # live components and the other classes are untouched
        torch.testing.assert_close(getattr(head, name)[0, [0, 2]].detach(), value[0, [0, 2]])
        torch.testing.assert_close(getattr(head, name)[1:].detach(), value[1:])

    again = ClassGaussianMixtures(C, K, D).double()  # the draws follow the generator
    again.load_state_dict(before)
    again.reseed(dead, codes, labels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.means, head.means)

    all_dead = torch.ones(C, K, dtype=torch.bool)  # a class without a live component keeps its components
    assert head.reseed(all_dead, codes, labels) == 0
