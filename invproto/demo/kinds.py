"""Which invproto class a run's config names, and what kind of model that is.

Only classes of this repository are ever built: an import path must start with
``invproto.`` and name a subclass of the expected base (a :class:`Model`, a
dataset). A run's config is data, never a way to run other code: before the
demo uses a config, :func:`check_imports` refuses it when any import path in it,
at any depth, lies outside ``invproto.`` -- also those that code of this
repository imports while building the model (a first stage, a backbone).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from invproto.config import get_obj_from_str
from invproto.models.autoencoder import Autoencoder
from invproto.models.base import Model
from invproto.models.cinn import ConditionalIIN
from invproto.models.classifier import Classifier
from invproto.models.iin import IIN, FactorIIN
from invproto.models.prototype_model import PrototypeModel

# The demo's views per kind; the first matching base wins (a latent prototype flow is also an IIN).
KINDS: dict[str, type] = {
    "prototype": PrototypeModel,
    "dIIN": FactorIIN,
    "IIN": IIN,
    "autoencoder": Autoencoder,
    "classifier": Classifier,
    "invariances": ConditionalIIN,
}

# A string under one of these keys, at any depth, is an import path (``model``, ``first_stage.model``,
# ``loss.target``, ``model_params.backbone.target``, edexplore's ``dataset``) ...
IMPORT_KEYS = frozenset({"model", "iterator", "target", "loss", "dataset"})
# ... and so is every string value of these mappings (``datasets.train``, ``eval_pipeline.callbacks.<name>``).
IMPORT_SECTIONS = frozenset({"datasets", "callbacks", "eval_callbacks"})
# First-stage sources (invproto.models.first_stages) whose ``model`` is a name in a registry, not code to import;
# TorchScript files are programs, so the demo refuses first stages read from them.
NAMED_SOURCES = frozenset({"torchvision"})
PROGRAM_SOURCES = frozenset({"torchscript"})
INVPROTO_PATH = re.compile(r"invproto(\.[A-Za-z_]\w*)+", re.ASCII)


class LoadError(Exception):
    """A run, checkpoint or dataset the demo cannot load; the message is one line naming the problem and the fix."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none), without the ``invproto:`` prefix."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0].removeprefix("invproto: ")


def is_invproto_path(import_path: object) -> bool:
    """Whether ``import_path`` is a dotted path inside the ``invproto`` package."""
    return isinstance(import_path, str) and INVPROTO_PATH.fullmatch(import_path) is not None


def import_paths(node: object, where: str = "", key: object = None, parent: object = None) \
        -> Iterator[tuple[str, str]]:
    """``(key path, import path)`` for every import path in the config ``node``, at any depth: the strings
    under :data:`IMPORT_KEYS` and in the :data:`IMPORT_SECTIONS` (``key``: the key ``node`` sits under,
    ``parent``: the key above it; the items of a list sit under the list's key)."""
    if isinstance(node, str):
        if key in IMPORT_KEYS or parent in IMPORT_SECTIONS:
            yield where, node
    elif isinstance(node, Mapping):
        for child, value in node.items():
            if child == "model" and node.get("source") in NAMED_SOURCES:
                continue  # a torchvision builder name, not an import path
            yield from import_paths(value, f"{where}.{child}" if where else str(child), child, key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from import_paths(value, f"{where}[{index}]", key, parent)


def sources(node: object, where: str = "") -> Iterator[tuple[str, object]]:
    """``(key path, value)`` of every first-stage ``source`` key in the config ``node``, at any depth."""
    if isinstance(node, Mapping):
        for child, value in node.items():
            path = f"{where}.{child}" if where else str(child)
            if child == "source":
                yield path, value
            yield from sources(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from sources(value, f"{where}[{index}]")


def check_imports(config: Mapping, source: str) -> None:
    """Refuse (:class:`LoadError`) the config read from ``source`` when it names an import path outside
    ``invproto.``; nothing is imported."""
    for where, kind in sources(config):
        if kind in PROGRAM_SOURCES:
            raise LoadError(f"{source} names {where} = {kind!r}: a TorchScript program, which the demo does not "
                            f"load from a run's config; interpret it from the command line (edflow -p)")
    for where, import_path in import_paths(config):
        if not is_invproto_path(import_path):
            raise LoadError(f"{source} names {where} = {import_path!r}, which is not an invproto import path; "
                            f"the demo imports invproto code only")


def code_class(import_path: str, base: type, what: str) -> type:
    """The class ``import_path`` names, when it is invproto code and a subclass of ``base``; else :class:`LoadError`."""
    if not is_invproto_path(import_path):
        raise LoadError(f"{what} {import_path!r} is not an invproto import path; the demo builds invproto classes only")
    try:
        cls = get_obj_from_str(import_path)
    except ImportError as error:
        raise LoadError(f"cannot import {what} {import_path} ({error}); run the demo from the checkout "
                        f"the run was trained with") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise LoadError(f"{what} {import_path} is not a {base.__name__} subclass")
    return cls


def model_kind(import_path: str) -> str:
    """The key of :data:`KINDS` the model ``import_path`` belongs to, ``"other"``, or ``"unknown"`` (not importable)."""
    try:
        cls = code_class(import_path, Model, "model")
    except LoadError:
        return "unknown"
    return next((kind for kind, base in KINDS.items() if issubclass(cls, base)), "other")
