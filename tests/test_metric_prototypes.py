"""Metric-guided prototypes: class trees and costs, distortion and rank losses, hierarchical
inference and cross-entropy, DeepNCM, hyperspherical prototypes, and a real edflow run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from edflow_runner import SHARED_DATA, EdflowRunner

from invproto.callbacks.average_cost import cost_metrics
from invproto.config.validation import validate_run_config
from invproto.data.hierarchy import ClassHierarchy, hierarchy_by_name, mean_cost
from invproto.errors import InvprotoError
from invproto.losses.metric_prototypes import (
    DistortionLoss,
    MetricPrototypeLoss,
    RankLoss,
    hierarchical_cross_entropy,
    soft_labels,
)
from invproto.models.metric_prototypes import (
    DeepNCM,
    HierarchicalInference,
    HypersphericalPrototypes,
    LearntPrototypes,
    NearestImages,
    PrototypeOutput,
    hyperspherical_prototypes,
)

REPO = Path(__file__).resolve().parents[1]
TINY_BACKBONE = {"target": "invproto.modules.convnets.ConvEncoder",
                 "params": {"in_channels": 1, "in_size": 8, "n_down": 2, "base_channels": 4, "out_dim": 6}}
T_SHIRT, TROUSER, PULLOVER, SANDAL, SHIRT, SNEAKER, BAG = 0, 1, 2, 5, 6, 7, 8

# three prototypes at the corners of a 3-4-5 triangle and a target metric with D01 = 1, D02 = D12 = 2
TRIANGLE = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
METRIC = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0], [2.0, 2.0, 0.0]])


pytestmark = pytest.mark.usefixtures("one_thread")


# --- hierarchies and costs ---------------------------------------------------------------------

def test_fashion_mnist_tree_costs_two_within_a_group_and_four_across():
    tree = hierarchy_by_name("fashion_mnist", 10)
    cost = tree.cost_matrix()
    assert torch.equal(cost, cost.T) and torch.equal(cost.diagonal(), torch.zeros(10))
    assert cost[T_SHIRT, SHIRT] == 2 and cost[SANDAL, SNEAKER] == 2
    assert cost[T_SHIRT, TROUSER] == 4 and cost[BAG, SNEAKER] == 4
    assert sorted(cost.unique().tolist()) == [0, 2, 4]
    assert [tree.names[v] for v in tree.path_to_root(SHIRT)] == ["Shirt", "tops"]
    assert tree.height()[tree.root] == 2


def test_a_deeper_tree_from_nested_groups():
    tree = ClassHierarchy.from_tree(["a", "b", "c", "d"], {"left": {"deep": ["a", "b"]}, "right": ["c", "d"]})
    cost = tree.cost_matrix()
    assert cost[0, 1] == 2 and cost[2, 3] == 2 and cost[0, 2] == 5 and cost[1, 3] == 5
    assert tree.height().tolist()[-1] == 3
    with pytest.raises(ValueError, match="missing"):
        ClassHierarchy.from_tree(["a", "b", "c"], {"g": ["a", "b"]})


def test_average_cost_and_mistake_cost_by_hand():
    cost = hierarchy_by_name("fashion_mnist", 10).cost_matrix()
    target = torch.tensor([T_SHIRT, T_SHIRT, TROUSER, BAG])
    predicted = torch.tensor([T_SHIRT, SHIRT, SANDAL, BAG])  # right, within tops (2), across (4), right
    assert float(mean_cost(cost, target, predicted)) == pytest.approx(6 / 4)
    assert cost_metrics(cost, target, predicted) == pytest.approx({"average_cost": 1.5, "mistake_cost": 3.0})
    assert cost_metrics(cost, target, target) == {"average_cost": 0.0}


# --- distortion and rank ---------------------------------------------------------------------------

def test_distortion_equals_the_closed_form_on_a_triangle():
    """d = (3, 4, 5) on pairs (01, 02, 12), D = (1, 2, 2): a = (3, 2, 2.5), each pair counted twice.

    s = sum a / sum a^2 = 7.5 / 19.25 = 30/77, so s * a - 1 = (13, -17, -2) / 77 and
    distortion = (169 + 289 + 4) / 77^2 / 3 = 2/77. Unscaled: mean((a - 1)^2) = (4 + 1 + 2.25) / 3.
    """
    assert float(DistortionLoss(METRIC)(TRIANGLE)) == pytest.approx(2 / 77, rel=1e-5)
    assert float(DistortionLoss(METRIC, scale_free=False)(TRIANGLE)) == pytest.approx(7.25 / 3, rel=1e-5)


def test_scale_free_distortion_ignores_scale_and_translation():
    torch.manual_seed(0)
    prototypes = torch.randn(10, 16)
    loss = DistortionLoss(hierarchy_by_name("fashion_mnist", 10).cost_matrix())
    reference = float(loss(prototypes))
    for factor in (1e-3, 7.0, 250.0):
        assert float(loss(prototypes * factor + 3.0)) == pytest.approx(reference, rel=1e-4)
    unscaled = DistortionLoss(loss.cost, scale_free=False)
    assert float(unscaled(prototypes * 7)) != pytest.approx(float(unscaled(prototypes)), rel=1e-2)


def test_distortion_is_zero_for_an_exact_embedding_and_has_finite_gradients():
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    metric = torch.cdist(square, square)
    assert float(DistortionLoss(metric)(square * 5)) == pytest.approx(0.0, abs=1e-10)
    prototypes = torch.zeros(4, 2, requires_grad=True)  # all distances 0: the worst case for sqrt
    DistortionLoss(metric, scale_free=False)(prototypes).backward()
    assert torch.isfinite(prototypes.grad).all()
    with pytest.raises(ValueError, match="positive"):
        DistortionLoss(torch.zeros(3, 3))


def test_rank_loss_on_a_hand_example():
    """Triplets (i, j, k) with D_ij != D_ik: (0,1,2), (0,2,1), (1,0,2), (1,2,0); for i = 2, D20 = D21.

    d01 - d02 = -1 agrees with D01 < D02, so (0,1,2) and (0,2,1) cost softplus(-1) each;
    d10 - d12 = -2 agrees with D10 < D12: softplus(-2) twice.
    """
    loss = RankLoss(METRIC)
    assert loss.triplets.shape == (3, 4)
    expected = (2 * math.log1p(math.exp(-1)) + 2 * math.log1p(math.exp(-2))) / 4
    assert float(loss(TRIANGLE)) == pytest.approx(expected, rel=1e-6)
    wrong_order = TRIANGLE[[2, 1, 0]]  # now d01 = 5 > d02 = 4 although D01 < D02
    assert float(loss(wrong_order)) > float(loss(TRIANGLE))


# --- hierarchical inference, HXE, soft labels -------------------------------------------------------

def test_hierarchical_inference_gives_a_distribution_over_the_leaves():
    tree = hierarchy_by_name("fashion_mnist", 10)
    inference = HierarchicalInference(tree)
    scores = torch.randn(7, tree.n_nodes - 1) * 3
    log_probs = inference(scores)
    assert log_probs.shape == (7, 10)
    torch.testing.assert_close(log_probs.exp().sum(dim=1), torch.ones(7))
    # p(Shirt) = p(tops) * p(Shirt | tops), each a softmax over its siblings
    tops, group_nodes = tree.parents[SHIRT], tree.children(tree.root)
    p_tops = scores[:, group_nodes].softmax(1)[:, group_nodes.index(tops)]
    siblings = tree.children(tops)
    p_shirt_in_tops = scores[:, siblings].softmax(1)[:, siblings.index(SHIRT)]
    torch.testing.assert_close(log_probs[:, SHIRT].exp(), p_tops * p_shirt_in_tops)
    torch.testing.assert_close(log_probs[:, TROUSER].exp(), scores[:, group_nodes].softmax(1)[:, 1])


def test_hxe_with_alpha_zero_is_the_cross_entropy_of_the_tree_softmax():
    tree = hierarchy_by_name("fashion_mnist", 10)
    inference = HierarchicalInference(tree)
    scores, target = torch.randn(5, tree.n_nodes - 1), torch.tensor([0, 1, 5, 6, 8])
    conditional = inference.conditional_log_probs(scores)
    ones = torch.ones(tree.n_nodes - 1)
    torch.testing.assert_close(hierarchical_cross_entropy(conditional, target, inference.ancestry, ones),
                               F.nll_loss(inference(scores), target))
    # alpha > 0 down-weights the group term (height 1) by exp(-alpha) against the leaf term
    weights = torch.exp(-0.5 * tree.height()[:-1])
    by_hand = -(conditional[0, T_SHIRT] + math.exp(-0.5) * conditional[0, tree.parents[T_SHIRT]])
    torch.testing.assert_close(hierarchical_cross_entropy(conditional[:1], target[:1], inference.ancestry, weights),
                               by_hand)


def test_soft_labels_favour_the_group_of_the_true_class():
    cost = hierarchy_by_name("fashion_mnist", 10).cost_matrix()
    targets = soft_labels(cost, torch.tensor([SHIRT]), beta=4.0)[0]
    torch.testing.assert_close(targets.sum(), torch.tensor(1.0))
    assert targets.argmax() == SHIRT and targets[T_SHIRT] > targets[TROUSER]
    # softmax(-4 * D / 4) = exp(-D) / Z: the ratio of a group mate to an outsider is e^2
    assert float(targets[T_SHIRT] / targets[SANDAL]) == pytest.approx(math.exp(2), rel=1e-5)


def test_metric_prototype_loss_adds_weighted_terms():
    tree = hierarchy_by_name("fashion_mnist", 10)
    torch.manual_seed(0)
    prototypes, z = torch.randn(10, 4), torch.randn(6, 4)
    scores = -torch.cdist(z, prototypes)
    output, target = PrototypeOutput(embedding=z, scores=scores, logits=scores), torch.arange(6)
    loss, scalars = MetricPrototypeLoss(tree, list(range(10)), distortion_weight=0.5)(output, target, prototypes)
    expected = F.cross_entropy(scores, target) + 0.5 * DistortionLoss(tree.cost_matrix())(prototypes)
    torch.testing.assert_close(loss, expected)
    assert scalars["average_cost"] == mean_cost(tree.cost_matrix(), target, scores.argmax(1))
    with pytest.raises(InvprotoError, match="hierarchical_inference"):
        MetricPrototypeLoss(tree, list(range(10)), data_term="hierarchical_cross_entropy")


# --- models ---------------------------------------------------------------------------------------

def test_learnt_prototypes_scores_and_hierarchical_prototypes():
    flat = LearntPrototypes.from_params(backbone=TINY_BACKBONE, embedding_dim=6, distance="squared",
                                        temperature=2.0)
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    output = flat(images)
    expected = -torch.cdist(flat.embed(images), flat.prototypes()).square() / 2
    torch.testing.assert_close(output.scores, expected)
    assert output.logits is output.scores and flat.explain(images).similarity.shape == (3, 10)
    tree = LearntPrototypes.from_params(backbone=TINY_BACKBONE, embedding_dim=6, hierarchy="fashion_mnist",
                                        hierarchical_inference=True)
    assert tree.prototypes().shape == (14, 6) and tree.prototype_class.tolist() == list(range(10))
    torch.testing.assert_close(tree(images).logits.exp().sum(1), torch.ones(3))
    with pytest.raises(InvprotoError, match="distance"):
        LearntPrototypes.from_params(backbone=TINY_BACKBONE, embedding_dim=6, distance="manhattan")
    with pytest.raises(InvprotoError, match="unknown class hierarchy 'fashion'; choose one of flat, fashion_mnist"):
        LearntPrototypes.from_params(backbone=TINY_BACKBONE, embedding_dim=6, hierarchy="fashion")


@pytest.mark.slow
def test_hyperspherical_prototypes_form_a_regular_simplex():
    for n, dim in [(4, 3), (10, 64)]:
        prototypes = hyperspherical_prototypes(n, dim)
        cosine = prototypes @ prototypes.T
        torch.testing.assert_close(prototypes.norm(dim=1), torch.ones(n))
        off_diagonal = cosine[~torch.eye(n, dtype=torch.bool)]
        torch.testing.assert_close(off_diagonal, torch.full_like(off_diagonal, -1 / (n - 1)), atol=1e-4, rtol=0)
    model = HypersphericalPrototypes.from_params(backbone=TINY_BACKBONE, embedding_dim=6, separation_steps=50)
    assert "fixed_prototypes" in dict(model.named_buffers()) and not any(
        "prototype" in name for name, _ in model.named_parameters())


def test_deep_ncm_exact_running_means():
    model = DeepNCM.from_params(backbone=TINY_BACKBONE, embedding_dim=2, n_classes=3, decay=None).train()
    z1, y1 = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0, 1])
    z2, y2 = torch.tensor([[5.0, 6.0], [0.0, 4.0]]), torch.tensor([0, 1])
    model.update_means(z1, y1)
    model.update_means(z2, y2)
    torch.testing.assert_close(model.means, torch.tensor([[3.0, 2.0], [0.0, 3.0], [0.0, 0.0]]))
    assert model.counts.tolist() == [3.0, 2.0, 0.0]
    model.eval()
    output = model.classify(torch.tensor([[3.0, 2.0]]), torch.tensor([2]))  # eval mode: means stay
    assert model.counts.tolist() == [3.0, 2.0, 0.0]
    torch.testing.assert_close(output.scores, -torch.tensor([[0.0, 10.0, 13.0]]))  # squared distances


def test_deep_ncm_moving_average_and_group_means():
    model = DeepNCM.from_params(backbone=TINY_BACKBONE, embedding_dim=1, decay=0.75, hierarchy="fashion_mnist",
                                hierarchical_inference=True)
    model.update_means(torch.tensor([[2.0], [4.0]]), torch.tensor([T_SHIRT, SHIRT]))  # first batch: taken as is
    model.update_means(torch.tensor([[10.0]]), torch.tensor([T_SHIRT]))
    tops = model.hierarchy.parents[T_SHIRT]
    assert float(model.means[T_SHIRT]) == pytest.approx(0.75 * 2 + 0.25 * 10)
    assert float(model.means[SHIRT]) == 4.0
    assert float(model.means[tops]) == pytest.approx(0.75 * 3 + 0.25 * 10)  # the group's mean: both tops
    assert float(model.means[TROUSER]) == 0.0 and model.counts[TROUSER] == 0


def test_deep_ncm_means_follow_the_model_between_devices():
    model = DeepNCM.from_params(backbone=TINY_BACKBONE, embedding_dim=6).to(torch.float64)
    assert model.means.dtype == torch.float64 and "means" in model.state_dict()
    assert model.prototypes() is model.means


def test_nearest_images_keep_the_closest_of_an_epoch_and_survive_a_checkpoint():
    gallery = NearestImages(2)
    images = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    gallery.offer(images, torch.tensor([[5.0, 1.0], [2.0, 7.0], [3.0, 0.5]]), epoch=0)
    assert gallery.images[:, 0, 0, 0].tolist() == [1.0, 2.0]
    gallery.offer(images[:1] + 10, torch.tensor([[1.0, 9.0]]), epoch=0)  # nearer to prototype 0 only
    assert gallery.images[:, 0, 0, 0].tolist() == [10.0, 2.0]
    gallery.offer(images[:1], torch.tensor([[4.0, 4.0]]), epoch=1)  # a new epoch starts afresh
    assert gallery.images[:, 0, 0, 0].tolist() == [0.0, 0.0] and int(gallery.epoch) == 1
    restored = NearestImages(2)
    restored.load_state_dict(gallery.state_dict())
    torch.testing.assert_close(restored.images, gallery.images)


# --- configs and a real run -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist_mgp", "fashionmnist_mgp", "cifar_mgp"])
def test_configs_pass_validation(name):
    validate_run_config(yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))


def test_average_cost_overlay_on_the_plain_classifier_passes_validation():
    config = {**yaml.safe_load((REPO / "configs" / "fashionmnist_clf.yaml").read_text()),
              **yaml.safe_load((REPO / "configs" / "fashionmnist_average_cost.yaml").read_text())}
    assert validate_run_config(config).eval_pipeline.callback_kwargs.average_cost.hierarchy == "fashion_mnist"


QUICK_MGP = ["--batch_size", "32", "--data/validation_size", "256", "--optimizer/warmup_steps", "0",
             "--log_freq", "10", "--num_steps", "30", "--model_params/backbone/params/base_channels", "8"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_edflow_trains_and_evaluates_metric_guided_prototypes(tmp_path):
    runner = EdflowRunner(tmp_path)
    run = runner.train("configs/mnist_mgp.yaml", "mgp", *QUICK_MGP)
    result, scores = runner.evaluate(run)
    assert "invproto: average_cost at step 30 on invproto.data.MNISTValidation" in result.stdout
    final = scores["final"]
    assert final == scores["evaluations"][-1] and final["step"] == 30
    assert 0.5 < final["accuracy"] <= 1.0, "30 steps should be far above chance (0.1)"
    # flat tree: every mistake costs 2 edges
    assert final["average_cost"] == pytest.approx(2 * (1 - final["accuracy"]), abs=1e-6)
    assert final["mistake_cost"] == pytest.approx(2.0)
    assert 0 <= final["prototype_class_agreement"] <= 1
    state = torch.load(run / "train" / "checkpoints" / "model-30.ckpt", weights_only=True)["model"]
    assert state["nearest_images.images"].shape == (10, 1, 28, 28)
