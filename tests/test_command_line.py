"""The ``edflow`` command line is checked before edflow acts on it (:mod:`invproto.config.command_line`).

Every mistake is one line on stderr naming the file, key or path and the fix,
exit status 1, no traceback, nothing created on disk, in well under 10 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from edflow_runner import QUICK, EdflowRunner

from invproto.config import command_line, validation
from invproto.config.command_line import (
    CommandLine,
    build_config,
    check_edflow_command_line,
    code_root_from_anywhere,
    parse_command_line,
    parse_overrides,
    read_config_file,
    set_overrides,
)
from invproto.config.sources import ConfigSources
from invproto.errors import CheckpointError, ConfigError, InvprotoError, RunError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_sources(monkeypatch):
    monkeypatch.setattr(validation, "_sources", ConfigSources())


# --- the command line, as edflow's script reads it -------------------------------------------------
def test_overrides_are_read_as_edflow_reads_them():
    assert parse_overrides(["--batch_size", "8", "--optimizer/lr", "-1e-3", "--name", "x.y"]) == {
        "batch_size": 8, "optimizer/lr": -0.001, "name": "x.y"}
    assert parse_overrides(["--seed", "1", "--seed", "2"]) == {"seed": 2}  # the last one counts


@pytest.mark.parametrize("unknown, expected", [
    (["--batch_size"], "'--batch_size' has no value; write --batch_size <value>"),
    (["--batch_size", "--num_steps", "3"], "'--batch_size' has no value"),
    (["--batch_size=8"], "written with '='; write --batch_size 8"),
    (["-x", "3"], "unknown command-line option '-x'"),
    (["configs/a.yaml"], "unknown command-line argument 'configs/a.yaml' (pass config files with -b)"),
])
def test_malformed_overrides_are_refused(unknown, expected):
    with pytest.raises(ConfigError) as error:
        parse_overrides(unknown)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_command_line_options():
    line = parse_command_line(["-b", "a.yaml", "b.yaml", "-t", "--lr", "1", "-c", "m.ckpt"])
    assert line == CommandLine(["a.yaml", "b.yaml"], None, "m.ckpt", True, {"lr": 1})
    line = parse_command_line(["-p", "logs/run/configs/train_1.yaml", "-b", "o.yaml"])
    assert line.base == ["logs/run/configs/train_1.yaml", "o.yaml"] and line.project == "logs/run"
    assert parse_command_line(["-p"]) is None  # argparse's own error: edflow reports it
    assert parse_command_line(["--help"]) is None


def test_config_files_must_be_yaml_mappings(tmp_path):
    cases = {"bad.yaml": ("a: [1, 2\n", "is not valid YAML: expected ',' or ']'"),
             "empty.yaml": ("", "is empty"), "list.yaml": ("- 1\n", "must be a mapping of config keys")}
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=expected):
            read_config_file(str(tmp_path / name))
    with pytest.raises(ConfigError, match=r"missing.yaml' \(-b\) does not exist \(did you mean .*list.yaml"):
        read_config_file(str(tmp_path / "misst.yaml").replace("misst", "missing"))
    with pytest.raises(ConfigError, match="is a directory"):
        read_config_file(str(tmp_path))


def test_run_directory_must_exist_and_be_a_run(tmp_path):
    (tmp_path / "logs" / "2026_run" / "configs").mkdir(parents=True)
    for project, error, expected in [
            (tmp_path / "logs" / "2026_rnu", RunError, r"does not exist \(did you mean .*2026_run'\?\)"),
            (tmp_path / "logs", RunError, "is not an edflow run directory"),
            (tmp_path / "logs" / "2026_run", ConfigError, "has no saved config")]:
        with pytest.raises(error, match=expected):
            build_config(CommandLine(project=str(project)), set_overrides)
    with pytest.raises(RunError, match="is not a run's saved config"):
        build_config(CommandLine(project="configs/mnist_clf.yaml"), set_overrides)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["2026_run"]  # nothing created


def test_set_overrides_stands_in_for_edflow_only_where_it_can():
    config = {"optimizer": {"lr": 1.0}}
    assert set_overrides(config, {"optimizer/lr": 2.0, "data/root": "x"})
    assert config == {"optimizer": {"lr": 2.0}, "data": {"root": "x"}}
    assert not set_overrides({"betas": [1, 2]}, {"betas/0": 3})
    assert not set_overrides({"a": "{b}"}, {})


def test_early_check_validates_the_schema_without_importing(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match="'optimizer.lr' must be > 0, got 0"):
        check_edflow_command_line(["-b", "configs/mnist_clf.yaml", "-t", "--optimizer/lr", "0"], early=True)
    # an import path is checked late (importing it takes seconds)
    check_edflow_command_line(["-b", "configs/mnist_clf.yaml", "--model", "invproto.nope.X"], early=True)
    with pytest.raises(ConfigError, match="'model' = 'invproto.nope.X' cannot be imported"):
        check_edflow_command_line(["-b", "configs/mnist_clf.yaml", "--model", "invproto.nope.X"])
    with pytest.raises(CheckpointError, match="'m.ckpt' \\(-c\\) does not exist"):
        check_edflow_command_line(["-b", "configs/mnist_clf.yaml", "-c", "m.ckpt"], early=True)


def test_code_root_is_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert code_root_from_anywhere("invproto") == str(REPO / "invproto")
    assert code_root_from_anywhere(".") == "." and code_root_from_anywhere(None) is None
    assert code_root_from_anywhere("no_such_package_here") is None
    assert command_line.__name__ == "invproto.config.command_line"


# --- the real edflow command ---------------------------------------------------------------------
def tree(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root) for f in dirs + files}


CASES = [  # (id, files to write, arguments, what the one line names)
    ("invalid_yaml", {"bad.yaml": "a: [1, 2\n"}, ["-b", "bad.yaml", "-t"], "'bad.yaml' is not valid YAML"),
    ("empty_file", {"empty.yaml": ""}, ["-b", "configs/mnist_clf.yaml", "empty.yaml", "-t"], "'empty.yaml' is empty"),
    ("non_mapping", {"list.yaml": "- 1\n"}, ["-b", "list.yaml", "-t"], "'list.yaml' must be a mapping"),
    ("missing_overlay", {}, ["-b", "configs/mnist_clf.yaml", "nope.yaml", "-t"], "'nope.yaml' (-b) does not exist"),
    ("bad_model_path", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--model", "invproto.models.Nope"],
     "'model' = 'invproto.models.Nope' cannot be imported"),
    ("bad_iterator_module", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--iterator", "invproto.nope.It"],
     "'iterator' = 'invproto.nope.It' cannot be imported"),
    ("bad_dataset_path", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--datasets/train", "invproto.data.Nope"],
     "'datasets.train' = 'invproto.data.Nope' cannot be imported"),
    ("flag_without_value", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--batch_size"],
     "'--batch_size' has no value"),
    ("lr_zero", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--optimizer/lr", "0"], "'optimizer.lr' must be > 0"),
    ("lr_negative", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--optimizer/lr", "-1e-3"],
     "'optimizer.lr' must be > 0"),
    ("batch_size_zero", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--batch_size", "0"], "'batch_size' must be >= 1"),
    ("log_freq_zero", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--log_freq", "0"], "'log_freq' must be >= 1"),
    ("ckpt_freq_zero", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--ckpt_freq", "0"], "'ckpt_freq' must be >= 1"),
    ("num_epochs_zero", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--num_epochs", "0"], "'num_epochs' must be >= 1"),
    ("num_steps_zero", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--num_steps", "-5"], "'num_steps' must be >= 1"),
    ("schedule_choice", {"o.yaml": "optimizer: {schedule: cosin}\n"}, ["-b", "configs/mnist_clf.yaml", "o.yaml", "-t"],
     "'optimizer.schedule' must be one of constant, cosine, linear, got 'cosin' (in o.yaml)"),
    ("optimizer_choice", {}, ["-b", "configs/mnist_clf.yaml", "-t", "--optimizer/name", "adm"],
     "'optimizer.name' must be one of adam, adamw, sgd"),
    ("mistyped_run", {}, ["-p", "logs/2026-01-01_nope", "-t"], "'logs/2026-01-01_nope' (-p) does not exist"),
    ("yaml_as_run", {}, ["-p", "configs/mnist_clf.yaml"], "is not a run's saved config"),
    ("missing_checkpoint", {}, ["-b", "configs/mnist_clf.yaml", "-c", "nope.ckpt"], "'nope.ckpt' (-c) does not exist"),
    ("config_without_b", {}, ["-t", "configs/mnist_clf.yaml"], "pass config files with -b"),
    ("stage_not_trained", {}, ["-b", "configs/cmnist_clf_diin.yaml", "-t"],
     "model_params.first_stage.checkpoint 'logs/*_cmnist_clf': no run directory matches; train that stage first"),
]


@pytest.mark.slow
@pytest.mark.parametrize("files, args, named", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_edflow_command_line_mistakes_are_one_line_and_leave_nothing(tmp_path, files, args, named):
    runner = EdflowRunner(tmp_path / "work")
    for name, text in files.items():
        (runner.workdir / name).write_text(text)
    before = tree(runner.workdir)
    start = time.perf_counter()
    result = runner(*args, timeout=120)
    elapsed = time.perf_counter() - start
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr[-2000:]
    assert result.stderr.startswith("invproto: ") and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert tree(runner.workdir) == before


@pytest.mark.slow
def test_edflow_runs_outside_the_repository_root_and_refuses_a_foreign_checkpoint(tmp_path):
    """From a directory without invproto/: edflow copies the package into code/ (it crashed there);
    an InvprotoError raised inside training (a checkpoint of another model) is one line, no run left."""
    runner = EdflowRunner(tmp_path)
    (tmp_path / "invproto").unlink()
    config = str(REPO / "configs" / "mnist_clf.yaml")
    run = runner.train(config, "outside", *QUICK, "--num_steps", "2")
    assert (run / "code" / "errors.py").is_file()
    torch.save({"describe": {"model": "other"}, "model": {}}, tmp_path / "other-3.ckpt")
    result = runner("-b", config, "-t", "-c", "other-3.ckpt", *QUICK, "-n", "foreign")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("invproto: checkpoint other-3.ckpt holds")
    assert not runner.runs("foreign")


def test_the_hierarchy_is_what_the_entry_catches():
    assert issubclass(ConfigError, InvprotoError) and not issubclass(ConfigError, SystemExit)


@pytest.mark.slow
@pytest.mark.parametrize("asked", [[], ["--log_level=info"], ["-linfo"]], ids=["quiet", "long", "short"])
def test_edflow_speaks_only_when_asked(tmp_path, asked):
    """The console names the run directory in one line; edflow's own INFO lines appear with -l info in any
    form edflow's parser takes."""
    runner = EdflowRunner(tmp_path)
    result = runner("-b", "configs/mnist_clf.yaml", "-t", *asked, *QUICK, "--num_steps", "2", "-n", "talk")
    assert result.returncode == 0, result.stderr[-3000:]
    run_lines = [line for line in result.stdout.splitlines() if line.startswith("invproto: run directory ")]
    assert len(run_lines) == 1 and ("-l info" in run_lines[0]) == (not asked)
    assert ("[INFO] [run]: root: logs/" in result.stdout) == bool(asked)
