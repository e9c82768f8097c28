"""Part prototypes (ProtoPNet/PixPNet): distances, heads, losses on hand examples, push exactness and
duplicate filtering, the relevance ordering test, consistency/stability on Sprites, configs, and one
tiny real edflow train + evaluate run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from invproto.config.schema import OptimizerParams
from invproto.config.validation import validate_run_config
from invproto.data import SpritesTrain
from invproto.data.synthetic import KEYPOINTS
from invproto.errors import InvprotoError
from invproto.interpret.part_metrics import consistency, parts_hit, peak_positions, stability
from invproto.interpret.relevance import baseline_image, relevance_auc, relevance_curves, revealed_images
from invproto.iterators.optimization import build_optimizer
from invproto.iterators.part_prototype_push import NearestPatchSearch, push_prototypes
from invproto.iterators.part_prototypes import PartPrototypeIterator
from invproto.losses.part_prototypes import PartPrototypeLoss, cluster_cost, off_class_l1, separation_cost
from invproto.models.part_prototypes import PartPrototypeNet
from invproto.modules.distances import patch_distances

REPO = Path(__file__).resolve().parents[1]
SMALL_NET = {"in_channels": 3, "in_size": 32, "n_classes": 5, "features": [8, "M", 8, "M"],
             "prototypes_per_class": 3, "prototype_dim": 8}


@pytest.fixture(scope="module")
def sprites(make_config):
    config = make_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                         dataset_params={"size": 32, "n_train": 150, "n_validation": 10, "n_test": 10})
    data = SpritesTrain(config)
    batch = data.get_batch(np.arange(len(data)))
    return data, torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(batch["class"])


# --- distances, similarities, heads ---------------------------------------------------------------

@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_patch_distances_match_a_brute_force_loop(distance):
    z, prototypes = torch.rand(2, 3, 4, 5), torch.rand(6, 3, 2, 2)
    got = patch_distances(z, prototypes, distance)
    assert got.shape == (2, 6, 3, 4)
    for n, p, i, j in [(0, 0, 0, 0), (1, 5, 2, 3), (0, 3, 1, 2)]:
        patch, prototype = z[n, :, i:i + 2, j:j + 2].flatten(), prototypes[p].flatten()
        expected = ((patch - prototype) ** 2).sum() if distance == "l2" else 1 - F.cosine_similarity(
            patch, prototype, dim=0)
        torch.testing.assert_close(got[n, p, i, j], expected, atol=1e-5, rtol=1e-5)


def test_heads_and_similarities():
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    linear = PartPrototypeNet.from_params(**SMALL_NET)
    weight = linear.head_weight()
    assert weight.shape == (5, 15) and weight[2, 6:9].eq(1).all() and weight[2, :6].eq(-0.5).all()
    proto = PartPrototypeNet.from_params(**SMALL_NET, head="proto").eval()
    assert proto.head_parameters() == []
    output = proto(images)
    torch.testing.assert_close(output.logits, output.similarity.view(4, 5, 3).sum(2))
    d = output.min_distances
    torch.testing.assert_close(output.similarity, torch.log((d + 1) / (d + 1e-4)), rtol=1e-4, atol=1e-4)
    sparse = PartPrototypeNet.from_params(**SMALL_NET, head="sparse", similarity="linear", distance="cosine")
    assert sparse.head_weight()[0, 3:].eq(0).all() and sparse.head_weight()[0, :3].eq(1).all()
    output = sparse.eval()(images)
    torch.testing.assert_close(output.similarity, 1 - output.min_distances)
    with pytest.raises(InvprotoError, match="model_params.head must be one of linear, sparse, proto, got 'dense'"):
        PartPrototypeNet.from_params(**SMALL_NET, head="dense")


# --- losses ------------------------------------------------------------------------------------------

def test_cluster_separation_and_l1_on_a_hand_example():
    """Prototypes of classes [0, 0, 1, 1]; image 0 of class 0, image 1 of class 1.

    cluster = mean(min(1, 3), min(6, 2)) = 1.5; separation = mean(min(2, 5), min(4, 0.5)) = 1.25;
    the initial linear head has 4 off-class weights of -0.5: l1 = 2.
    """
    d = torch.tensor([[1.0, 3.0, 2.0, 5.0], [4.0, 0.5, 6.0, 2.0]])
    target, prototype_class = torch.tensor([0, 1]), torch.tensor([0, 0, 1, 1])
    weight = torch.tensor([[1.0, 1.0, -0.5, -0.5], [-0.5, -0.5, 1.0, 1.0]])
    assert float(cluster_cost(d, target, prototype_class)) == 1.5
    assert float(separation_cost(d, target, prototype_class)) == 1.25
    assert float(off_class_l1(weight, prototype_class)) == 2.0
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    loss, scalars = PartPrototypeLoss(cluster_weight=0.8, separation_weight=0.08, l1_weight=0.01)(
        logits, d, target, prototype_class, weight)
    cross_entropy = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert math.isclose(float(loss), cross_entropy + 0.8 * 1.5 - 0.08 * 1.25 + 0.01 * 2, rel_tol=1e-6)
    assert scalars["accuracy"] == 0.5 and scalars["cluster"] == 1.5


def test_parameter_groups_and_the_frozen_backbone_of_the_warm_up():
    """The iterator's own methods on an instance without edflow's state (only what they read is set)."""
    iterator = object.__new__(PartPrototypeIterator)
    iterator.model = PartPrototypeNet.from_params(**SMALL_NET)
    iterator.params = PartPrototypeIterator.Params(warmup_epochs=1, backbone_lr_multiple=0.1)
    iterator.loss = PartPrototypeLoss()
    backbone, add_on, prototypes = iterator.parameter_groups()
    assert backbone["lr_multiple"] == 0.1 and len(backbone["params"]) == len(list(iterator.model.backbone.parameters()))
    assert add_on.keys() == {"params"}
    optimizer = build_optimizer([backbone, add_on, prototypes], OptimizerParams(lr=1e-3))
    rates = [group["lr"] for group in optimizer.param_groups]
    assert rates == [pytest.approx(1e-4), 1e-3, 1e-3]
    assert prototypes == {"params": [iterator.model.prototypes, iterator.model.head_weights], "weight_decay": 0.0}
    batch = {"image": torch.rand(4, 3, 32, 32) * 2 - 1, "class": torch.tensor([0, 1, 2, 3])}
    for epoch, backbone_trains in ((0, False), (1, True)):
        iterator._epoch_step = epoch
        iterator.model.zero_grad(set_to_none=True)
        iterator.train_step(batch)[0].backward()
        assert all((p.grad is not None) == backbone_trains for p in iterator.model.backbone.parameters())
        assert iterator.model.prototypes.grad is not None and iterator.model.add_on[0].weight.grad is not None


# --- push ----------------------------------------------------------------------------------------------

def push(model, images, labels, duplicate_filter="sample", move=True, batch_size=40):
    batches = [(images[s:s + batch_size], labels[s:s + batch_size], torch.arange(s, min(s + batch_size, len(images))))
               for s in range(0, len(images), batch_size)]
    return push_prototypes(model, batches, lambda idx: images[torch.from_numpy(idx)], duplicate_filter, move)


@pytest.mark.parametrize("kernel", [1, 2])
def test_push_moves_each_prototype_exactly_onto_a_training_patch_of_its_class(sprites, kernel):
    _, images, labels = sprites
    torch.manual_seed(0)
    model = PartPrototypeNet.from_params(**SMALL_NET, prototype_kernel=kernel)
    before = model.prototypes.detach().clone()
    distance = push(model, images, labels)
    assert torch.isfinite(distance).all() and model.pushed.all() and not torch.equal(before, model.prototypes)
    model.eval()
    with torch.no_grad():
        for p in range(model.n_prototypes):
            source = int(model.push_source[p])
            assert labels[source] == model.prototype_class[p]
            output = model(images[source:source + 1])
            patch = int(output.nearest_patch[0, p])
            row, col = divmod(patch, model.field.cols.n_cells)
            latent = model.latent(images[source:source + 1])[0, :, row:row + kernel, col:col + kernel]
            torch.testing.assert_close(model.prototypes[p], latent, atol=1e-6, rtol=0)  # equality with the patch
            assert float(output.min_distances[0, p]) < 1e-5
            assert model.push_box[p].tolist() == model.field.boxes(torch.tensor(patch)).tolist()
            assert torch.equal(model.push_image[p], images[source])


def full_distance_matrix(model, images, labels) -> torch.Tensor:
    """``(P, N)`` distance of every prototype's nearest patch in every image; ``inf`` for other classes."""
    with torch.no_grad():
        d = model.eval()(images).min_distances.T
    return torch.where(labels[None, :] == model.prototype_class[:, None], d, torch.inf)


def test_duplicate_filter_sample_is_the_greedy_global_assignment(sprites):
    _, images, labels = sprites
    torch.manual_seed(1)
    model = PartPrototypeNet.from_params(**SMALL_NET)
    with torch.no_grad():
        model.prototypes[1:3] = model.prototypes[0]  # three identical prototypes of class 0
    d = full_distance_matrix(model, images, labels)
    nearest = d.argmin(dim=1)
    # brute force over the whole matrix: pairs by increasing distance, each prototype and image once
    expected, taken = {}, set()
    for index in d.flatten().argsort(stable=True).tolist():
        p, n = divmod(index, d.shape[1])
        if torch.isfinite(d[p, n]) and p not in expected and n not in taken:
            expected[p] = n
            taken.add(n)
    none = PartPrototypeNet.from_params(**SMALL_NET)
    none.load_state_dict(model.state_dict())
    push(none, images, labels, duplicate_filter="none", move=False)
    assert none.push_source.tolist() == nearest.tolist()
    assert len(set(none.push_source[:3].tolist())) == 1  # identical prototypes share their nearest image
    push(model, images, labels, duplicate_filter="sample", move=True)
    sources = model.push_source.tolist()
    assert sources == [expected[p] for p in range(model.n_prototypes)]
    assert len(set(sources)) == model.n_prototypes  # no two prototypes pushed from the same image


def test_nearest_patch_search_keeps_the_depth_nearest_per_prototype():
    search = NearestPatchSearch(n_prototypes=2, depth=2)

    class Output:
        def __init__(self, d):
            self.min_distances, self.nearest_patch = d, torch.zeros_like(d, dtype=torch.long)

    prototype_class = torch.tensor([0, 1])
    search.add(Output(torch.tensor([[3.0, 1.0], [2.0, 9.0]])), torch.tensor([0, 0]), torch.tensor([10, 11]),
               prototype_class)
    search.add(Output(torch.tensor([[1.0, 0.0], [4.0, 5.0]])), torch.tensor([0, 1]), torch.tensor([12, 13]),
               prototype_class)
    assert search.distance.tolist() == [[1.0, 2.0], [5.0, math.inf]]
    assert search.source[:, :1].tolist() == [[12], [13]] and search.source[0].tolist() == [12, 11]


def test_prototype_images_before_and_after_recording(sprites):
    _, images, labels = sprites
    model = PartPrototypeNet.from_params(**SMALL_NET)
    with pytest.raises(RuntimeError, match="no prototype images yet"):
        model.prototype_images()
    before = model.prototypes.detach().clone()
    push(model, images, labels, move=False)
    assert torch.equal(before, model.prototypes) and not model.pushed.any()
    pictures = model.prototype_images()
    assert pictures.shape == (15, 3, 32, 32)
    x0, y0, x1, y1 = model.push_box[0].tolist()
    source = images[int(model.push_source[0])]
    assert torch.equal(pictures[0, :, y0:y1, x0:x1], source[:, y0:y1, x0:x1])
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    torch.testing.assert_close(pictures[0][:, outside], (source[:, outside] + 1) * 0.35 - 1)


# --- relevance ordering ------------------------------------------------------------------------------------

def test_relevance_ordering_scores_the_true_order_above_the_reversed_one():
    """The 'prototype' is the mean of a 4 x 4 block of an 8 x 8 image of ones (16 of 64 pixels).

    Revealing the block first restores the similarity linearly over the first quarter of the
    pixels: AUC = 1 - 1/8 = 0.875; revealing it last gives 1/8 (steps of 4 pixels, exact).
    """
    block = torch.zeros(8, 8, dtype=torch.bool)
    block[2:6, 3:7] = True

    def similarity_fn(images: torch.Tensor) -> torch.Tensor:
        return images[:, 0][:, block].mean(1, keepdim=True)

    image = torch.ones(1, 8, 8)
    heatmaps = torch.stack([block.float(), 1 - block.float()])  # true order, reversed order
    assert revealed_images(image, heatmaps, torch.zeros(1, 8, 8), steps=16).shape == (2, 17, 1, 8, 8)
    curves = relevance_curves(similarity_fn, image, heatmaps, torch.tensor([0, 0]), baseline_image("zero", (1, 8, 8)),
                              steps=16)
    np.testing.assert_allclose(relevance_auc(curves), [0.875, 0.125], atol=1e-9)
    assert np.isnan(relevance_auc(torch.ones(1, 17)))[0]  # no gain: no score


# --- consistency and stability ------------------------------------------------------------------------------

def test_consistency_and_stability_on_a_hand_example():
    """Prototype 0 on images 0 and 1, prototype 1 on image 2; two parts.

    hits: p0 [1, 0], [1, 1]; p1 [0, 0] -> part rates p0 (1, 1/2), p1 (0, 0): consistency (1 + 0) / 2.
    noisy: image 1 loses part 0 -> p0 unchanged 1/2, Jaccard (1 + 1/2) / 2; p1 unchanged (both empty).
    """
    hits = np.array([[[1, 0]], [[1, 1]], [[0, 0]]], dtype=bool)
    noisy = np.array([[[1, 0]], [[0, 1]], [[0, 0]]], dtype=bool)
    slots = np.array([[0], [0], [1]])
    assert consistency(hits, slots, 2) == {"consistency": 0.5, "consistency_hard": 0.5}
    assert stability(hits, noisy, slots, 2) == {"stability": 0.75, "stability_soft": 0.875}


def test_consistency_and_stability_on_sprites_with_known_parts(sprites):
    data, images, labels = sprites
    keypoints = data.part_keypoints(np.arange(len(data)))
    assert keypoints.shape == (150, len(KEYPOINTS), 2)
    for i in range(20):  # the centre lies in the sprite; top/left are the first mask row/column
        mask = data.mask(i)
        x0, y0, x1, y1 = data.box(i)
        assert mask[keypoints[i, 0, 1], keypoints[i, 0, 0]]
        assert keypoints[i, 1].tolist() == [keypoints[i, 0, 0], y0]
        assert keypoints[i, 4].tolist() == [x1 - 1, keypoints[i, 0, 1]]
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centre = torch.from_numpy(keypoints[:, 0]).float()
    on_sprite = -((x - centre[:, 0, None, None]) ** 2 + (y - centre[:, 1, None, None]) ** 2)[:, None]  # (N, 1, H, W)
    in_corner = -(x ** 2 + y ** 2).expand(150, 1, 32, 32)
    slots = labels.numpy()[:, None]  # one prototype per class
    hits_sprite = parts_hit(peak_positions(on_sprite).numpy(), keypoints, radius=5)
    hits_corner = parts_hit(peak_positions(in_corner).numpy(), keypoints, radius=5)
    assert consistency(hits_sprite, slots, 5) == {"consistency": 1.0, "consistency_hard": 1.0}
    assert consistency(hits_corner, slots, 5) == {"consistency": 0.0, "consistency_hard": 0.0}
    assert stability(hits_sprite, hits_sprite, slots, 5) == {"stability": 1.0, "stability_soft": 1.0}
    moved = stability(hits_sprite, hits_corner, slots, 5)  # every region moves off the sprite
    assert moved == {"stability": 0.0, "stability_soft": 0.0}


# --- configs and the edflow pipeline ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashionmnist", "cifar", "sprites"])
def test_configs_pass_validation(name):
    validate_run_config(yaml.safe_load((REPO / "configs" / f"{name}_partproto.yaml").read_text()))


@pytest.mark.slow
def test_sprites_part_prototypes_train_push_and_evaluate_through_edflow(tmp_path):
    from edflow_runner import EdflowRunner

    runner = EdflowRunner(tmp_path)
    tiny = ["--dataset_params/n_train", "64", "--dataset_params/n_validation", "32", "--batch_size", "32",
            "--num_steps", "4", "--log_freq", "2", "--n_data_processes", "1", "--iterator_params/push_every", "0",
            "--iterator_params/last_layer_steps", "10", "--iterator_params/relevance_images_per_batch", "4"]
    result = runner("-b", "configs/sprites_partproto.yaml", "-t", *tiny, "-n", "parts")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invproto: nearest patches of 25 prototypes at step 2" in result.stdout  # epoch 1: no push yet
    assert "invproto: pushed 25 prototypes at step 4" in result.stdout  # the last epoch always pushes
    run = runner.run_dir("parts")
    for step in (2, 4):
        for picture in ("boxes.png", "heatmap_rf.png", "heatmap_upsample.png"):
            assert (run / "prototypes" / f"step-{step}" / picture).stat().st_size > 0
    state = torch.load(run / "train" / "checkpoints" / "model-4.ckpt", weights_only=True)
    assert state["model"]["pushed"].all() and len(set(state["model"]["push_source"].tolist())) == 25

    result = runner("-p", str(runner.train_config(run)), "--datasets/validation", "invproto.data.SpritesTest",
                    "--dataset_params/n_test", "32", "--n_data_processes", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())["final"]
    assert scores["dataset"] == "invproto.data.SpritesTest" and 0 <= scores["accuracy"] <= 1
    for mapping in ("rf", "upsample"):
        assert 0 <= scores[f"relevance_auc_{mapping}"] <= 1
        assert 0 <= scores[f"consistency_{mapping}"] <= 1 and 0 <= scores[f"stability_soft_{mapping}"] <= 1
    assert math.isclose(scores["relevance_rf_minus_upsample"],
                        scores["relevance_auc_rf"] - scores["relevance_auc_upsample"], abs_tol=1e-9)


def test_the_demo_shows_where_each_prototype_matched():
    """Explain view of part prototypes: heat map over the image and the box around its hottest 5 %."""
    from invproto.demo.views.prototypes import where_matched
    from invproto.pictures import top_share_box

    heat = torch.zeros(10, 10)
    heat[2:4, 5:8] = 1.0  # 6 of 100 pixels hot
    assert top_share_box(heat).tolist() == [5, 2, 8, 4]
    model = PartPrototypeNet.from_params(**SMALL_NET).eval()
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    nearest = torch.tensor([4, 0])
    with torch.no_grad():
        for mapping in ("rf", "upsample"):
            pictures = where_matched(model, image, nearest, mapping)
            assert pictures.shape == (2, 3, 32, 32) and pictures.min() >= -1 and pictures.max() <= 1
            heat = model.pixel_heatmaps(model(image).similarity_maps[:, nearest], mapping)[0]
            x0, y0, x1, y1 = top_share_box(heat[0]).tolist()
            red = (pictures[0, 0] > 0.99) & (pictures[0, 1] < -0.99) & (pictures[0, 2] < -0.99)
            assert red[y0, x0:x1].all() and red[y1 - 1, x0:x1].all()  # the box's top and bottom edges
