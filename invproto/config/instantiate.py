"""Build objects from config: an import path plus parameters.

Every component outside edflow's own ``model``/``iterator``/``datasets`` keys
is written as::

    loss:
      target: torch.nn.CrossEntropyLoss   # import path of a class or function
      params: {label_smoothing: 0.1}      # its keyword arguments

and built with :func:`instantiate`. The parameters are validated first against
the target's schema (:func:`schema_for`), so a typo fails naming the key.
"""

from __future__ import annotations

from typing import Any, Mapping

from invproto.config.targets import get_obj_from_str
from invproto.config.validation import validate_params


def instantiate(spec: Mapping, key: str, **extra: Any) -> Any:
    """Build ``spec["target"](**spec["params"], **extra)`` after validating the params.

    ``key`` is where ``spec`` sits in the config (e.g. ``"loss"``); error
    messages name ``<key>.params.<name>``.
    """
    target = get_obj_from_str(spec["target"])
    params = validate_params(target, spec.get("params") or {}, key=f"{key}.params")
    return target(**params, **extra)
