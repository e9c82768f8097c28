"""Which invproto class a run's config names, and what kind of model that is.

Only classes of this repository are ever built: an import path must start with
``invproto.`` and name a subclass of the expected base (a :class:`Model`, a
dataset). A run's config is data, never a way to run other code.
"""

from __future__ import annotations

from invproto.config.instantiate import get_obj_from_str
from invproto.models.autoencoder import Autoencoder
from invproto.models.base import Model
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
}


class LoadError(Exception):
    """A run, checkpoint or dataset the demo cannot load; the message is one line naming the problem and the fix."""


def code_class(import_path: str, base: type, what: str) -> type:
    """The class ``import_path`` names, when it is invproto code and a subclass of ``base``; else :class:`LoadError`."""
    if not isinstance(import_path, str) or not import_path.startswith("invproto."):
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
