"""Evaluation callbacks of the conditional INN (:mod:`invproto.iterators.cinn`): does the network see its samples
as it sees the input?

They average what the iterator's ``eval_op`` stored per validation example
(each a float, averaged over that example's ``n_samples`` samples) and report
the samples' figure next to a *floor* and a *ceiling*:

* ``floor`` -- the autoencoder's own reconstruction of the input: the samples
  pass through the same decoder, so they cannot match the input better than
  this (decoder error, not the flow's);
* ``ceiling`` -- another image of the evaluated split: what "not the same to
  the network" looks like.

Samples near the floor are images the network cannot tell apart from the
input at the interpreted layer.
"""

from __future__ import annotations

import numpy as np

from invproto.callbacks.base import evaluation_callback

COMPARED = ("samples", "floor", "ceiling")


def means(labels, names: list[str]) -> dict[str, float]:
    """Mean of every stored per-example value in ``names`` that the outputs hold."""
    return {name: float(np.mean(labels[name])) for name in names if name in labels}


@evaluation_callback
def representation_fidelity(root, data_in, data_out, config):
    """``rel_error_<kind>`` (‖Φ(x̂) − Φ(x)‖ / ‖Φ(x)‖) and ``cosine_<kind>`` for samples, floor and ceiling."""
    return means(data_out.labels, [f"{metric}_{kind}" for metric in ("rel_error", "cosine") for kind in COMPARED])


@evaluation_callback
def prediction_agreement(root, data_in, data_out, config):
    """``agree_<kind>``: fraction classified as the input was (networks that classify only)."""
    return means(data_out.labels, [f"agree_{kind}" for kind in COMPARED])


@evaluation_callback
def adversarial_invariances(root, data_in, data_out, config):
    """FGSM view (``iterator_params.attack_epsilon > 0``): accuracy of the network on clean, attacked and
    random-sign images, and how often the clean flow code decoded under the perturbed representation is
    classified as the perturbed image."""
    return means(data_out.labels, ["correct_clean", "correct_attacked", "correct_random",
                                   "attacked_decode_agrees", "random_decode_agrees"])
