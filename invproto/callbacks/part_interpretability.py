"""How well part prototypes point at the pixels they explain (ProtoPNet/PixPNet evaluation).

Computed from the per-example labels of
:meth:`invproto.iterators.part_prototypes.PartPrototypeIterator.eval_step`:

* always, the relevance ordering test (:mod:`invproto.interpret.relevance`)
  of both pixel mappings on the first ``relevance_images_per_batch`` images
  of every batch, for every prototype of the image's class:
  ``relevance_auc_rf``, ``relevance_auc_upsample`` (mean normalised AUCs) and
  ``relevance_rf_minus_upsample`` (their difference; > 0: the receptive-field
  mapping ranks the relevant pixels earlier);
* on data with part annotations (a validation dataset with a
  ``part_keypoints(indices)`` method, such as Sprites), consistency and
  stability (:mod:`invproto.interpret.part_metrics`) of both mappings, with
  regions of half-width ``part_radius`` and input noise ``noise_std``:
  ``consistency_rf``, ``consistency_hard_rf``, ``stability_rf``,
  ``stability_soft_rf`` and the same for ``upsample``.
"""

from __future__ import annotations

import numpy as np

from invproto.callbacks.base import evaluation_callback
from invproto.interpret.part_metrics import consistency, stability
from invproto.interpret.receptive_field import MAPPINGS


@evaluation_callback
def part_interpretability(root, data_in, data_out, config):
    """Relevance ordering AUCs, and consistency/stability where parts are annotated (module docstring)."""
    labels = data_out.labels
    metrics = {f"relevance_auc_{m}": float(np.nanmean(labels[f"relevance_auc_{m}"])) for m in MAPPINGS}
    metrics["relevance_rf_minus_upsample"] = metrics["relevance_auc_rf"] - metrics["relevance_auc_upsample"]
    if "class_prototypes" in labels:
        slots = np.asarray(labels["class_prototypes"], dtype=np.int64)
        n_prototypes = int(np.asarray(labels["n_prototypes"])[0])
        for m in MAPPINGS:
            hits, noisy = np.asarray(labels[f"parts_hit_{m}"]), np.asarray(labels[f"parts_hit_{m}_noisy"])
            scores = {**consistency(hits, slots, n_prototypes), **stability(hits, noisy, slots, n_prototypes)}
            metrics.update({f"{name}_{m}": value for name, value in scores.items()})
    return metrics
