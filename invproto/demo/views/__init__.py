"""The page's sections per model kind (:data:`invproto.demo.kinds.KINDS`): ``(tab title, view)`` pairs.

A view is ``view(ctx: ViewContext) -> None`` and draws into the current tab;
the app runs it without gradients. The metrics view
(:func:`~invproto.demo.views.metrics.metrics`) needs no model and is shown for every run.
"""

from __future__ import annotations

from typing import Callable

from invproto.demo.views import autoencoder, classifier, iin, invariances, prototypes
from invproto.demo.views.common import ViewContext

View = Callable[[ViewContext], None]

VIEWS: dict[str, list[tuple[str, View]]] = {
    "autoencoder": [("Reconstructions", autoencoder.reconstructions), ("Samples", autoencoder.samples)],
    "IIN": [("Samples", iin.samples), ("Interpolation", iin.interpolation)],
    "dIIN": [("Factor swaps", iin.factor_swaps), ("Factor walk", iin.factor_walk), ("Samples", iin.samples),
             ("Interpolation", iin.interpolation)],
    "prototype": [("Prototypes", prototypes.gallery), ("Explain an image", prototypes.explain)],
    "classifier": [("Explain an image", classifier.predict)],
    "invariances": [("Invariances", invariances.invariances), ("Attack", invariances.attack)],
}
