"""Config handling: typed schemas, validation, and objects from import paths."""

from invproto.config.instantiate import instantiate
from invproto.config.run import prepare_run
from invproto.config.targets import get_obj_from_str, schema_for
from invproto.config.validation import ConfigError, validate_run_config

__all__ = ["ConfigError", "get_obj_from_str", "instantiate", "prepare_run", "schema_for",
           "validate_run_config"]
