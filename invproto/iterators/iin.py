"""Training and evaluating invertible interpretation networks.

* :class:`IINIterator` -- an :class:`~invproto.models.iin.IIN` on single
  images (``image``): NLL of the first-stage codes under the flow, reported
  in nats/dim and bits/dim. An autoencoder first stage's codes are, in
  training, samples of its posterior (``train_codes: sample``, as the IIN
  reference trains; drawn by (seed, step, rank)) or its mean (``mode``);
  evaluation scores the means; when the first stage can decode, logs decoded
  N(0, I) samples and evaluates their FID (``fid_samples``, one sample per
  evaluated example, seeded by the example's index).
* :class:`FactorIINIterator` -- a :class:`~invproto.models.iin.FactorIIN`
  (dIIN) on factor pairs (``image1``, ``image2``, ``factor``) with the
  :class:`~invproto.losses.iin.FactorLoss`; logs decoded factor-swap grids
  when the first stage can decode.
* :class:`DimensionEvaluator` -- evaluation only (``edflow -p ... -c <ckpt>``,
  no ``-t``): encodes both images of every validation pair with the model
  (a classifier, or an autoencoder's posterior mean) and estimates how many
  dimensions each factor needs (:func:`~invproto.callbacks.factor_dims.dim_callback`).

The loss is ``config["loss"]`` (``{target, params}``), by default
:class:`~invproto.losses.iin.IINLoss` resp. ``FactorLoss`` with ``rho`` 0.975.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from invproto.callbacks.factor_dims import dim_callback
from invproto.callbacks.fid import fid_samples
from invproto.callbacks.likelihood import likelihood
from invproto.config.schema import checked
from invproto.data.pairs import factor_labels
from invproto.errors import ConfigError
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.iterators.factor_pairs import pair_codes
from invproto.iterators.seeding import step_generator
from invproto.losses.iin import HALF_LOG_TWO_PI
from invproto.pictures import per_example_normal, to_hwc, to_uint8_hwc


@dataclass
class TrainCodes:
    """Which codes of an autoencoder first stage the flow trains on (other first stages have one code)."""

    train_codes: str = checked("sample", choices=("sample", "mode"))  # posterior samples (the reference) | means


class IINIterator(Iterator):
    """Trains the flow of an :class:`~invproto.models.iin.IIN` (the first stage stays frozen)."""

    @dataclass
    class Params(TrainCodes):
        n_log_images: int = 16  # images per logged grid (inputs; decoded N(0, I) samples)
        sample_seed: int = 0  # seed of the logged N(0, I) samples: the same ones at every log

    callbacks = {"eval_op": {"likelihood": likelihood, "fid_samples": fid_samples}}
    default_loss = {"target": "invproto.losses.iin.IINLoss"}

    def build_components(self) -> None:
        self.loss = self.build_loss()

    def trainable_parameters(self):
        return self.model.flow.parameters()

    def train_generator(self) -> torch.Generator | None:
        """This step's draws of sampled codes (``train_codes: sample``), else None: the posterior means."""
        return step_generator(self) if self.params.train_codes == "sample" else None

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        return self.loss(*self.model(batch["image"], self.train_generator()))

    def log_step(self, batch: Batch) -> dict:
        _, scalars = self.loss(*self.model(batch["image"]))
        images = {"inputs": to_hwc(batch["image"][:self.params.n_log_images])}
        if self.model.can_decode:
            generator = torch.Generator().manual_seed(self.params.sample_seed)
            noise = torch.randn(self.params.n_log_images, self.model.code_dim, generator=generator)
            images["samples"] = to_hwc(self.model.decode(noise.to(self.device)))
        return {"scalars": scalars, "images": images}

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per example: ``nats_per_dim`` of its code; with a decoder, also ``sample`` (uint8 HWC), the
        decoding of N(0, I) noise seeded by ``(seed, example index)``."""
        z, log_det = self.model(batch["image"])
        nats = self.loss.per_example(z, log_det) / z.shape[1] + HALF_LOG_TWO_PI
        outputs = {"nats_per_dim": nats.float().cpu().numpy()}
        if self.model.can_decode:
            noise = per_example_normal(batch["index_"], z.shape[1], self.settings.seed)
            outputs["sample"] = to_uint8_hwc(self.model.decode(noise.to(self.device)))
        return outputs


class FactorIINIterator(IINIterator):
    """Trains a :class:`~invproto.models.iin.FactorIIN` on factor pairs with the ``FactorLoss``; logs the factor-swap
    grids by factor name (``swap_shape``, ``swap_color``, ``swap_residual`` on Sprites)."""

    reads_pairs = True

    @dataclass
    class Params(TrainCodes):
        n_swap_images: int = 6  # n: each logged swap grid is n x n (target i with factor k of source j)

    callbacks = {"eval_op": {"likelihood": likelihood}}
    default_loss = {"target": "invproto.losses.iin.FactorLoss"}

    def _pair_outputs(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """The loss's inputs ``(z1, z2, log_det1, log_det2, shared)`` for a batch of pairs (codes drawn from
        ``generator`` when given)."""
        z1, log_det1 = self.model(batch["image1"], generator)
        z2, log_det2 = self.model(batch["image2"], generator)
        return z1, z2, log_det1, log_det2, self.model.factor_mask(batch["factor"])

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        return self.loss(*self._pair_outputs(batch, self.train_generator()))

    def log_step(self, batch: Batch) -> dict:
        _, scalars = self.loss(*self._pair_outputs(batch))
        n = self.params.n_swap_images
        targets, sources = batch["image1"][:n], batch["image2"][:n]
        images = {"targets": to_hwc(targets), "sources": to_hwc(sources)}
        if self.model.can_decode:
            for k, name in enumerate(self.factor_names()):
                images[f"swap_{name}"] = to_hwc(self.model.swap_grid(targets, sources, k))
        return {"scalars": scalars, "images": images}

    def factor_names(self) -> list[str]:
        """The flow's factors by name: the pair dataset's ``factor_names``, then ``residual`` (``factor_<k>`` for a
        dataset without names or with another count)."""
        n = self.model.n_factors
        return factor_labels(self.validation_dataset, n) or [f"factor_{k}" for k in range(n)]

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        per_example = self.loss.per_example(*self._pair_outputs(batch))
        dims = 2 * self.model.code_dim
        return {"nats_per_dim": (per_example / dims + HALF_LOG_TWO_PI).float().cpu().numpy()}


class DimensionEvaluator(Iterator):
    """Evaluation only: first-stage codes ``za``, ``zb`` of each validation pair for ``dim_callback``.

    Overlay for a classifier or autoencoder config, run with ``-c <checkpoint>``
    and without ``-t`` (see ``configs/cmnist_dimeval.yaml``). Only the model
    weights of the checkpoint are read.
    """

    callbacks = {"eval_op": {"dim_callback": dim_callback}}
    reads_pairs = True

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        raise ConfigError("DimensionEvaluator only evaluates; run it without -t and pass the "
                          "checkpoint to evaluate with -c")

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        return pair_codes(self.model, batch)

    def load_checkpoint_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
