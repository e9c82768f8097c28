"""Models; each is built by edflow from the ``model`` import path (see base.Model)."""

from invproto.models.classifier import Classifier

__all__ = ["Classifier"]
