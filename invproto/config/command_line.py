"""Check an ``edflow`` command line before edflow acts on it.

edflow's console script reads the ``-b`` files, applies the ``--a/b value``
overrides, creates a run directory (``logs/<time>_<name>``, or the ``-p`` one)
and only then builds what the config names. Every mistake on the command line
thus used to end in a traceback, often with a run directory left behind.
:func:`check_edflow_command_line` reads the same command line the way the
script does and raises one :class:`~invproto.errors.InvprotoError` naming the
file, key or path and the fix, before anything is created:

* a ``-b`` file that is missing, not valid YAML, empty or not a mapping;
* an override without a value (``--batch_size`` last on the line), written
  ``--key=value``, an unknown option or a stray argument (an override given
  twice is no mistake: the last one counts, as in edflow);
* a ``-p`` run directory that does not exist (edflow would create it) or is not
  a run; a ``-p <run>`` alone whose run has no saved config; a missing ``-c``;
* a run directory named where a checkpoint or factor sizes are asked for that
  has none (:mod:`invproto.config.chaining`);
* everything :func:`~invproto.config.validation.validate_run_config` refuses:
  unknown keys, wrong types, ranges and choices of the typed schemas
  (:mod:`invproto.config.schema`), import paths that cannot be imported.

:mod:`invproto.compat` runs it when the ``edflow`` script starts.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from invproto.artifacts import RunArtifacts
from invproto.config.chaining import resolve_run_references
from invproto.config.resume import deep_update, refuse_evaluation_without_checkpoint
from invproto.config.validation import check_run_schema, validate_run_config
from invproto.errors import CheckpointError, ConfigError, InvprotoError, RunError

EDFLOW_DEFAULT_MODEL = "edflow.util.NoModel"
OPTIONS = "-b <config.yaml ...>, -t, -p <run>, -c <checkpoint>, -n <name>, -r, -l <level>, -d"


@dataclass
class CommandLine:
    """An ``edflow`` command line as its script reads it."""

    base: list[str] = field(default_factory=list)  # -b files, in order (a -p <run>/configs/x.yaml first)
    project: str | None = None  # -p, a run directory
    checkpoint: str | None = None  # -c
    train: bool = False  # -t
    overrides: dict[str, Any] = field(default_factory=dict)  # --a/b value


class _Unparsable(Exception):
    """argparse refused the line; edflow's own parser reports it (usage and exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _Unparsable(message)


def _parser() -> argparse.ArgumentParser:
    """The options of edflow 0.4.0's ``edflow`` script (``edflow/edflow``), same spellings and kinds."""
    parser = _Parser(add_help=False)
    parser.add_argument("-n", "--name")
    parser.add_argument("-b", "--base", nargs="*", default=None)
    parser.add_argument("-t", "--train", action="store_true")
    parser.add_argument("-p", "--project")
    parser.add_argument("-c", "--checkpoint")
    parser.add_argument("-r", "--retrain", action="store_true")
    parser.add_argument("-l", "--log_level", choices=["warn", "info", "debug", "critical"], default="info")
    parser.add_argument("-d", "--debug", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def parse_command_line(argv: Sequence[str]) -> CommandLine | None:
    """``argv`` (without the program) as edflow's script reads it; None where argparse refuses it or
    on ``-h`` (edflow prints its usage then). Raises :class:`ConfigError` for malformed overrides."""
    try:
        opt, unknown = _parser().parse_known_args(list(argv))
    except _Unparsable:
        return None
    if opt.help:
        return None
    base, project = list(opt.base or []), opt.project
    if project and project.endswith(".yaml"):  # -p <run>/configs/x.yaml = -b that file -p <run>
        base.insert(0, project)
        project = re.sub(r"/configs/.+\.yaml", "", project)
    return CommandLine(base, project, opt.checkpoint, opt.train, parse_overrides(unknown))


def parse_overrides(unknown: Sequence[str]) -> dict[str, Any]:
    """``--a/b value`` pairs as edflow's ``parse_unknown_args`` reads them (values through
    ``ast.literal_eval``, else strings); what edflow would crash on or silently ignore is refused."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(unknown):
        token = unknown[i]
        if not token.startswith("--"):
            what = "option" if token.startswith("-") else "argument"
            hint = " (pass config files with -b)" if token.endswith((".yaml", ".yml")) else ""
            raise ConfigError(f"unknown command-line {what} '{token}'{hint}; edflow takes {OPTIONS} "
                              f"and overrides --<key> <value>")
        key = token[2:]
        if "=" in key:
            name, _, value = key.partition("=")
            raise ConfigError(f"command-line override '{token}' is written with '='; write --{name} {value}")
        if i + 1 == len(unknown) or unknown[i + 1].startswith("--"):
            raise ConfigError(f"command-line override '{token}' has no value; write {token} <value>")
        overrides[key] = _literal(unknown[i + 1])  # given twice: the last one counts, as in edflow
        i += 2
    return overrides


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except Exception:  # edflow keeps anything literal_eval cannot read as a string
        return text


def read_config_file(path: str, option: str = "-b") -> dict:
    """The mapping in config file ``path``; a one-line :class:`ConfigError` if it is not one."""
    file = Path(path)
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise ConfigError(f"config file '{path}' ({option}) {what}{_close_match(file)}; check the path "
                          f"(relative paths start from {os.getcwd()})")
    try:
        content = yaml.full_load(file.read_text())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(error.problem or error.context or "syntax error").split())
        raise ConfigError(f"config file '{path}' is not valid YAML: {problem}{where}; fix the syntax there") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"config file '{path}' cannot be read ({type(error).__name__}: {reason})") from None
    if content is None:
        raise ConfigError(f"config file '{path}' is empty; write the config keys into it (key: value)")
    if not isinstance(content, dict):
        raise ConfigError(f"config file '{path}' must be a mapping of config keys (key: value), "
                          f"got a {type(content).__name__}")
    return content


def _close_match(path: Path) -> str:
    """``; did you mean <sibling>?`` for a mistyped path whose folder exists."""
    parent = path.parent
    if not parent.is_dir():
        return ""
    close = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir()], n=1, cutoff=0.6)
    return f" (did you mean '{parent / close[0]}'?)" if close else ""


def check_run_directory(project: str) -> None:
    """``-p <project>`` must name an existing edflow run; edflow would create the directories."""
    run = Path(project)
    if project.endswith(".yaml"):  # not under <run>/configs/: edflow would take the file for a run directory
        raise RunError(f"-p '{project}' is not a run's saved config (<run>/configs/<name>.yaml); "
                       f"start a new run with -b {project}, or pass a run directory to -p")
    if not run.is_dir():
        raise RunError(f"run directory '{project}' (-p) does not exist{_close_match(run)}; pass an existing "
                       f"run (logs/<time>_<name>), or leave out -p to start a new one")
    if not (run / "configs").is_dir() and not (run / "train").is_dir():
        raise RunError(f"'{project}' (-p) is not an edflow run directory (it has no configs/ or train/); "
                       f"pass a run such as logs/<time>_<name>")


def build_config(line: CommandLine, update_config=None) -> dict | None:
    """The config edflow will run: the ``-b`` files left to right (shallow ``update``), then the
    overrides; for ``-p <run>`` alone, the run's newest saved train config (as
    :func:`invproto.config.resume.complete_from_run` does).

    ``update_config`` applies the overrides; by default edflow's own (nested ``a/b`` keys, list
    indices, ``{a/b}`` references). :func:`set_overrides` stands in before edflow is imported;
    None when it cannot tell what edflow would build.
    """
    if update_config is None:
        from edflow.config import update_config
    if line.project is not None:
        check_run_directory(line.project)
    config: dict = {}
    for path in line.base:
        config.update(read_config_file(path))
    if update_config(config, dict(line.overrides)) is False:
        return None
    config.setdefault("model", EDFLOW_DEFAULT_MODEL)
    if line.project is not None and "iterator" not in config:
        saved = RunArtifacts(line.project).newest_train_config()
        if saved is None:
            raise ConfigError(f"{line.project} has no saved config (configs/train_*.yaml); "
                              f"pass one with -b <config.yaml>")
        overrides = {k: v for k, v in config.items() if not (k == "model" and v == EDFLOW_DEFAULT_MODEL)}
        config = deep_update(read_config_file(str(saved), "-p"), overrides)
    return config


def set_overrides(config: dict, overrides: dict) -> bool:
    """edflow's ``update_config`` for plain cases, without importing edflow (seconds: chainer, torch):
    nested ``a/b`` keys into mappings. False (config unusable) for what only edflow knows:
    a key through a list or a scalar, a ``{a/b}`` reference anywhere."""
    for key in sorted(overrides):
        *parents, leaf = key.split("/")
        node = config
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False
        node[leaf] = overrides[key]
    return not _has_reference(config)


def _has_reference(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_reference(v) for v in value)
    return isinstance(value, str) and value[:1] == "{" and value[-1:] == "}"


def check_checkpoint_file(checkpoint: str) -> None:
    """``-c <checkpoint>`` must exist and load safely (tensors mapped, not read: cheap for any size)."""
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint '{checkpoint}' (-c) does not exist"
                              f"{_close_match(Path(checkpoint))}; pass a file of <run>/train/checkpoints/")
    from invproto.io import checkpoint_step, load_weights  # imported only now: they import torch (seconds)

    if checkpoint_step(checkpoint) is None:  # edflow reads the global step from the name
        raise CheckpointError(f"checkpoint '{checkpoint}' (-c) has no step in its name, and edflow reads the step "
                              f"from <name>-<step>.ckpt; link or copy it as model-<step>.ckpt and pass that")
    load_weights(checkpoint, "checkpoint", "pass a file of <run>/train/checkpoints/ with -c", mmap=True)


def check_edflow_command_line(argv: Sequence[str], early: bool = False) -> None:
    """Raise a one-line :class:`InvprotoError` if the ``edflow`` command ``argv`` cannot run.

    ``early``: before edflow is imported -- the command line, the files, and the run config's own
    schema (types, ranges, choices), but not the import paths (importing a model takes seconds).
    """
    line = parse_command_line(argv)
    if line is None:
        return
    config = build_config(line, set_overrides if early else None)
    if line.checkpoint is not None:
        check_checkpoint_file(line.checkpoint)
    if config is None:
        return
    if line.project and not line.train and line.checkpoint is None:
        refuse_evaluation_without_checkpoint(line.project, config)
    if early:
        if not ("dataset" in config and "iterator" not in config):  # an explorer's config: checked late
            check_run_schema(config)
    else:
        validate_run_config(config)
        resolve_run_references(config)  # then: a stage named by its run directory must have what is asked for


def code_root_from_anywhere(code_root: str | None) -> str | None:
    """The folder edflow copies into a new run's ``code/``, found from any working directory.

    edflow's script passes the iterator's top package (``invproto``) as a path
    relative to the working directory, so outside the repository root
    ``shutil.copytree`` crashed (``FileNotFoundError``) after the run directory
    was created. A name that is no folder here but an importable package is
    replaced by the package's folder; anything else that does not exist copies
    nothing (``None``).
    """
    if code_root is None or os.path.isdir(code_root):
        return code_root
    if code_root.isidentifier():
        spec = importlib.util.find_spec(code_root)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if locations:
            return locations[0]
    return None


__all__ = ["CommandLine", "InvprotoError", "build_config", "check_edflow_command_line", "parse_command_line",
           "parse_overrides", "read_config_file", "set_overrides", "code_root_from_anywhere"]
