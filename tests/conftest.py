"""Shared fixtures: where the real test data lives and a minimal valid run config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_config(train: str, validation: str, **sections) -> dict:
    """A minimal run config that passes invproto's validation.

    The model and iterator are edflow/torch classes without parameters, so
    dataset tests do not depend on the rest of the package. ``sections`` adds or
    replaces top-level keys (``data``, ``dataset_params``, ...); ``data.download``
    is off unless a test turns it on: tests never download.
    """
    config = {
        "model": "torch.nn.Identity",
        "iterator": "edflow.iterators.template_iterator.TemplateIterator",
        "datasets": {"train": train, "validation": validation},
        "batch_size": 8,
        "num_steps": 1,
        **sections,
    }
    config["data"] = {"download": False, **(config.get("data") or {})}
    return config


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST and Fashion-MNIST files (``../shared/data``); skip when absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real test data not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def make_config():
    """:func:`run_config` as a fixture."""
    return run_config


@pytest.fixture(autouse=True)
def fresh_edflow_run():
    """Give every in-process test its own edflow run directory.

    edflow's ``run`` singleton ignores ``run.init`` once it is initialised, so a
    test would otherwise reuse (and, on a ``SystemExit`` inside
    ``abort_cleanly``, delete) the run directory of an earlier test.
    """
    yield
    custom_logging = sys.modules.get("edflow.custom_logging")
    if custom_logging is not None:
        custom_logging.run.exists = False


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module of tiny tensors: extra threads only add contention on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
