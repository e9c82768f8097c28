"""IIN / dIIN: losses, the frozen first stage, factor dimensionalities, configs, and a
ground-truth acceptance test on Sprites (known shape and colour factors)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import run_config

from invproto.callbacks.factor_dims import estimate_factor_dims
from invproto.config.run import prepare_run
from invproto.config.validation import validate_run_config
from invproto.errors import InvprotoError
from invproto.losses.iin import FactorLoss, IINLoss
from invproto.models.classifier import Classifier
from invproto.models.iin import IIN, FactorIIN

REPO = Path(__file__).resolve().parents[1]
SMALL_CLASSIFIER = {"in_channels": 3, "in_size": 16, "n_classes": 5, "n_down": 3, "base_channels": 8,
                    "code_dim": 16}


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """An invproto checkpoint as the base iterator writes it (model weights + describe)."""
    torch.save({"model": model.state_dict(), "describe": model.describe()}, path)
    return path


def first_stage(path: Path, **params) -> dict:
    return {"model": "invproto.models.classifier.Classifier", "model_params": {**SMALL_CLASSIFIER, **params},
            "checkpoint": str(path)}


# --- factor dimensionalities ----------------------------------------------------------------

def test_estimate_factor_dims_on_a_hand_computed_example():
    """D = 2, two named factors + residual.

    Pairs sharing factor 0 have equal codes (±1, 0): the four stacked codes of
    factor 0 are (1,0),(1,0),(-1,0),(-1,0); factor 1's pairs (0,1)/(0,-1) are
    anti-correlated. Over all 8 codes Var_0 = Var_1 = 0.5, V = 1.
    s_0 = mean[(1)(1), (-1)(-1)] = 1 on dim 0, 0 on dim 1 -> s_0 = 1 / V = 1;
    s_1 = mean[(1)(-1), (1)(-1)] = -1 -> s_1 = -1; s_residual = 1.
    p = softmax(1, -1, 1) = (e, 1/e, e) / (2e + 1/e) = (0.4683, 0.0634, 0.4683);
    N = (floor(0.937), floor(0.127), rest) = (0, 0, 2).
    With D = 64 instead (the same codes padded with 62 zero dimensions):
    N = (floor(29.97), floor(4.06), rest) = (29, 4, 31).
    """
    za = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    zb = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [0.0, -1.0]])
    factor = np.array([0, 0, 1, 1])
    assert estimate_factor_dims(za, zb, factor, n_factors=3) == [0, 0, 2]
    pad = np.zeros((4, 62))
    assert estimate_factor_dims(np.hstack([za, pad]), np.hstack([zb, pad]), factor, 3) == [29, 4, 31]


def test_estimate_factor_dims_needs_every_named_factor():
    z = np.random.default_rng(0).standard_normal((4, 8))
    with pytest.raises(ValueError, match="factor 1"):
        estimate_factor_dims(z, z, np.zeros(4, dtype=int), n_factors=3)


# --- losses --------------------------------------------------------------------------------------

def test_iin_loss_is_the_gaussian_nll_and_reports_bits_per_dim():
    z, log_det = torch.randn(10, 4), torch.randn(10)
    loss, scalars = IINLoss()(z, log_det)
    exact = -(torch.distributions.Normal(0, 1).log_prob(z).sum(1) + log_det).mean()
    assert math.isclose(float(loss) + 4 * 0.5 * math.log(2 * math.pi), float(exact), rel_tol=1e-5)
    assert math.isclose(scalars["nats_per_dim"], float(exact) / 4, rel_tol=1e-5)
    assert math.isclose(scalars["bits_per_dim"], scalars["nats_per_dim"] / math.log(2), rel_tol=1e-9)


def test_factor_loss_correlates_only_the_shared_factor():
    rho, z1, z2 = 0.9, torch.randn(3, 4), torch.randn(3, 4)
    shared = torch.tensor([[1.0, 1, 0, 0]] * 3)  # factor = dims 0, 1
    log_det1, log_det2 = torch.randn(3), torch.randn(3)
    expected = (0.5 * z1.pow(2).sum(1) - log_det1 + 0.5 * z2[:, 2:].pow(2).sum(1)
                + 0.5 * (z2[:, :2] - rho * z1[:, :2]).pow(2).sum(1) / (1 - rho ** 2) - log_det2)
    got = FactorLoss(rho).per_example(z1, z2, log_det1, log_det2, shared)
    torch.testing.assert_close(got, expected)
    with pytest.raises(InvprotoError, match="rho"):
        FactorLoss(1.0)


# --- models ---------------------------------------------------------------------------------

def test_iin_loads_a_frozen_first_stage(tmp_path):
    torch.manual_seed(0)
    classifier = Classifier.from_params(**SMALL_CLASSIFIER)
    path = save_checkpoint(classifier, tmp_path / "clf.ckpt")
    model = IIN.from_params(first_stage=first_stage(path), n_flow=2, hidden_dim=16)
    assert model.code_dim == 16 and not model.can_decode
    assert all(not p.requires_grad for p in model.first_stage.parameters())
    model.train()
    assert not model.first_stage.training and model.flow.training
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(model.codes(images), classifier.eval().encode(images))
    z, log_det = model(images)
    assert z.shape == (4, 16) and log_det.shape == (4,)
    assert "checkpoint" not in model.describe()["model_params"]["first_stage"]


def test_an_autoencoder_first_stage_gives_posterior_samples_when_a_generator_is_given(tmp_path):
    """As the IIN reference trains: codes mean + std * eps, drawn from the generator; a classifier has one code."""
    from invproto.models.autoencoder import Autoencoder

    torch.manual_seed(0)
    params = {"in_channels": 3, "in_size": 16, "n_down": 3, "base_channels": 4, "z_dim": 8}
    autoencoder = Autoencoder.from_params(**params)
    spec = {"model": "invproto.models.autoencoder.Autoencoder", "model_params": params,
            "checkpoint": str(save_checkpoint(autoencoder, tmp_path / "ae.ckpt"))}
    model = IIN.from_params(first_stage=spec, n_flow=2, hidden_dim=16)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    posterior = autoencoder.eval().encode(images)
    torch.testing.assert_close(model.codes(images), posterior.mean)

    sampled = model.codes(images, torch.Generator().manual_seed(3))
    eps = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sampled, posterior.mean + posterior.std * eps)
    assert not torch.allclose(sampled, posterior.mean)
    z, log_det = model(images, torch.Generator().manual_seed(3))
    torch.testing.assert_close((z, log_det), model.flow(sampled))

    classifier_path = save_checkpoint(Classifier.from_params(**SMALL_CLASSIFIER), tmp_path / "clf.ckpt")
    on_classifier = IIN.from_params(first_stage=first_stage(classifier_path), n_flow=2, hidden_dim=16)
    torch.testing.assert_close(on_classifier.codes(images, torch.Generator().manual_seed(3)),
                               on_classifier.codes(images))


def test_first_stage_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    path = save_checkpoint(Classifier.from_params(**SMALL_CLASSIFIER), tmp_path / "clf.ckpt")
    with pytest.raises(InvprotoError) as error:
        IIN.from_params(first_stage=first_stage(path, base_channels=4), n_flow=1, hidden_dim=8)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "'base_channels': 8" in message
    assert "'base_channels': 4" in message and "model_params.first_stage" in message
    with pytest.raises(InvprotoError, match="does not exist"):
        IIN.from_params(first_stage=first_stage(tmp_path / "missing.ckpt"), n_flow=1, hidden_dim=8)


def test_factor_sizes_chunk_or_config(tmp_path):
    path = save_checkpoint(Classifier.from_params(**{**SMALL_CLASSIFIER, "code_dim": 64}), tmp_path / "c.ckpt")
    spec = first_stage(path, code_dim=64)
    assert FactorIIN.from_params(first_stage=spec, n_flow=1, hidden_dim=8, n_factors=3).factor_sizes == [22, 22, 20]
    assert FactorIIN.from_params(first_stage=spec, n_flow=1, hidden_dim=8, n_factors=5).factor_sizes == [13] * 4 + [12]
    model = FactorIIN.from_params(first_stage=spec, n_flow=1, hidden_dim=8, factor_config=[22, 11, 31])
    mask = model.factor_mask(torch.tensor([1, 2]))
    assert mask[0].sum() == 11 and mask[0, 22:33].all() and mask[1, 33:].all() and mask[1].sum() == 31
    with pytest.raises(InvprotoError, match="adding up to the code size 64"):
        FactorIIN.from_params(first_stage=spec, n_flow=1, hidden_dim=8, factor_config=[22, 11, 30])
    with pytest.raises(InvprotoError, match="a run directory is read by the edflow command"):
        FactorIIN.from_params(first_stage=spec, n_flow=1, hidden_dim=8, factor_config="logs/*_cmnist_clf")


def test_swap_grid_decodes_through_an_autoencoder_first_stage(tmp_path):
    autoencoder = pytest.importorskip("invproto.models.autoencoder")
    params = {"in_channels": 3, "in_size": 16, "n_down": 3, "base_channels": 4, "z_dim": 8}
    ae = autoencoder.Autoencoder.from_params(**params)
    path = save_checkpoint(ae, tmp_path / "ae.ckpt")
    spec = {"model": "invproto.models.autoencoder.Autoencoder", "model_params": params, "checkpoint": str(path)}
    model = FactorIIN.from_params(first_stage=spec, n_flow=2, hidden_dim=8, factor_config=[3, 2, 3]).eval()
    assert model.can_decode
    targets, sources = torch.rand(3, 3, 16, 16) * 2 - 1, torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        grid = model.swap_grid(targets, sources, factor=1)
        # image i * n + j = decode(target i's z with factor 1 of source j)
        z_t, z_s = model(targets)[0], model(sources)[0]
        expected = ae.eval().decode(model.flow.inverse(torch.cat([z_t[2:3, :3], z_s[1:2, 3:5], z_t[2:3, 5:]], 1)))
    assert grid.shape == (9, 3, 16, 16)
    torch.testing.assert_close(grid[2 * 3 + 1], expected[0], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_iin_eval_step_decodes_seeded_samples_for_fid_only_with_a_decoder(tmp_path, monkeypatch):
    from edflow.custom_logging import run

    from invproto.callbacks.fid import fid_samples
    from invproto.iterators.iin import IINIterator
    from invproto.models.autoencoder import Autoencoder

    params = {"in_channels": 3, "in_size": 16, "n_down": 3, "base_channels": 4, "z_dim": 8}
    ae_path = save_checkpoint(Autoencoder.from_params(**params), tmp_path / "ae.ckpt")
    clf_path = save_checkpoint(Classifier.from_params(**SMALL_CLASSIFIER), tmp_path / "clf.ckpt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="iin_unit")

    def iterator(spec: dict) -> IINIterator:
        config = {"model": "invproto.models.iin.IIN", "iterator": "invproto.iterators.iin.IINIterator",
                  "datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
                  "batch_size": 4, "num_steps": 1, "seed": 0,
                  "model_params": {"first_stage": spec, "n_flow": 2, "hidden_dim": 8}}
        return IINIterator(config, run.root, IIN(config), num_epochs=1, hook_freq=1,
                           datasets={"train": [], "validation": []})

    images = torch.rand(3, 3, 16, 16) * 2 - 1
    ae_spec = {"model": "invproto.models.autoencoder.Autoencoder", "model_params": params, "checkpoint": str(ae_path)}
    decoding = iterator(ae_spec)
    with torch.inference_mode():
        first = decoding.eval_step({"image": images, "index_": torch.tensor([0, 1, 2])})
        again = decoding.eval_step({"image": images[[2, 0]], "index_": torch.tensor([2, 0])})
    assert first["sample"].shape == (3, 16, 16, 3) and first["sample"].dtype == np.uint8
    np.testing.assert_array_equal(again["sample"], first["sample"][[2, 0]])  # seeded by example index
    assert first["nats_per_dim"].shape == (3,)

    # training codes: posterior samples keyed by (seed, step, rank) by default, the means with train_codes: mode
    batch = {"image": images, "index_": torch.tensor([0, 1, 2])}
    with torch.no_grad():
        loss_at_0 = decoding.train_step(batch)[0]
        torch.testing.assert_close(decoding.train_step(batch)[0], loss_at_0)  # the same step draws the same codes
        decoding.set_global_step(1)
        assert not torch.allclose(decoding.train_step(batch)[0], loss_at_0)
        decoding.params.train_codes = "mode"
        on_means = decoding.loss(*decoding.model(images))[0]
        torch.testing.assert_close(decoding.train_step(batch)[0], on_means)
        assert not torch.allclose(on_means, loss_at_0)

    without_decoder = iterator(first_stage(clf_path))
    with torch.inference_mode():
        outputs = without_decoder.eval_step({"image": images, "index_": torch.tensor([0, 1, 2])})
    assert "sample" not in outputs
    root = tmp_path / "eval" / "7"
    root.mkdir(parents=True)
    data_out = type("Outputs", (), {"labels": outputs})()
    config = {"datasets": {"validation": "invproto.data.SpritesValidation"}}
    assert fid_samples(str(root), None, data_out, config) == {"scalars": {}}


# --- configs -------------------------------------------------------------------------------

OWN_CONFIGS = ["cmnist_clf", "sprites_clf", "sprites_diin", "mnist_iin", "mnist_iin_cpu", "fashionmnist_iin",
               "cifar_iin", "celeba_iin", "cmnist_diin", "celeba_diin", "cmnist_clf_diin"]


@pytest.mark.parametrize("name", OWN_CONFIGS)
def test_configs_pass_validation(name):
    validate_run_config(yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("base, overlay", [("cmnist_clf", "cmnist_dimeval"), ("cmnist_ae", "cmnist_dimeval"),
                                           ("sprites_clf", "sprites_dimeval"),
                                           ("sprites_ae_cpu", "sprites_dimeval")])
def test_dimeval_overlays_pass_validation_on_classifier_and_autoencoder_configs(base, overlay):
    """edflow's -b merge is shallow: the overlay replaces whole top-level keys."""
    base_path = REPO / "configs" / f"{base}.yaml"
    if not base_path.is_file():
        pytest.skip(f"{base_path.name} not written yet")
    config = {**yaml.safe_load(base_path.read_text()),
              **yaml.safe_load((REPO / "configs" / f"{overlay}.yaml").read_text())}
    validate_run_config(config)


# --- acceptance: ground truth on Sprites -------------------------------------------------------

N_COLORS = 6


def sprite_data(n_train: int, n_validation: int) -> dict:
    """16 px Sprites (shape and colour pairs): single-image train/validation splits and pair splits."""
    from invproto.data import SpritesPairsTrain, SpritesPairsValidation, SpritesTrain, SpritesValidation

    config = run_config("invproto.data.SpritesTrain", "invproto.data.SpritesValidation",
                        dataset_params={"size": 16, "n_train": n_train, "n_validation": n_validation,
                                        "n_test": 1, "pair_factors": ["shape", "color"]})
    prepare_run(config)
    return {"train": SpritesTrain(config), "validation": SpritesValidation(config),
            "pairs_train": SpritesPairsTrain(config), "pairs_validation": SpritesPairsValidation(config)}


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def train_classifier(dataset, label: str, n_classes: int, steps: int, seed: int) -> Classifier:
    """A small classifier on ``label`` (``shape``, or ``joint`` = shape x colour), Adam, batch 64."""
    torch.manual_seed(seed)
    model = Classifier.from_params(**{**SMALL_CLASSIFIER, "n_classes": n_classes})
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = dataset.get_batch(rng.choice(len(dataset), 64, replace=False))
        target = batch["shape"] * N_COLORS + batch["color"] if label == "joint" else batch[label]
        loss = F.cross_entropy(model(nchw(batch["image"])), torch.from_numpy(target))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def pair_arrays(dataset, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    examples = [dataset.get_example(i) for i in range(n)]
    stack = lambda key: np.stack([e[key] for e in examples])  # noqa: E731
    return nchw(stack("image1")), nchw(stack("image2")), torch.from_numpy(stack("factor"))


@pytest.fixture(scope="module")
def sprites():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return sprite_data(n_train=4000, n_validation=1000)


@pytest.mark.slow
def test_shape_classifier_gives_shape_more_dimensions_than_colour(sprites):
    """A shape classifier's code varies with shape, hardly with colour: the estimate must say so."""
    classifier = train_classifier(sprites["train"], "shape", 5, steps=300, seed=0)
    images1, images2, factor = pair_arrays(sprites["pairs_validation"], 1000)
    with torch.no_grad():
        za, zb = classifier.encode(images1), classifier.encode(images2)
    shape_dims, color_dims, residual_dims = estimate_factor_dims(za.numpy(), zb.numpy(), factor.numpy(), 3)
    assert shape_dims + color_dims + residual_dims == 16
    assert shape_dims > color_dims, (shape_dims, color_dims)


@pytest.mark.slow
def test_diin_colour_swap_changes_colour_and_keeps_shape(sprites, tmp_path):
    """Train a dIIN on a shape x colour classifier's codes and swap factors between two sprites.

    The first stage's own head (30 classes, marginalised) is the probe. Swapping
    the colour factor of sprite b into sprite a must make the decoded code read
    as b's colour far more often than swapping the shape factor does, while the
    shape stays a's; swapping the shape factor must carry b's shape over (shape
    judged relative to how often the head reads a's shape from its unswapped code).
    """
    classifier = train_classifier(sprites["train"], "joint", 5 * N_COLORS, steps=1600, seed=1)
    path = save_checkpoint(classifier, tmp_path / "joint.ckpt")
    images1, images2, factor = pair_arrays(sprites["pairs_validation"], 1000)
    with torch.no_grad():
        za, zb = classifier.encode(images1), classifier.encode(images2)
    dims = estimate_factor_dims(za.numpy(), zb.numpy(), factor.numpy(), 3)
    model = FactorIIN.from_params(first_stage=first_stage(path, n_classes=5 * N_COLORS), n_flow=4,
                                  hidden_depth=1, hidden_dim=64, factor_config=dims)
    train1, train2, train_factor = pair_arrays(sprites["pairs_train"], 3000)
    codes1, codes2 = model.codes(train1), model.codes(train2)
    loss_fn, optimizer = FactorLoss(0.975), torch.optim.Adam(model.flow.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(600):
        index = torch.from_numpy(rng.choice(len(codes1), 128, replace=False))
        (z1, log_det1), (z2, log_det2) = model.flow(codes1[index]), model.flow(codes2[index])
        loss, _ = loss_fn(z1, z2, log_det1, log_det2, model.factor_mask(train_factor[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    validation = sprites["validation"]
    batch = validation.get_batch(np.arange(len(validation)))
    a, b = np.arange(0, 500), np.arange(500, 1000)
    differ = (batch["shape"][a] != batch["shape"][b]) & (batch["color"][a] != batch["color"][b])
    a, b = a[differ], b[differ]
    with torch.no_grad():
        codes = classifier.encode(nchw(batch["image"]))
        z_a, z_b = model.flow(codes[a])[0], model.flow(codes[b])[0]

        def read(factor_index: int) -> tuple[np.ndarray, np.ndarray]:
            """(shape, colour) the head reads from a's code with factor ``factor_index`` of b."""
            logits = classifier.head(model.flow.inverse(model.swap_factor(z_a, z_b, factor_index)))
            joint = logits.log_softmax(1).view(-1, 5, N_COLORS)
            return joint.logsumexp(2).argmax(1).numpy(), joint.logsumexp(1).argmax(1).numpy()

        baseline_shape = classifier.head(codes[a]).view(-1, 5, N_COLORS).logsumexp(2).argmax(1).numpy()
        shape_after_shape_swap, colour_after_shape_swap = read(0)
        shape_after_colour_swap, colour_after_colour_swap = read(1)
    colour_from_b = (colour_after_colour_swap == batch["color"][b]).mean()
    colour_from_b_control = (colour_after_shape_swap == batch["color"][b]).mean()
    shape_kept = (shape_after_colour_swap == batch["shape"][a]).mean()
    shape_from_b = (shape_after_shape_swap == batch["shape"][b]).mean()
    shape_read = (baseline_shape == batch["shape"][a]).mean()
    report = dict(dims=dims, shape_read_unswapped=shape_read, colour_from_b=colour_from_b,
                  control=colour_from_b_control, shape_kept=shape_kept, shape_from_b=shape_from_b)
    print(report)
    assert colour_from_b > 0.5 and colour_from_b > colour_from_b_control + 0.3, report
    assert shape_kept > 0.6 * shape_read, report
    assert shape_from_b > 0.6 * shape_read, report


# --- the pipeline through the real edflow CLI ------------------------------------------------

@pytest.mark.slow
def test_sprites_classifier_dimeval_and_diin_through_edflow(tmp_path):
    """sprites_clf (-t) -> sprites_dimeval overlay (-c, no -t) -> sprites_diin (-t) on that checkpoint."""
    from edflow_runner import EdflowRunner

    runner = EdflowRunner(tmp_path)
    small = ["--dataset_params/n_train", "256", "--dataset_params/n_validation", "64", "--batch_size", "32",
             "--num_steps", "8", "--log_freq", "4", "--n_data_processes", "1"]
    result = runner("-b", "configs/sprites_clf.yaml", "-t", *small, "--model_params/base_channels", "16", "-n", "clf")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = runner.run_dir("clf") / "train" / "checkpoints" / "model-8.ckpt"

    result = runner("-b", "configs/sprites_clf.yaml", "configs/sprites_dimeval.yaml", "-c", str(checkpoint),
                    *small, "-n", "dimeval")
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("estimated factor dimensionalities:"))
    dims = yaml.safe_load(line.split(":", 1)[1])
    assert len(dims) == 3 and sum(dims) == 64 and min(dims) >= 0

    result = runner("-b", "configs/sprites_diin.yaml", "-t", *small, "--model_params/n_flow", "2",
                    "--model_params/hidden_dim", "32", "--model_params/first_stage/checkpoint", str(checkpoint),
                    "-n", "diin")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "invproto: likelihood at step 8 on invproto.data.SpritesPairsValidation" in result.stdout
    scores = yaml.safe_load((runner.run_dir("diin") / "results" / "scores.yaml").read_text())["final"]
    assert math.isfinite(scores["bits_per_dim"]) and math.isclose(
        scores["bits_per_dim"], scores["nats_per_dim"] / math.log(2), rel_tol=1e-6)


@pytest.mark.slow
def test_a_cmnist_classifier_records_factor_dims_after_every_epoch(tmp_path):
    """configs/cmnist_clf.yaml validates on digit/colour pairs: accuracy on their first images, and factor
    dimensionalities of the code after each epoch, without the dimeval overlay; a dIIN then reads them."""
    from edflow_runner import EdflowRunner

    runner = EdflowRunner(tmp_path)
    result = runner("-b", "configs/cmnist_clf.yaml", "-t", "--model_params/base_channels", "4", "--batch_size", "256",
                    "--num_epochs", "2", "--data/validation_size", "256", "--optimizer/warmup_steps", "0",
                    "--log_freq", "1000", "-n", "cmnist_clf")
    assert result.returncode == 0, result.stderr[-3000:]
    run = runner.run_dir("cmnist_clf")
    scores = yaml.safe_load((run / "results" / "scores.yaml").read_text())
    assert len(scores["per_epoch"]) == 2
    for entry in scores["per_epoch"]:
        dims = [entry[f"factor_dim_{k}"] for k in range(3)]
        assert sum(dims) == 64 and min(dims) >= 0 and 0 <= entry["accuracy"] <= 1
        assert entry["dataset"] == "invproto.data.ColorfulMNISTValidation"
    assert "factor_dim_0" in (run / "metrics.csv").read_text().splitlines()[0]

    # the dIIN names that run as its first stage and factor sizes (invproto.config.chaining)
    result = runner("-b", "configs/cmnist_clf_diin.yaml", "-t", "--model_params/factor_config", str(run),
                    "--model_params/n_flow", "2", "--model_params/hidden_dim", "16", "--batch_size", "32",
                    "--num_steps", "2", "--data/validation_size", "64", "--log_freq", "1", "-n", "diin")
    assert result.returncode == 0, result.stderr[-3000:]
    saved = yaml.safe_load(EdflowRunner.train_config(runner.run_dir("diin")).read_text())["model_params"]
    last = scores["per_epoch"][-1]
    assert saved["factor_config"] == [last[f"factor_dim_{k}"] for k in range(3)]
    checkpoint = (runner.workdir / saved["first_stage"]["checkpoint"]).resolve()  # logs/*_cmnist_clf: relative
    assert checkpoint.parent.parent.parent == run.resolve() and checkpoint.is_file()
    assert saved["first_stage"]["model_params"]["base_channels"] == 4
