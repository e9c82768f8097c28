"""Models; each is built by edflow from the ``model`` import path (see base.Model)."""

from invproto.models.autoencoder import Autoencoder
from invproto.models.classifier import Classifier

__all__ = ["Autoencoder", "Classifier"]
