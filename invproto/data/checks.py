"""What every invproto dataset checks when it is built, before the first step.

Every dataset class (:class:`~invproto.data.base.ImageDataset` and
:class:`~invproto.data.celeba.CelebA`, with all their subclasses) is built by
the metaclass :class:`CheckedDataset`, which

1. runs the construction inside :func:`~invproto.config.run.abort_cleanly`, so
   a data error leaves no fresh run directory behind;
2. turns an ``OSError`` escaping from it (permission denied, a file where a
   folder belongs, an I/O error) into one line naming the path
   (:func:`~invproto.data.root.unreadable`);
3. checks the finished dataset against the run config's ``model_params``,
   whose model defaults are filled in (:func:`~invproto.config.run.prepare_run`):

   * labels: every ``class`` label lies in ``[0, n_classes)`` when the model
     has ``n_classes`` (labels are in memory: one pass over an int array);
   * image shape: example 0's image (``image``, or ``image1`` of a pair) is
     ``(in_channels, in_size, in_size)`` as ``(C, H, W)`` when the model has
     ``in_channels`` / ``in_size``.

Either mismatch would otherwise fail mid-training with a traceback. The checks
run once per constructed dataset, after the outermost ``__init__`` returned
(subclasses set attributes after ``super().__init__``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from invproto.config.run import abort_cleanly, prepare_run
from invproto.data.root import unreadable
from invproto.errors import DataError


class DatasetMismatchError(DataError):
    """A dataset whose labels or images do not fit the configured model."""


class CheckedDataset(type):
    """Metaclass of invproto's datasets: build inside ``abort_cleanly``, then :func:`check_fits_model`."""

    def __call__(cls, *args, **kwargs):
        config = kwargs.get("config", args[0] if args else None)
        with abort_cleanly():
            try:
                dataset = super().__call__(*args, **kwargs)
            except OSError as error:
                raise unreadable(error, cls.__name__) from None
            if isinstance(config, Mapping):
                check_fits_model(dataset, config)
        return dataset


def check_fits_model(dataset: Any, config: Mapping) -> None:
    """Raise :class:`DatasetMismatchError` when ``dataset`` does not fit ``config``'s model (see module doc)."""
    model_params = prepare_run(config).get("model_params")
    if not model_params:  # edexplore's configs have no model
        return
    name = dataset_name(dataset, config)
    if "n_classes" in model_params:
        labels = (getattr(dataset, "labels", None) or {}).get("class")
        if labels is not None:
            check_labels(name, np.asarray(labels), int(model_params["n_classes"]))
    expected = {key: int(model_params[key]) for key in ("in_channels", "in_size") if key in model_params}
    if expected and len(dataset) > 0:
        example = dataset.get_example(0)
        image = example.get("image", example.get("image1"))
        if image is not None:
            check_image_shape(name, tuple(np.shape(image)), expected)


def dataset_name(dataset: Any, config: Mapping) -> str:
    """``datasets.<split> (<import path>)`` of the config entry that names the dataset's class, else the class."""
    cls = type(dataset)
    for split, path in (config.get("datasets") or {}).items():
        if isinstance(path, str) and path.rpartition(".")[2] == cls.__name__:
            return f"datasets.{split} ({path})"
    return f"dataset {cls.__module__}.{cls.__qualname__}"


def check_labels(name: str, labels: np.ndarray, n_classes: int) -> None:
    """Every label in ``[0, n_classes)``, or one line naming the offending values, their counts and the fix."""
    outside = (labels < 0) | (labels >= n_classes)
    if not outside.any():
        return
    values, counts = np.unique(labels[outside], return_counts=True)
    shown = ", ".join(f"label {v} x {c}" for v, c in list(zip(values.tolist(), counts.tolist()))[:5])
    more = f", ... ({len(values)} values)" if len(values) > 5 else ""
    if labels.min() < 0:
        fix = "labels must be >= 0: the dataset's label files are corrupt, replace them"
    else:
        fix = (f"set model_params.n_classes: {int(labels.max()) + 1} (this dataset's labels go up to "
               f"{int(labels.max())}) or use a dataset with {n_classes} classes")
    raise DatasetMismatchError(
        f"{name} has {int(outside.sum())} of {len(labels)} labels outside [0, {n_classes}) of "
        f"model_params.n_classes={n_classes} ({shown}{more}); {fix}")


def check_image_shape(name: str, hwc: tuple[int, ...], expected: dict[str, int]) -> None:
    """An ``(H, W, C)`` example image against ``in_channels`` / ``in_size``; one line with both shapes and the fix."""
    if len(hwc) != 3:
        raise DatasetMismatchError(f"{name} gives images of shape {hwc}, not (H, W, C); "
                                   "use a dataset of images")
    height, width, channels = hwc
    channels_ok = expected.get("in_channels", channels) == channels
    size_ok = expected.get("in_size", height) == height and (height == width or "in_size" not in expected)
    if channels_ok and size_ok:
        return
    wanted = (expected.get("in_channels", "C"), expected.get("in_size", "H"), expected.get("in_size", "W"))
    set_keys = {"in_channels": channels, "in_size": height}
    fix = " and ".join(f"model_params.{key}: {set_keys[key]}" for key in expected)
    square = "" if height == width else f"; the model takes square images, resize them to {height}x{height}"
    raise DatasetMismatchError(
        f"{name} gives images of shape (C, H, W) = ({channels}, {height}, {width}) but the model expects "
        f"({', '.join(str(w) for w in wanted)}) "
        f"({', '.join(f'model_params.{key}={value}' for key, value in expected.items())}); "
        f"set {fix} to fit this dataset, or use a dataset of {wanted[0]}x{wanted[1]}x{wanted[2]} images{square}")
