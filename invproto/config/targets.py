"""Import paths and their parameter schemas.

A config names classes and functions by import path (``package.module.Name``);
:func:`get_obj_from_str` imports one, :func:`schema_for` gives the typed schema
its keyword parameters are validated against.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from typing import Any

from omegaconf import MISSING

_OMEGACONF_TYPES = (int, float, bool, str)


def get_obj_from_str(path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ImportError(f"'{path}' is not an import path of the form package.module.Name")
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        raise ImportError(f"module '{module}' has no attribute '{name}'") from None


def schema_for(target: Any, skip: int = 0) -> type:
    """The typed schema (a dataclass) of ``target``'s parameters.

    A target that declares ``Params`` (a dataclass) uses it; otherwise the
    schema is derived from its signature: annotated simple types are checked,
    everything else is accepted as ``Any``; parameters without a default are
    required. ``skip`` leaves out the first positional parameters (an
    evaluation callback's ``root, data_in, data_out, config``).
    """
    declared = getattr(target, "Params", None)
    if declared is not None and dataclasses.is_dataclass(declared):
        return declared
    fields = []
    parameters = list(inspect.signature(target).parameters.items())[skip:]
    for name, parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or name == "self":
            continue
        annotation = _simple_type(parameter.annotation)
        default = MISSING if parameter.default is parameter.empty else parameter.default
        if not isinstance(default, (*_OMEGACONF_TYPES, type(None), str)) and default is not MISSING:
            annotation, default = Any, None
        fields.append((name, annotation, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{getattr(target, '__name__', 'Target')}Params", fields)


def _simple_type(annotation: Any) -> Any:
    """Keep annotations omegaconf can check (int, float, bool, str, Optional[...]); else Any."""
    if annotation in _OMEGACONF_TYPES:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        if inner in _OMEGACONF_TYPES:
            return typing.Optional[inner]
    return Any
