"""Config handling: typed schemas, validation, and objects from import paths.

``prepare_run`` is imported on first use: it needs torch, and the ``edflow``
command-line check (:mod:`invproto.config.command_line`) must not wait for it.
"""

from invproto.config.instantiate import instantiate
from invproto.config.targets import get_obj_from_str, schema_for
from invproto.config.validation import ConfigError, validate_run_config

__all__ = ["ConfigError", "get_obj_from_str", "instantiate", "prepare_run", "schema_for",
           "validate_run_config"]


def __getattr__(name: str):
    if name == "prepare_run":
        from invproto.config.run import prepare_run

        return prepare_run
    raise AttributeError(f"module 'invproto.config' has no attribute '{name}'")
