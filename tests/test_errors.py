"""One exception hierarchy (invproto.errors); the edflow entry turns it into one line (invproto.compat)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from invproto import compat, config, errors
from invproto.config import run as run_module
from invproto.config import validation
from invproto.fid.image_sets import InputError
from invproto.fid.weights import WeightsError

PACKAGE = Path(errors.__file__).parent


def test_every_error_is_an_invproto_error_with_an_exit_status():
    for kind in (errors.ConfigError, errors.DataError, errors.CheckpointError, errors.RunError,
                 InputError, WeightsError):
        assert issubclass(kind, errors.InvprotoError) and not issubclass(kind, SystemExit)
    assert issubclass(InputError, errors.DataError) and issubclass(WeightsError, errors.CheckpointError)
    assert errors.InvprotoError.exit_status == 1
    assert errors.TrainingStopped("stopped by SIGTERM", 143).exit_status == 143
    assert str(errors.ConfigError("invproto: key 'x' is wrong")) == "key 'x' is wrong"


def test_config_error_is_the_one_of_the_hierarchy():
    assert config.ConfigError is validation.ConfigError is errors.ConfigError


def test_no_system_exit_is_raised_outside_the_command_line_entry():
    """Only compat's command_errors ends the process (with the error's exit status)."""
    found = [path.relative_to(PACKAGE).as_posix() for path in sorted(PACKAGE.rglob("*.py"))
             if re.search(r"raise SystemExit\(", path.read_text())]
    assert found == ["compat.py"]
    assert "raise SystemExit(error.exit_status)" in (PACKAGE / "compat.py").read_text()


@pytest.fixture
def fresh_run(tmp_path, monkeypatch):
    """A fake edflow ``run`` that just created ``logs/<run>`` (no checkpoint)."""
    from edflow.custom_logging import run

    root = tmp_path / "logs" / "2026_run"
    (root / "train" / "checkpoints").mkdir(parents=True)
    for name, value in {"exists": True, "root": str(root), "checkpoints": str(root / "train" / "checkpoints"),
                        "resumed": False, "latest_eval": str(root / "eval" / "x")}.items():
        monkeypatch.setattr(run, name, value, raising=False)
    return root


def test_abort_cleanly_removes_a_fresh_run_on_an_invproto_error(fresh_run):
    with pytest.raises(errors.DataError):
        with run_module.abort_cleanly():
            raise errors.DataError("no data")
    assert not fresh_run.exists() and not fresh_run.parent.exists()


def test_command_errors_cleans_up_and_exits_in_one_line_only_in_the_edflow_command(fresh_run, monkeypatch, capsys):
    with pytest.raises(errors.RunError):  # a library caller (a test, a notebook) gets the exception
        with compat.command_errors():
            raise errors.RunError("locked")
    assert not fresh_run.exists()
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/edflow", "-b", "x.yaml"])
    with pytest.raises(SystemExit) as stopped:
        with compat.command_errors():
            raise errors.CheckpointError("invproto: checkpoint x is another model's; pick another")
    assert stopped.value.code == 1
    assert capsys.readouterr().err == "invproto: checkpoint x is another model's; pick another\n"


def test_edflow_hooks_do_not_see_an_invproto_error():
    from edflow.iterators.model_iterator import PyHookedModelIterator

    seen = []
    iterator = SimpleNamespace(hooks=[SimpleNamespace(at_exception=seen.append)])
    PyHookedModelIterator._handle_exception(iterator, errors.RunError("loss is not finite"))
    assert seen == []  # edflow's checkpoint hook would have saved the refused state
    other = RuntimeError("a bug")
    PyHookedModelIterator._handle_exception(iterator, other)
    assert seen == [other]
