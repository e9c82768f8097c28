"""Datasets are checked when built: labels against n_classes, image shapes against the model, unreadable paths.

Each failure is one line (a :class:`~invproto.errors.DataError`) raised at
construction -- before the first step -- and a fresh edflow run directory is
removed. Expected counts come from a dataset built without a model to check
against, independently of the checks.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import numpy as np
import pytest

from invproto.data import ColorfulMNISTTrain, MNISTTrain, SpritesPairsTrain, SpritesTrain, SpritesValidation
from invproto.data.checks import DatasetMismatchError, check_labels
from invproto.data.root import CorruptDataError, DataNotFoundError, UnreadableDataError
from invproto.data.splits import split_indices
from invproto.errors import ConfigError, DataError

CLASSIFIER = "invproto.models.classifier.Classifier"  # Params: in_channels=1, in_size=28, n_classes=10
SMALL = {"size": 16, "n_train": 300, "n_validation": 40, "n_test": 40}
IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def sprites_config(make_config, model_params=None, pairs=False, **sections):
    prefix = "invproto.data.SpritesPairs" if pairs else "invproto.data.Sprites"
    model = {} if model_params is None else {"model": CLASSIFIER, "model_params": model_params}
    return make_config(f"{prefix}Train", f"{prefix}Validation", dataset_params=SMALL, **model, **sections)


def test_data_errors_are_data_errors_not_exits():
    for error in (DataNotFoundError, CorruptDataError, UnreadableDataError, DatasetMismatchError):
        assert issubclass(error, DataError) and not issubclass(error, SystemExit)
    assert str(DataNotFoundError("invproto: x missing")) == "x missing"


def test_labels_outside_n_classes_name_the_dataset_values_counts_and_fix(make_config):
    labels = SpritesTrain(sprites_config(make_config)).labels["class"]  # no model: nothing checked
    counts = np.bincount(labels, minlength=5)
    assert counts[3] > 0 and counts[4] > 0
    with pytest.raises(DatasetMismatchError) as error:
        SpritesTrain(sprites_config(make_config, {"in_channels": 3, "in_size": 16, "n_classes": 3}))
    message = str(error.value)
    assert "\n" not in message
    for part in ("datasets.train (invproto.data.SpritesTrain)", f"{counts[3] + counts[4]} of 300 labels",
                 "outside [0, 3) of model_params.n_classes=3", f"label 3 x {counts[3]}", f"label 4 x {counts[4]}",
                 "set model_params.n_classes: 5"):
        assert part in message, part


@pytest.mark.parametrize("n_classes", [5, 12])
def test_labels_inside_n_classes_pass(n_classes, make_config):
    dataset = SpritesValidation(sprites_config(make_config, {"in_channels": 3, "in_size": 16,
                                                             "n_classes": n_classes}))
    assert len(dataset) == 40


def test_negative_labels_are_called_corrupt():
    with pytest.raises(DatasetMismatchError, match=r"labels must be >= 0") as error:
        check_labels("dataset X", np.array([0, -1, -1, 2]), 3)
    assert "2 of 4 labels outside [0, 3)" in str(error.value) and "label -1 x 2" in str(error.value)


def test_channels_checked_against_the_models_default_in_channels(make_config):
    """No in_channels in the config: the Classifier's default 1 is what the model builds; RGB sprites don't fit."""
    with pytest.raises(DatasetMismatchError) as error:
        SpritesTrain(sprites_config(make_config, {"in_size": 16, "n_classes": 5}))
    message = str(error.value)
    assert "\n" not in message
    for part in ("datasets.train (invproto.data.SpritesTrain)", "(C, H, W) = (3, 16, 16)", "expects (1, 16, 16)",
                 "model_params.in_channels=1", "set model_params.in_channels: 3 and model_params.in_size: 16"):
        assert part in message, part


def test_image_size_mismatch_names_both_shapes(make_config):
    with pytest.raises(DatasetMismatchError, match=re.escape("(C, H, W) = (3, 16, 16) but the model expects "
                                                             "(3, 28, 28)")) as error:
        SpritesTrain(sprites_config(make_config, {"in_channels": 3, "n_classes": 5}))
    assert "model_params.in_size: 16" in str(error.value)


def test_pair_datasets_check_their_first_image(make_config):
    with pytest.raises(DatasetMismatchError, match=re.escape("datasets.train (invproto.data.SpritesPairsTrain) "
                                                             "gives images of shape (C, H, W) = (3, 16, 16)")):
        SpritesPairsTrain(sprites_config(make_config, {"in_channels": 3, "in_size": 32, "n_classes": 5},
                                         pairs=True))


def test_colourised_examples_are_checked_not_the_grayscale_arrays(make_config, shared_data):
    """ColorfulMNIST stores 1-channel digits and colours them on access: the model sees 3 channels."""
    def config(in_channels):
        return make_config("invproto.data.ColorfulMNISTTrain", "invproto.data.ColorfulMNISTValidation",
                           model=CLASSIFIER, model_params={"in_channels": in_channels, "in_size": 32},
                           data={"root": str(shared_data), "validation_size": 1000})

    with pytest.raises(DatasetMismatchError, match=re.escape("(C, H, W) = (3, 32, 32) but the model expects "
                                                             "(1, 32, 32)")):
        ColorfulMNISTTrain(config(1))
    assert ColorfulMNISTTrain(config(3)).arrays.images.shape[-1] == 1


def start_run(tmp_path: Path) -> Path:
    from edflow.custom_logging import run

    run.init(log_dir=str(tmp_path / "logs"), code_root=None, postfix="data_checks")
    return Path(run.root)


def test_a_mismatch_removes_the_fresh_run_directory(tmp_path, make_config):
    root = start_run(tmp_path)
    assert root.is_dir()
    with pytest.raises(DatasetMismatchError):
        SpritesTrain(sprites_config(make_config, {"in_channels": 3, "in_size": 16, "n_classes": 2}))
    assert not root.exists()


def test_missing_data_removes_the_fresh_run_directory(tmp_path, make_config):
    root = start_run(tmp_path)
    config = make_config("invproto.data.MNISTTrain", "invproto.data.MNISTValidation",
                         data={"root": str(tmp_path / "empty")})
    with pytest.raises(DataNotFoundError):
        MNISTTrain(config)
    assert not root.exists()


def mnist_config(make_config, root: Path) -> dict:
    return make_config("invproto.data.MNISTTrain", "invproto.data.MNISTValidation", data={"root": str(root)})


def fake_mnist(tmp_path: Path) -> Path:
    """Empty files with MNIST's names: enough to be found; reading them is what the tests intercept."""
    (tmp_path / "mnist").mkdir()
    for name in IDX_NAMES:
        (tmp_path / "mnist" / name).write_bytes(b"")
    return tmp_path


def test_a_file_as_dataset_root_is_one_line(tmp_path, make_config):
    root = tmp_path / "data"
    root.write_text("not a folder")
    with pytest.raises(UnreadableDataError, match=re.escape(f"the dataset root {root} is a file, not a folder")):
        MNISTTrain(mnist_config(make_config, root))


def test_a_file_where_the_dataset_folder_belongs_is_named(tmp_path, make_config):
    (tmp_path / "mnist").write_text("not a folder")
    with pytest.raises(DataNotFoundError, match=re.escape(f"{tmp_path / 'mnist'} is a file, not a folder")):
        MNISTTrain(mnist_config(make_config, tmp_path))


def test_permission_denied_on_a_file_is_one_line_naming_it(tmp_path, make_config, monkeypatch):
    root = fake_mnist(tmp_path)
    denied = root / "mnist" / "train-images-idx3-ubyte.gz"
    read_bytes = Path.read_bytes

    def guarded(self):
        if self == denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    with pytest.raises(UnreadableDataError) as error:
        MNISTTrain(mnist_config(make_config, root))
    message = str(error.value)
    assert message.startswith(f"cannot read {denied}: Permission denied; give this user read access")
    assert "download it again" not in message and "\n" not in message


def test_permission_denied_on_a_folder_is_one_line_naming_it(tmp_path, make_config, monkeypatch):
    """What a mode-000 folder does for a non-root user: ``Path.is_file`` of a file inside raises EACCES."""
    root = fake_mnist(tmp_path)
    is_file = Path.is_file

    def guarded(self):
        if self.parent == root / "mnist":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(Path, "is_file", guarded)
    with pytest.raises(UnreadableDataError, match=re.escape(f"cannot read {root / 'mnist'}/")) as error:
        MNISTTrain(mnist_config(make_config, root))
    assert "for MNISTTrain: Permission denied; give this user read access" in str(error.value)


def test_permission_denied_on_a_cifar_batch_is_not_called_corrupt(tmp_path, monkeypatch):
    from invproto.data import cifar

    def denied(path, mode="r"):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(cifar, "open", denied, raising=False)
    with pytest.raises(UnreadableDataError, match=re.escape(f"cannot read {tmp_path / 'data_batch_1'} for "
                                                            "CIFAR-10: Permission denied")):
        cifar.read_batch(tmp_path / "data_batch_1")


def test_a_bad_validation_size_is_a_config_error():
    with pytest.raises(ConfigError, match=re.escape("data.validation_size=100 must be in [0, 100)")):
        split_indices(100, 100, 0)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["n_classes", "root is a file"])
def test_the_cli_stops_in_one_line_before_training_without_debris(problem, tmp_path):
    from edflow_runner import EdflowRunner

    runner = EdflowRunner(tmp_path / "work")
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("not a folder")
    args = {"n_classes": ["--model_params/n_classes", "5"],
            "root is a file": ["--data/root", str(not_a_folder)]}[problem]
    result = runner("-b", "configs/mnist_clf.yaml", "-t", *args, "-n", "bad_data")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    expected = {"n_classes": "invproto: datasets.train (invproto.data.MNISTTrain) has 26878 of 55000 labels "
                             "outside [0, 5) of model_params.n_classes=5 (label 5 x 4932,",
                "root is a file": f"invproto: the dataset root {not_a_folder} is a file, not a folder"}[problem]
    assert last_line.startswith(expected), last_line
    assert not runner.runs("bad_data"), "the failed run left a log directory behind"
