"""prototypeDL: the loss terms by hand, the model's shapes and prototype classes, configs, and a real
edflow train + test-split evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from edflow_runner import SHARED_DATA, EdflowRunner

from invproto.config.validation import validate_run_config
from invproto.errors import InvprotoError
from invproto.losses.protodl import ProtoDLLoss, data_to_prototype, prototype_to_data, reconstruction_error
from invproto.models.protodl import ProtoDL, encoder_sizes

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(**params) -> ProtoDL:
    """4 px images, two blocks (4 -> 2 -> 1 px): a 2-d latent."""
    return ProtoDL.from_params(**{"in_channels": 1, "in_size": 4, "n_classes": 3, "channels": [3, 2],
                                  "n_prototypes": 2, **params})


# --- loss terms ---------------------------------------------------------------------------------

def test_r1_r2_on_a_toy_batch():
    """Latents (0, 0), (3, 4); prototypes (0, 1), (3, 0).

    Squared distances: image 0 -> (1, 9), image 1 -> (18, 16); per dimension (L = 2) half that.
    R1 = mean over prototypes of the nearest image = mean(0.5, 4.5) = 2.5;
    R2 = mean over images of the nearest prototype = mean(0.5, 8) = 4.25.
    """
    model = tiny_model()
    with torch.no_grad():
        model.prototypes.copy_(torch.tensor([[0.0, 1.0], [3.0, 0.0]]))
    distances = model.prototype_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    torch.testing.assert_close(distances, torch.tensor([[0.5, 4.5], [9.0, 8.0]]))
    assert float(prototype_to_data(distances)) == 2.5
    assert float(data_to_prototype(distances)) == 4.25


def test_reconstruction_error_is_squared_l2_on_the_unit_intensity_scale():
    images = -torch.ones(2, 1, 2, 2)  # black in [-1, 1], 0 in [0, 1]
    reconstruction = images.clone()
    reconstruction[0] = 1.0  # image 0 all white: 4 pixels off by 1 -> 4
    reconstruction[1, 0, 0, 0] = 0.0  # image 1: one pixel off by 0.5 -> 0.25
    assert float(reconstruction_error(reconstruction, images)) == pytest.approx((4 + 0.25) / 2)


def test_loss_weights_its_four_terms():
    torch.manual_seed(0)
    images, target = torch.rand(4, 1, 4, 4) * 2 - 1, torch.tensor([0, 1, 2, 0])
    output = tiny_model()(images)
    loss, scalars = ProtoDLLoss(class_weight=20, reconstruction_weight=2, r1_weight=3, r2_weight=4)(
        output, images, target)
    expected = (20 * F.cross_entropy(output.logits, target) + 2 * reconstruction_error(output.reconstruction, images)
                + 3 * prototype_to_data(output.distances) + 4 * data_to_prototype(output.distances))
    torch.testing.assert_close(loss, expected)
    assert set(scalars) == {"cross_entropy", "reconstruction", "r1", "r2", "accuracy"}


# --- model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", ["upconv", "deconv"])
@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3)])
def test_autoencoder_shapes(decoder, size, channels):
    model = ProtoDL.from_params(in_channels=channels, in_size=size, channels=[4, 4, 4, 2], n_prototypes=5,
                                decoder=decoder)
    assert encoder_sizes(28, 4) == [28, 14, 7, 4, 2] and model.latent_dim == 2 * 2 * 2
    images = torch.rand(3, channels, size, size) * 2 - 1
    output = model(images)
    assert output.latent.shape == (3, 8) and output.distances.shape == (3, 5) and output.logits.shape == (3, 10)
    assert output.reconstruction.shape == images.shape
    prototypes = model.prototype_images()
    assert prototypes.shape == (5, channels, size, size) and prototypes.abs().max() <= 1
    explanation = model.explain(images)
    torch.testing.assert_close(explanation.similarity, -output.distances)
    torch.testing.assert_close(explanation.logits, output.logits)


def test_logits_read_negative_distances_and_prototype_class_is_the_largest_weight():
    model = tiny_model()
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[0.5, -2.0], [1.5, -1.0], [-3.0, 0.1]]))  # (classes, prototypes)
        model.classifier.bias.zero_()
    assert model.prototype_class.tolist() == [1, 2]
    distances = torch.tensor([[1.0, 4.0]])  # logits = W (-d) + b
    torch.testing.assert_close(model.classifier(-distances), torch.tensor([[7.5, 2.5, 2.6]]))


def test_bad_decoder_is_refused_in_one_line():
    with pytest.raises(InvprotoError, match="model_params.decoder must be one of upconv, deconv"):
        tiny_model(decoder="pixelshuffle")


def test_a_few_steps_fit_a_batch():
    """Loss and all its terms go down when training on one batch (the gradients reach every part)."""
    torch.manual_seed(0)
    model = ProtoDL.from_params(channels=[8, 8, 8, 4], n_prototypes=6)
    images, target = torch.rand(32, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (32,))
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), 2e-3), ProtoDLLoss()
    first = None
    for _ in range(40):
        loss, scalars = loss_fn(model(images), images, target)
        first = first or scalars
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(scalars[k] < first[k] for k in ("cross_entropy", "reconstruction", "r1", "r2")), (first, scalars)



# --- configs and a real run -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist_protodl", "fashionmnist_protodl", "cifar_protodl"])
def test_configs_pass_validation(name):
    validate_run_config(yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()))


QUICK_PROTODL = ["--batch_size", "64", "--data/validation_size", "256", "--optimizer/warmup_steps", "0",
                 "--log_freq", "50", "--num_steps", "100", "--model_params/channels", "[16, 16, 16, 8]",
                 "--iterator_params/augment_shift", "1"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="needs ../shared/data")
def test_edflow_trains_protodl_and_evaluates_it_on_the_test_split(tmp_path):
    runner = EdflowRunner(tmp_path)
    run = runner.train("configs/mnist_protodl.yaml", "protodl", *QUICK_PROTODL)
    checkpoint = run / "train" / "checkpoints" / "model-100.ckpt"
    _, scores = runner.evaluate(run, "-c", str(checkpoint), "--datasets/validation", "invproto.data.MNISTTest")
    final = scores["final"]
    assert final["dataset"] == "invproto.data.MNISTTest" and final["step"] == 100
    assert 0.4 < final["accuracy"] <= 1.0, "100 steps should be well above chance (0.1)"
    assert 0 <= final["dead_prototypes"] < 30 and 0 <= final["prototype_class_agreement"] <= 1
    assert scores["per_epoch"][-1]["dataset"] == "invproto.data.MNISTValidation"
    optimizer = torch.load(checkpoint, weights_only=True)["optimizer"]
    rest, classifier = optimizer["param_groups"]
    assert classifier["initial_lr"] == pytest.approx(10 * rest["initial_lr"]) and len(classifier["params"]) == 2
    logged = run / "train" / "train" / "log_op"
    assert any(logged.glob("prototypes_*.png")) and any(logged.glob("reconstructions_*.png"))

