"""A run's model with a checkpoint's weights, and its validation images -- loaded safely, cached.

Nothing in a checkpoint or a config is executed: the model class is the
``invproto.`` import path in the run's saved config (code of this repository,
:func:`code_class`; a config naming any import path outside ``invproto.`` is
refused before anything is imported, :attr:`Run.config`),
built from the config's ``model_params``, and the weights are read by
:func:`invproto.models.base.load_checkpoint` (``torch.load(weights_only=True)``,
refusing a checkpoint of another model). Models load on the CPU unless the page
is started with another ``--device``. Every failure is a one-line
:class:`~invproto.demo.kinds.LoadError`, which the page shows in an error box.

The ``cached_*`` functions keep loaded models and datasets across page
interactions and sessions (``st.cache_resource``); a rewritten checkpoint file
(another modification time) is loaded afresh.
"""

from __future__ import annotations

import copy
from pathlib import Path

import streamlit as st
from edflow.data.dataset_mixin import DatasetMixin

from invproto.demo.kinds import LoadError, code_class, first_line
from invproto.demo.runs import Run
from invproto.errors import InvprotoError
from invproto.models.base import Model, load_checkpoint

FIRST_STAGE_KEYS = ("first_stage", "network", "autoencoder")  # model_params sections naming a frozen first stage


def model_params(run: Run) -> dict:
    """The run's ``model_params``; a relative first-stage checkpoint path (``first_stage``, ``network``,
    ``autoencoder``) that does not exist from here is taken relative to the directory edflow ran in (the
    parent of ``logs/``)."""
    params = run.config.get("model_params") or {}
    if not isinstance(params, dict):
        raise run.problem(run.config_file, f"has model_params that are not a mapping (a {type(params).__name__})")
    params = copy.deepcopy(params)
    for key in FIRST_STAGE_KEYS:
        first_stage = params.get(key)
        if isinstance(first_stage, dict) and first_stage.get("checkpoint"):
            path = Path(first_stage["checkpoint"])
            if not path.is_absolute() and not path.exists():
                first_stage["checkpoint"] = str(run.project_dir / path)
    return params


def load_model(run: Run, checkpoint: Path, device: str = "cpu") -> Model:
    """Build the run's model from its config and load ``checkpoint`` into it; eval mode, on ``device``."""
    cls = code_class(run.config.get("model"), Model, "model")
    params = model_params(run)
    try:
        model = cls({"model_params": params})
    except Exception as error:  # an InvprotoError, or whatever odd parameters of a shared run make it raise
        raise LoadError(f"cannot build {run.model} from the config of {run.name}: {first_line(error)}") from None
    try:
        state = load_checkpoint(checkpoint, model, "checkpoint", "pick another checkpoint of this run",
                                map_location=device)
        model.load_state_dict(state["model"])
    except InvprotoError as error:  # a CheckpointError: missing, unreadable or of another model
        raise LoadError(first_line(error)) from None
    except (KeyError, RuntimeError) as error:
        raise LoadError(f"checkpoint {checkpoint} does not fit {run.model} ({type(error).__name__}: "
                        f"{first_line(error)}); pick another checkpoint of this run") from None
    return model.to(device).eval()


def dataset_config(run: Run, import_path: str) -> dict:
    """The config that builds dataset ``import_path`` as the run did (its ``data``, ``dataset_params``, ``seed``,
    ``batch_size``), in the form ``edexplore`` builds one dataset with: only the dataset's keys are validated,
    not the run's model or iterator (which may be code the demo does not have)."""
    return {"dataset": import_path, **{key: copy.deepcopy(run.config[key])
                                      for key in ("data", "dataset_params", "seed", "batch_size") if key in run.config}}


def load_validation_dataset(run: Run) -> DatasetMixin:
    """The run's validation split (``datasets.validation``), built as in training."""
    import_path = run.datasets.get("validation")
    cls = code_class(import_path, DatasetMixin, "dataset")
    try:
        return cls(dataset_config(run, import_path))
    except Exception as error:  # an InvprotoError (missing data, ...), or any other failure of the dataset
        raise LoadError(f"cannot load the validation images {import_path}: {first_line(error)} "
                        f"(the data root is data.root, else $INVPROTO_DATA, else ./data)") from None


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def cached_model(run_path: str, checkpoint: str, modified_ns: int, device: str) -> Model:
    """:func:`load_model`, cached per run, checkpoint (and its modification time) and device."""
    return load_model(Run(Path(run_path)), Path(checkpoint), device)


@st.cache_resource(max_entries=4, show_spinner="Loading the validation images ...")
def cached_validation_dataset(run_path: str) -> DatasetMixin:
    """:func:`load_validation_dataset`, cached per run."""
    return load_validation_dataset(Run(Path(run_path)))
