"""Training and evaluating the conditional INN of a network's invariances (:mod:`invproto.models.cinn`).

Training: the IIN loss (:class:`~invproto.losses.iin.IINLoss`) of the
autoencoder codes under the flow conditioned on the network's representation
of the same images; only the embedder and the flow train.

Logged at log steps (one picture each, a row per input image, so inputs and
outputs stay aligned):

* ``invariances`` -- input | reconstruction through the INN | ``n_samples``
  decoded N(0, I) draws under the input's representation;
* ``swaps`` -- input | the flow code of the next input decoded under this
  input's representation.

Evaluated per example (``eval_step``) for the callbacks of
:mod:`invproto.callbacks.invariances` and :mod:`invproto.callbacks.fid`:
``nats_per_dim``; ``n_samples`` samples (seeded by the example's index),
the first one as ``sample`` for the sample FID; how well their representations
match the input's (``rel_error_samples``, ``cosine_samples``) next to the
floor (the autoencoder's reconstruction of the input, ``*_floor``) and the
ceiling (another image of the batch, the next one, ``*_ceiling``); for a
network that classifies, how often they are classified as the input is
(``agree_*``); with ``attack_epsilon > 0`` and labelled data, the FGSM view
(:func:`attack_outcomes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from invproto.callbacks.fid import fid_samples
from invproto.callbacks.invariances import adversarial_invariances, prediction_agreement, representation_fidelity
from invproto.callbacks.likelihood import likelihood
from invproto.interpret.attacks import perturbed_views
from invproto.interpret.invariance_metrics import cosine, relative_error
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.losses.iin import HALF_LOG_TWO_PI
from invproto.models.cinn import ConditionalIIN
from invproto.pictures import grid_rows, per_example_normal, to_hwc, to_uint8_hwc


def attack_outcomes(model: ConditionalIIN, images: torch.Tensor, labels: torch.Tensor, z: torch.Tensor,
                    epsilon: float, seed: int) -> dict[str, torch.Tensor]:
    """Per example (float 0/1) for an FGSM attack of size ``epsilon`` and its random-sign control:
    ``correct_clean``, ``correct_attacked``, ``correct_random``, and ``attacked_decode_agrees`` /
    ``random_decode_agrees`` (the clean flow code decoded under the perturbed representation is
    classified as the perturbed image is). See :func:`~invproto.interpret.attacks.perturbed_views`."""
    views = perturbed_views(model, images, labels, z, epsilon, seed)
    outcomes = {f"correct_{kind}": (view.classes == labels).float() for kind, view in views.items()}
    for kind in ("attacked", "random"):
        outcomes[f"{kind}_decode_agrees"] = (views[kind].decode_classes == views[kind].classes).float()
    return outcomes


class ConditionalIINIterator(Iterator):
    """Trains the embedder and flow of a :class:`~invproto.models.cinn.ConditionalIIN`."""

    @dataclass
    class Params:
        n_log_images: int = 8  # rows of the logged pictures (input images)
        n_samples: int = 6  # N(0, I) draws per representation, logged and evaluated
        sample_seed: int = 0  # seed of the logged draws: the same ones at every log
        attack_epsilon: float = 0.0  # FGSM step in [-1, 1] units (2/255 = one 8-bit level) evaluated when > 0

    callbacks = {"eval_op": {"likelihood": likelihood, "representation_fidelity": representation_fidelity,
                             "prediction_agreement": prediction_agreement,
                             "adversarial_invariances": adversarial_invariances, "fid_samples": fid_samples}}
    default_loss = {"target": "invproto.losses.iin.IINLoss"}

    def build_components(self) -> None:
        self.loss = self.build_loss()

    def trainable_parameters(self):
        return self.model.trainable_parameters()

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        return self.loss(*self.model(batch["image"]))

    def log_step(self, batch: Batch) -> dict:
        _, scalars = self.loss(*self.model(batch["image"]))
        images = batch["image"][:self.params.n_log_images]
        n, k, dim = len(images), self.params.n_samples, self.model.code_dim
        representation = self.model.representation(images)
        noise = torch.randn(n * k, dim, generator=torch.Generator().manual_seed(self.params.sample_seed))
        samples = self.model.sample(representation.repeat_interleave(k, 0), noise.to(self.device))
        columns = [images, self.model.reconstruct(images), *samples.unflatten(0, (n, k)).unbind(1)]
        z, _ = self.model(images)
        swaps = self.model.decode(z.roll(-1, 0), representation)
        return {"scalars": scalars, "images": {"invariances": to_hwc(grid_rows(columns)),
                                               "swaps": to_hwc(grid_rows([images, swaps]))}}

    def _read(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's representation of ``images`` and its predicted classes (None if it does not classify)."""
        network = self.model.network
        if not network.can_classify:
            return network.encode(images), None
        representation, logits = network.encode_and_classify(images)
        return representation, logits.argmax(1)

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        model, k = self.model, self.params.n_samples
        images = batch["image"]
        z, log_det = model(images)
        outputs = {"nats_per_dim": self.loss.per_example(z, log_det) / z.shape[1] + HALF_LOG_TWO_PI}
        noise = per_example_normal(batch["index_"], model.code_dim, self.settings.seed, k).to(self.device)
        representation, own_class = self._read(images)
        samples = model.sample(representation.repeat_interleave(k, 0), noise)
        outputs["sample"] = samples.unflatten(0, (len(images), k))[:, 0]
        compared = {"samples": samples, "floor": model.autoencoder.decode(model.codes(images)),
                    "ceiling": images.roll(-1, 0)}
        for kind, others in compared.items():
            repeats = k if kind == "samples" else 1
            reference = representation.repeat_interleave(repeats, 0)
            other_representation, other_class = self._read(others)
            per_example = {"rel_error": relative_error(reference, other_representation),
                           "cosine": cosine(reference, other_representation)}
            if own_class is not None:
                per_example["agree"] = (other_class == own_class.repeat_interleave(repeats)).float()
            for name, values in per_example.items():
                outputs[f"{name}_{kind}"] = values.view(len(images), repeats).mean(1)
        if self.params.attack_epsilon > 0 and model.network.can_classify and "class" in batch:
            outputs.update(attack_outcomes(model, images, batch["class"], z, self.params.attack_epsilon,
                                           self.settings.seed))
        return {name: (to_uint8_hwc(value) if name == "sample" else value.float().cpu().numpy())
                for name, value in outputs.items()}
