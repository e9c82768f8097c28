"""Validate a run config before any step, with one-line messages naming the key.

* unknown key   -> ``unknown config key 'model_params.n_clases' (in x.yaml); did you mean 'n_classes'?``
* missing key   -> ``missing config key 'batch_size' (int); add it to x.yaml``
* wrong type    -> ``config key 'batch_size' must be int, got 'eight' (in the command line)``
* out of range  -> ``config key 'optimizer.lr' must be > 0, got -0.001 (in the command line)``
* no choice     -> ``config key 'optimizer.schedule' must be one of constant, cosine, linear, got 'cosin' (in x.yaml)``

All raise :class:`invproto.errors.ConfigError` (re-exported here): the edflow
command line (:mod:`invproto.compat`) prints ``invproto: <message>`` and exits
with status 1.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from invproto.config.schema import ExploreConfig, RunConfig
from invproto.config.sources import ConfigSources
from invproto.config.targets import get_obj_from_str, schema_for
from invproto.errors import ConfigError

__all__ = ["ConfigError", "check_run_schema", "check_section", "validate_explore_config", "validate_params",
           "validate_run_config"]


_sources: ConfigSources | None = None


def sources() -> ConfigSources:
    global _sources
    if _sources is None:
        _sources = ConfigSources.from_argv()
    return _sources


def _where(key: str) -> str:
    origin = sources().origin(key)
    return f" (in {origin})" if origin else ""


def _unknown(key: str, valid: list[str]) -> ConfigError:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"unknown config key '{key}'{_where(key)}; {hint}")


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args and typing.get_origin(annotation) is typing.Union:
        return f"{_type_name(args[0])} or null"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def check_section(schema: type, value: Any, key: str) -> dict:
    """Validate ``value`` against the dataclass ``schema``; return it with defaults filled in.

    ``key`` is the dotted path of ``value`` in the run config (``""`` for the root).
    A schema may name keys it replaced in ``renamed_keys`` (a class variable,
    ``{old: (new, how to convert)}``): the old key is refused naming the new one.
    """
    prefix = f"{key}." if key else ""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key '{key}' must be a mapping of {schema.__name__} fields, "
                          f"got {value!r}{_where(key)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    renamed = getattr(schema, "renamed_keys", {})
    for name in value:
        if name in renamed:
            new, how = renamed[name]
            raise ConfigError(f"config key '{prefix}{name}'{_where(prefix + str(name))} was replaced; "
                              f"use '{prefix}{new}', {how}")
        if name not in fields:
            raise _unknown(prefix + str(name), list(fields))
    for name, sub in value.items():
        sub_schema = hints[name]
        optional = [a for a in typing.get_args(sub_schema) if a is not type(None)]
        if optional and typing.get_origin(sub_schema) is typing.Union:
            sub_schema = optional[0]
        if dataclasses.is_dataclass(sub_schema) and sub is not None:
            check_section(sub_schema, sub, prefix + name)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), dict(value))
    except OmegaConfBaseException as error:
        full_key = prefix + str(getattr(error, "full_key", "") or "")
        name = full_key.rsplit(".", 1)[-1]
        expected = _type_name(hints.get(name, Any)) if name in hints else "a valid value"
        got = _lookup(value, full_key[len(prefix):])
        raise ConfigError(f"config key '{full_key}' must be {expected}, got {got!r}{_where(full_key)}") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        full_key = prefix + missing[0]
        name = missing[0].split(".")[-1]
        expected = _type_name(_nested_hint(schema, missing[0]))
        raise ConfigError(f"missing config key '{full_key}' ({expected}); "
                          f"add it to {sources().home(full_key or name)}")
    checked = OmegaConf.to_container(merged, resolve=True)
    _check_ranges(schema, checked, prefix)
    return checked


def _check_ranges(schema: type, values: Mapping, prefix: str) -> None:
    """The ranges and choices of :func:`invproto.config.schema.checked` fields (null passes)."""
    for spec in dataclasses.fields(schema):
        value, key = values.get(spec.name), prefix + spec.name
        if value is None or not spec.metadata:
            continue
        choices, gt, ge = spec.metadata.get("choices"), spec.metadata.get("gt"), spec.metadata.get("ge")
        if choices is not None and value not in choices:
            null = " or null" if spec.default is None else ""
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, choices))}{null}, "
                              f"got {value!r}{_where(key)}")
        if gt is not None and not value > gt:
            raise ConfigError(f"config key '{key}' must be > {gt}, got {value!r}{_where(key)}")
        if ge is not None and not value >= ge:
            raise ConfigError(f"config key '{key}' must be >= {ge}, got {value!r}{_where(key)}")


def _lookup(value: Mapping, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _nested_hint(schema: type, dotted: str) -> Any:
    for part in dotted.split("."):
        annotation = typing.get_type_hints(schema).get(part, Any)
        schema = annotation
    return annotation


def validate_params(target: Any, params: Mapping, key: str) -> dict:
    """Validate keyword parameters of ``target`` (see ``schema_for``)."""
    return check_section(schema_for(target), params, key)


def _import(path: str, key: str) -> Any:
    try:
        return get_obj_from_str(path)
    except ImportError as error:
        raise ConfigError(f"config key '{key}' = '{path}' cannot be imported ({error}){_where(key)}") from None


def _read_only(checked: dict) -> DictConfig:
    view = OmegaConf.create(checked)
    OmegaConf.set_readonly(view, True)
    return view


def validate_explore_config(config: Mapping) -> DictConfig:
    """Validate the config ``edexplore --dataset <path>`` builds a dataset with."""
    explored = {key: config[key] for key in ("dataset", "data", "dataset_params", "seed") if key in config}
    checked = check_section(ExploreConfig, explored, "")
    dataset = _import(checked["dataset"], "dataset")
    if hasattr(dataset, "Params"):
        checked["dataset_params"] = check_section(dataset.Params, checked["dataset_params"], "dataset_params")
    return _read_only(checked)


def check_run_schema(config: Mapping) -> dict:
    """The run config checked against :class:`RunConfig` alone (no import), defaults filled in."""
    checked = check_section(RunConfig, config, "")
    if checked["num_epochs"] is None and checked["num_steps"] is None:
        raise ConfigError(f"missing config key 'num_epochs' (int) or 'num_steps' (int); "
                          f"add one to {sources().home('num_epochs')}")
    return checked


def validate_run_config(config: Mapping) -> DictConfig:
    """Validate the stacked edflow config; return a read-only typed view of it.

    A config with a top-level ``dataset`` and no ``iterator`` comes from
    ``edexplore``, which builds a single dataset; only its keys are checked.
    """
    if "dataset" in config and "iterator" not in config:
        return validate_explore_config(config)
    checked = check_run_schema(config)
    model = _import(checked["model"], "model")
    iterator = _import(checked["iterator"], "iterator")
    datasets = [_import(path, f"datasets.{split}") for split, path in checked["datasets"].items()]
    components = [("model_params", model), ("iterator_params", iterator), ("dataset_params", datasets[0])]
    for section, component in components:
        if getattr(component, "Params", None) is not None:
            checked[section] = check_section(component.Params, checked[section], section)
        elif checked[section]:
            raise ConfigError(f"config key '{section}' is set{_where(section)} but "
                              f"{component.__name__} takes no parameters; remove it")
    if checked["loss"] is not None:
        loss = _import(checked["loss"]["target"], "loss.target")
        checked["loss"]["params"] = validate_params(loss, checked["loss"]["params"], "loss.params")
    callbacks = dict(getattr(iterator, "callbacks", {}).get("eval_op", {}))
    for name, path in checked["eval_pipeline"]["callbacks"].items():
        callbacks[name] = _import(path, f"eval_pipeline.callbacks.{name}")
    for name, kwargs in checked["eval_pipeline"]["callback_kwargs"].items():
        key = f"eval_pipeline.callback_kwargs.{name}"
        if name not in callbacks:
            raise _unknown(key, list(callbacks))
        check_section(schema_for(callbacks[name], skip=4), kwargs, key)
    return _read_only(checked)
