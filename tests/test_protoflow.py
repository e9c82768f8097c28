"""Prototype flows: the loss and bits/dim, the latent model on a real autoencoder, the iterator
(optimizer groups, k-means init, evaluation, test-time augmentation) and a real
``edflow -t`` / ``edflow -p`` run of configs/sprites_protoflow.yaml."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import run_config

from invproto.config.validation import validate_run_config
from invproto.data.augment import augment
from invproto.errors import InvprotoError
from invproto.iterators.prototype_revival import PrototypeRevival
from invproto.losses.protoflow import ProtoFlowLoss, bits_per_dim, conditional_bits_per_dim, marginal_log_likelihood
from invproto.models.autoencoder import Autoencoder
from invproto.models.protoflow import LatentPrototypeFlow
from invproto.modules.gaussian_mixture import ClassGaussianMixtures

REPO = Path(__file__).resolve().parents[1]
SPRITES_AE = {"in_channels": 3, "in_size": 32, "n_down": 4, "base_channels": 8, "z_dim": 16}
AE_PATH = "invproto.models.autoencoder.Autoencoder"


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """An invproto checkpoint as the base iterator writes it (model weights + describe)."""
    torch.save({"model": model.state_dict(), "describe": model.describe()}, path)
    return path


def sprites(split: str, n: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Sprites of ``split``: ``(n, 3, size, size)`` images in [-1, 1] and ``(n,)`` shape labels."""
    from invproto.config.run import prepare_run
    from invproto.data import SpritesTrain, SpritesValidation

    config = run_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                        dataset_params={"size": size, "n_train": n, "n_validation": n, "n_test": 1})
    prepare_run(config)
    dataset = {"train": SpritesTrain, "validation": SpritesValidation}[split](config)
    batch = dataset.get_batch(np.arange(n))
    return torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(batch["class"])


def train_sprites_autoencoder(path: Path, steps: int = 100) -> Path:
    """A small Sprites VAE (L1 of a posterior sample's reconstruction + 1e-3 KL), saved as an invproto checkpoint."""
    torch.manual_seed(0)
    images, _ = sprites("train", 512)
    model = Autoencoder.from_params(**SPRITES_AE)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = images[rng.choice(len(images), 64, replace=False)]
        posterior = model.encode(batch)
        loss = F.l1_loss(model.decode(posterior.sample()), batch) + 1e-3 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(model.eval(), path)


@pytest.fixture(scope="module")
def ae_checkpoint(tmp_path_factory) -> Path:
    """The trained autoencoder's checkpoint; torch uses one thread in this module (small tensors, shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield train_sprites_autoencoder(tmp_path_factory.mktemp("ae") / "sprites_ae.ckpt")
    torch.set_num_threads(threads)


def latent_flow(checkpoint: Path, **params) -> LatentPrototypeFlow:
    spec = {"model": AE_PATH, "model_params": SPRITES_AE, "checkpoint": str(checkpoint)}
    return LatentPrototypeFlow.from_params(**{"first_stage": spec, "n_classes": 5, "protos_per_class": 2,
                                              "n_flow": 2, "hidden_dim": 16, **params})


# --- bits/dim and the loss ------------------------------------------------------------------------

def test_bits_per_dim_of_a_known_density():
    """One class, one component N(0, I) in D = 4 dims, at z = 0: log p = -(D/2) ln(2 pi), so
    bits/dim = log2(2 pi) / 2 = 1.3257; a log_det of -D ln 2 (a 2x expansion per dim) adds 1 bit/dim."""
    head = ClassGaussianMixtures(1, 1, 4, init_std=0.0)
    log_p = head.class_log_prob(torch.zeros(1, 4)).detach()
    assert math.isclose(float(bits_per_dim(log_p[:, 0], 4)), math.log2(2 * math.pi) / 2, rel_tol=1e-6)
    assert math.isclose(float(bits_per_dim(log_p[:, 0] - 4 * math.log(2), 4)), math.log2(2 * math.pi) / 2 + 1,
                        rel_tol=1e-6)


def test_marginal_bits_per_dim_is_the_uniform_class_mixture():
    """Two classes N(-1, 1) and N(+1, 1) in 1-d: p(x) = (N(x; -1, 1) + N(x; 1, 1)) / 2 at x = 0.3."""
    class_log_likelihood = torch.tensor([[-0.5 * (1.3 ** 2) - 0.5 * math.log(2 * math.pi),
                                          -0.5 * (0.7 ** 2) - 0.5 * math.log(2 * math.pi)]], dtype=torch.float64)
    density = 0.5 * (math.exp(-0.5 * 1.3 ** 2) + math.exp(-0.5 * 0.7 ** 2)) / math.sqrt(2 * math.pi)
    assert math.isclose(float(marginal_log_likelihood(class_log_likelihood)), math.log(density), rel_tol=1e-12)
    assert math.isclose(float(bits_per_dim(marginal_log_likelihood(class_log_likelihood), 1)),
                        -math.log2(density), rel_tol=1e-12)


def test_protoflow_loss_terms():
    torch.manual_seed(0)
    scores, class_ll, target = torch.randn(6, 3), torch.randn(6, 3) - 50, torch.tensor([0, 1, 2, 0, 1, 2])
    second_view = torch.randn(6, 3)
    loss_fn = ProtoFlowLoss(ce_weight=0.5, nll_weight=2.0, consistency_weight=3.0, consistency_rampup_steps=100,
                            diversity_weight=0.1)
    loss, scalars = loss_fn(scores, class_ll, target, dims=8, step=25, diversity=torch.tensor(0.4),
                            second_view_scores=second_view)
    nll = -class_ll[torch.arange(6), target].mean() / (math.log(2) * 8)
    consistency = -class_ll[torch.arange(6), second_view.argmax(1)].mean() / (math.log(2) * 8)
    expected = 0.5 * F.cross_entropy(scores, target) + 2.0 * nll + 3.0 * 0.25 * consistency + 0.1 * 0.4
    assert math.isclose(float(loss), float(expected), rel_tol=1e-6)
    assert math.isclose(scalars["consistency_weight"], 0.75) and math.isclose(scalars["nll_bits_per_dim"], float(nll),
                                                                               rel_tol=1e-6)
    assert loss_fn.consistency_ramp(0) == 0 and loss_fn.consistency_ramp(500) == 1
    torch.testing.assert_close(conditional_bits_per_dim(class_ll, target, 8), -class_ll[torch.arange(6), target]
                               / (math.log(2) * 8))
    without_view, scalars = loss_fn(scores, class_ll, target, 8, 25, torch.tensor(0.4))
    assert "consistency" not in scalars
    assert math.isclose(float(without_view), float(expected - 3.0 * 0.25 * consistency), rel_tol=1e-6)


def test_augment_shifts_each_image_within_bounds_and_flips():
    images = torch.full((64, 1, 9, 9), -1.0)
    images[:, 0, 4, 4] = 1.0  # one bright pixel in the centre
    shifted = augment(images, max_shift=2, flip=False, generator=torch.Generator().manual_seed(0))
    rows, cols = (shifted[:, 0] == 1).nonzero()[:, 1:].T
    assert len(rows) == 64 and (rows - 4).abs().max() == 2 and (cols - 4).abs().max() == 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets differ between images
    assert torch.equal(augment(images, 0, False), images)
    ramp = torch.arange(4.0).expand(32, 1, 4, 4)
    flipped = augment(ramp, 0, flip=True, generator=torch.Generator().manual_seed(0))
    mirrored = (flipped == ramp.flip(3)).flatten(1).all(1)
    assert 5 < int(mirrored.sum()) < 27 and ((flipped == ramp).flatten(1).all(1) | mirrored).all()


# --- the latent model -------------------------------------------------------------------------------

def test_latent_flow_scores_explains_and_decodes_exactly(ae_checkpoint):
    torch.manual_seed(0)
    model = latent_flow(ae_checkpoint, reduction="max").eval()
    images, _ = sprites("validation", 8)
    with torch.no_grad():
        z, log_det = model.latent(images)
        class_ll, log_det_again = model.class_log_likelihood(images)
        explanation = model.explain(images)
        autoencoder = Autoencoder.from_params(**SPRITES_AE)
        autoencoder.load_state_dict(torch.load(ae_checkpoint)["model"])
        # decode inverts latent: decode(latent(x)) is the autoencoder's reconstruction of x
        torch.testing.assert_close(model.decode(z), autoencoder.eval()(images), atol=1e-4, rtol=0)
        torch.testing.assert_close(model.prototype_images(), model.decode(model.head.means.flatten(0, 1)))
    assert z.shape == (8, 16) and model.data_dims == 16
    torch.testing.assert_close(class_ll, model.head.class_log_prob(z) + log_det[:, None])
    torch.testing.assert_close(log_det_again, log_det)
    torch.testing.assert_close(explanation.logits, model.head.class_log_prob(z, "max"))
    assert explanation.similarity.shape == (8, 10) and model.prototype_class.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert model.prototype_samples(3).shape == (10, 3, 3, 32, 32)


def test_first_stage_learns_only_from_the_auxiliary_loss_when_trained(ae_checkpoint):
    images, labels = sprites("validation", 8)
    frozen = latent_flow(ae_checkpoint).train()
    assert frozen.auxiliary_loss(images, labels) is None and not frozen.first_stage.training
    assert not any(p.requires_grad for p in frozen.first_stage.parameters())

    model = latent_flow(ae_checkpoint, train_first_stage=True).train()
    assert model.first_stage.training
    z, log_det = model.latent(images)
    assert not z.requires_grad or all(p.grad is None for p in model.first_stage.parameters())
    (model.head.class_log_prob(z) + log_det[:, None]).sum().backward()
    assert all(p.grad is None for p in model.first_stage.parameters())  # the density never moves the code
    loss, scalars = model.auxiliary_loss(images, labels)
    loss.backward()
    assert model.first_stage.network.encoder.net[0].weight.grad.abs().sum() > 0
    assert model.first_stage.network.decoder.net[0].weight.grad.abs().sum() > 0
    assert set(scalars) == {"first_stage_ce", "reconstruction_l1"}


def test_a_first_stage_that_cannot_decode_is_refused(tmp_path):
    from invproto.models.classifier import Classifier

    params = {"in_channels": 3, "in_size": 16, "n_classes": 5, "n_down": 3, "base_channels": 4, "code_dim": 8}
    path = save_checkpoint(Classifier.from_params(**params), tmp_path / "clf.ckpt")
    spec = {"model": "invproto.models.classifier.Classifier", "model_params": params, "checkpoint": str(path)}
    with pytest.raises(InvprotoError, match="cannot decode"):
        LatentPrototypeFlow.from_params(first_stage=spec, n_flow=1, hidden_dim=8)
    with pytest.raises(InvprotoError, match="reduction"):
        latent_flow(path.with_name("unused"), reduction="mean")


# --- the iterator ------------------------------------------------------------------------------------

def iterator_config(checkpoint: Path, **iterator_params) -> dict:
    return {
        "model": "invproto.models.protoflow.LatentPrototypeFlow",
        "iterator": "invproto.iterators.protoflow.ProtoFlowIterator",
        "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
        "batch_size": 32, "num_steps": 10, "seed": 0,
        "model_params": {"first_stage": {"model": AE_PATH, "model_params": SPRITES_AE, "checkpoint": str(checkpoint)},
                         "n_classes": 5, "protos_per_class": 2, "n_flow": 2, "hidden_dim": 16},
        "iterator_params": {"head_lr_multiple": 50.0, "augment_shift": 2, "kmeans_batches": 2, **iterator_params},
        "optimizer": {"lr": 1e-3, "weight_decay": 1e-4},
    }


@pytest.fixture
def make_iterator(tmp_path, monkeypatch):
    """``ProtoFlowIterator`` s in a scratch edflow run on 64 real Sprites (environment restored afterwards)."""
    from edflow.custom_logging import run

    from invproto.iterators.protoflow import ProtoFlowIterator

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="protoflow_unit")
    images, labels = sprites("train", 64)
    examples = [{"image": image.permute(1, 2, 0).numpy(), "class": int(label)} for image, label in zip(images, labels)]

    def make(config: dict) -> ProtoFlowIterator:
        torch.manual_seed(0)
        return ProtoFlowIterator(config, run.root, LatentPrototypeFlow(config), num_epochs=1, hook_freq=1,
                                 datasets={"train": examples, "validation": examples})

    return make


def test_head_has_its_own_learning_rate_and_no_weight_decay(make_iterator, ae_checkpoint):
    iterator = make_iterator(iterator_config(ae_checkpoint))
    backbone, head = iterator.optimizer.param_groups
    assert backbone["lr"] == 1e-3  # optimizer.lr
    assert {id(p) for p in head["params"]} == {id(p) for p in iterator.model.head.parameters()}
    assert head["lr"] == pytest.approx(50.0 * 1e-3) and head["weight_decay"] == 0.0 and backbone["weight_decay"] == 1e-4
    assert {id(p) for p in backbone["params"]} == {id(p) for p in iterator.model.flow.parameters()}

    config = iterator_config(ae_checkpoint)
    config["model_params"]["train_first_stage"] = True
    backbone, _ = make_iterator(config).optimizer.param_groups
    assert len(backbone["params"]) == len(list(iterator.model.flow.parameters())) + len(
        list(iterator.model.first_stage.parameters()))


def test_kmeans_init_runs_at_step_zero_only(make_iterator, ae_checkpoint):
    iterator = make_iterator(iterator_config(ae_checkpoint))
    images, labels = sprites("train", 64)
    batch = {"image": images[:32], "class": labels[:32]}
    random_means = iterator.model.head.means.detach().clone()
    iterator.set_global_step(0)
    iterator.train_step(batch)
    kmeans_means = iterator.model.head.means.detach().clone()
    assert not torch.equal(kmeans_means, random_means)
    with torch.no_grad():  # the k-means means are centroids of the class's training latents
        z = iterator.model.latent(images)[0]
    for c in range(5):
        lower, upper = z[labels == c].min(0).values, z[labels == c].max(0).values
        assert ((kmeans_means[c] >= lower - 1e-4) & (kmeans_means[c] <= upper + 1e-4)).all()
    iterator.set_global_step(5)
    iterator.train_step(batch)
    assert torch.equal(iterator.model.head.means.detach(), kmeans_means)  # no optimizer step ran in between


def test_eval_step_bits_per_dim_and_test_time_augmentation(make_iterator, ae_checkpoint):
    images, labels = sprites("validation", 16)
    batch = {"image": images, "class": labels, "index_": torch.arange(16)}
    iterator = make_iterator(iterator_config(ae_checkpoint))
    with torch.inference_mode():
        out = iterator.eval_step(batch)
        z, log_det = iterator.model.latent(images)
    # exact log p(x) under the uniform class prior, from torch.distributions' own mixture
    head = iterator.model.head.requires_grad_(False)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=(head.log_weights() - math.log(5)).flatten()),
        torch.distributions.Independent(torch.distributions.Normal(head.means.flatten(0, 1),
                                                                   head.variance.flatten(0, 1).sqrt()), 1))
    expected = -(mixture.log_prob(z) + log_det) / (math.log(2) * 16)
    np.testing.assert_allclose(out["bits_per_dim"], expected.numpy(), rtol=1e-4)
    assert set(out) >= {"logits", "target", "prototype", "prototype_class", "n_prototypes"}

    tta = make_iterator(iterator_config(ae_checkpoint, tta_num=3))
    with torch.inference_mode():
        first, second = tta.eval_step(batch), tta.eval_step(batch)
    np.testing.assert_array_equal(first["logits"], second["logits"])  # reproducible views
    assert not np.allclose(first["logits"], out["logits"])
    np.testing.assert_allclose(first["bits_per_dim"], out["bits_per_dim"])  # density of the image itself


def test_revival_counts_own_class_usage_and_moves_dead_prototypes_at_window_ends():
    """Class 0's codes all sit on component 0, so component 1 is dead; class 1 uses both and keeps them."""
    head = ClassGaussianMixtures(2, 2, 3)
    with torch.no_grad():
        head.means.copy_(torch.tensor([[[0.0, 0, 0], [50, 0, 0]], [[0, 10, 0], [0, -10, 0]]]))
        head.log_var.zero_()
    revival = PrototypeRevival(head, every=3, min_share=0.1, pool_size=40)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        labels = torch.tensor([0] * 10 + [1] * 10)
        centres = torch.cat([torch.zeros(10, 3), head.means[1].detach().repeat(5, 1)])
        revival.observe(centres + 0.1 * torch.randn(20, 3, generator=generator), labels)
    np.testing.assert_array_equal(revival.usage.numpy(), [[30, 0], [15, 15]])
    assert sum(len(c) for c in revival.codes) == 40  # the pool keeps the last 40 codes
    class_1 = head.means[1].detach().clone()

    assert revival.maybe_revive(2) == 0 and revival.usage.sum() == 60  # not a window end
    assert revival.maybe_revive(3) == 1
    pool, pool_labels = torch.cat(revival.codes), torch.cat(revival.labels)
    assert head.means[0, 1].norm() < 1 and any(torch.equal(head.means[0, 1], z) for z in pool[pool_labels == 0])
    assert torch.equal(head.means[1].detach(), class_1)
    assert revival.usage.sum() == 0  # counts restart with the next window
    off = PrototypeRevival(head, every=0, min_share=0.1, pool_size=40)  # 0: never, and nothing is kept
    off.observe(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    assert off.maybe_revive(3) == 0 and off.usage.sum() == 0 and not off.codes


def test_iterator_revives_prototypes_during_training(make_iterator, ae_checkpoint):
    """With every prototype but the most used one of each class below min_share, a window end moves them."""
    iterator = make_iterator(iterator_config(ae_checkpoint, revive_every=2, revive_min_share=0.6))
    images, labels = sprites("train", 64)
    for step in range(2):
        iterator.set_global_step(step)
        iterator.optimize(iterator.train_step({"image": images[:32], "class": labels[:32]})[0])
    means = iterator.model.head.means.detach().clone()
    usage = iterator.revival.usage.clone()
    iterator.set_global_step(2)
    iterator.train_step({"image": images[32:], "class": labels[32:]})
    moved = (iterator.model.head.means.detach() != means).any(dim=2)
    torch.testing.assert_close(moved, iterator.revival.dead(usage))
    assert moved.any()


def test_views_are_required_for_consistency_and_tta(make_iterator, ae_checkpoint):
    with pytest.raises(InvprotoError, match="augment_shift"):
        make_iterator(iterator_config(ae_checkpoint, augment_shift=0, tta_num=2))


# --- configs and the real CLI ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashionmnist", "cifar", "cmnist", "sprites"])
def test_configs_pass_validation(name):
    validate_run_config(yaml.safe_load((REPO / "configs" / f"{name}_protoflow.yaml").read_text()))


@pytest.mark.slow
def test_sprites_protoflow_through_edflow(tmp_path, ae_checkpoint):
    """edflow -t (wrong first stage: one line; then a real run) and edflow -p with test-time augmentation."""
    from edflow_runner import EdflowRunner

    runner = EdflowRunner(tmp_path)
    runner.env["OMP_NUM_THREADS"] = "1"  # 2 shared cores: torch's thread pool would only spin
    small = ["--dataset_params/n_train", "128", "--dataset_params/n_validation", "32", "--batch_size", "32",
             "--num_steps", "8", "--log_freq", "4", "--n_data_processes", "1", "--model_params/n_flow", "2",
             "--model_params/hidden_dim", "32", "--iterator_params/kmeans_batches", "4",
             "--iterator_params/nearest_pool", "64", "--iterator_params/n_nearest", "3",
             "--iterator_params/n_prototype_samples", "3", "--loss/params/consistency_rampup_steps", "4",
             "--model_params/first_stage/checkpoint", str(ae_checkpoint), "--model_params/first_stage/model", AE_PATH,
             *[option for key in ("in_channels", "in_size", "n_down")
               for option in (f"--model_params/first_stage/model_params/{key}", str(SPRITES_AE[key]))]]
    first_stage = [f"--model_params/first_stage/model_params/{key}" for key in ("base_channels", "z_dim")]

    result = runner("-b", "configs/sprites_protoflow.yaml", "-t", *small, first_stage[0], "8", first_stage[1], "32",
                    "-n", "wrong")
    last_line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "Traceback" not in result.stderr and not runner.runs("wrong")
    assert last_line.startswith("invproto: model_params.first_stage.checkpoint") and "'z_dim': 16" in last_line

    result = runner("-b", "configs/sprites_protoflow.yaml", "-t", *small, first_stage[0], "8", first_stage[1], "16",
                    "-n", "pf")
    assert result.returncode == 0, result.stderr[-3000:]
    run = runner.run_dir("pf")
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())
    for key in ("accuracy", "bits_per_dim", "dead_prototypes", "ece", "prototype_class_agreement"):
        assert math.isfinite(scores["final"][key]), key
    assert [entry["step"] for entry in scores["per_epoch"]] == [4, 8]
    for step in (4, 8):
        for name in ("means", "samples", "nearest"):
            assert (run / "prototypes" / f"step-{step}" / f"{name}.png").stat().st_size > 0

    result = runner("-p", str(run), "--iterator_params/tta_num", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = yaml.safe_load((run / "results" / "scores.yaml").read_text())["evaluations"][-1]
    assert evaluation["step"] == 8 and math.isfinite(evaluation["accuracy"])
    assert math.isclose(evaluation["bits_per_dim"], scores["final"]["bits_per_dim"], rel_tol=1e-5)
