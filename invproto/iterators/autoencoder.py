"""Autoencoder training: L1 + KL (+ PatchGAN), evaluated by KL, L1 and two FIDs.

Each training step encodes the batch, decodes a posterior sample, updates the
discriminator on the detached reconstructions (from ``loss.params.disc_start``
on, with its own optimizer), then returns the autoencoder's loss for the base
class's optimizer step. The loss is ``config["loss"]`` (default
:class:`~invproto.losses.autoencoder.AutoencoderLoss` with its defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from invproto.callbacks.fid import fid_reconstruction, fid_samples, reconstruction
from invproto.config.schema import OptimizerParams
from invproto.data.pairs import as_single
from invproto.errors import CheckpointError
from invproto.iterators.base import Batch, Iterator, Scalars
from invproto.iterators.optimization import build_optimizer, current_factor
from invproto.pictures import per_example_normal, standard_normal, to_hwc, to_uint8_hwc


class AutoencoderIterator(Iterator):
    """Trains :class:`~invproto.models.autoencoder.Autoencoder`; see the module docstring."""

    default_loss = {"target": "invproto.losses.autoencoder.AutoencoderLoss"}

    @dataclass
    class Params:
        renamed_keys: ClassVar[dict[str, tuple[str, str]]] = {  # old key: (new key, how to convert)
            "d_lr_factor": ("discriminator_lr_multiple", "the same number under the name every rate uses")}
        discriminator_lr_multiple: float = 1.0  # discriminator learning rate / optimizer.lr (scheduled alike)
        n_log_images: int = 16  # images per logged grid (batch, fixed examples, N(0, I) samples)

    # eval_op stores (per validation example): kl, l1, reconstruction and sample (uint8 HWC)
    callbacks = {"eval_op": {"reconstruction": reconstruction, "fid_reconstruction": fid_reconstruction,
                             "fid_samples": fid_samples}}

    def build_components(self) -> None:
        self.loss = self.build_loss(in_channels=self.model.params.in_channels)
        self.d_optimizer = None
        if self.loss.discriminator is not None:
            optimizer_params = OptimizerParams(**self.settings.optimizer)
            self.d_optimizer = build_optimizer([{"params": self.loss.discriminator.parameters(),
                                                 "lr_multiple": self.params.discriminator_lr_multiple}],
                                               optimizer_params)
            self._discriminator_lr = self.d_optimizer.param_groups[0]["lr"]
        self._fixed_inputs: torch.Tensor | None = None

    # --- training ----------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """The autoencoder's parameters and the loss's learned log-variance (when on) share the optimizer."""
        return [{"params": [*self.model.parameters(), *self.loss.autoencoder_parameters()]}]

    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        images = batch["image"]
        posterior = self.model.encode(images)
        reconstructions = self.model.decode(posterior.sample())
        step = self.get_global_step()
        scalars = self._discriminator_step(images, reconstructions) if self.loss.gan_active(step) else {}
        loss, ae_scalars = self.loss.autoencoder_loss(images, reconstructions, posterior,
                                                      self.model.last_layer_weight, step)
        return loss, {**scalars, **ae_scalars}

    def _discriminator_step(self, images: torch.Tensor, reconstructions: torch.Tensor) -> Scalars:
        """One optimizer step of the discriminator on real images and detached reconstructions."""
        self.d_optimizer.param_groups[0]["lr"] = self._discriminator_lr * current_factor(self.schedule)
        d_loss, scalars = self.loss.discriminator_loss(images, reconstructions.detach())
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        return scalars

    # --- logging -----------------------------------------------------------
    def fixed_inputs(self) -> torch.Tensor:
        """The first ``n_log_images`` validation images, NCHW on the device: the same in every log."""
        if self._fixed_inputs is None:
            n = min(self.params.n_log_images, len(self.validation_dataset))
            images = np.stack([as_single(self.validation_dataset[i])["image"] for i in range(n)])
            self._fixed_inputs = torch.from_numpy(images).permute(0, 3, 1, 2).to(self.device)
        return self._fixed_inputs

    def log_step(self, batch: Batch) -> dict:
        images = batch["image"][: self.params.n_log_images]
        posterior = self.model.encode(images)
        reconstructions = self.model.decode(posterior.mode())
        fixed = self.fixed_inputs()
        noise = standard_normal((len(fixed), self.model.params.z_dim), self.settings.seed).to(self.device)
        return {
            "scalars": {"l1": float((images - reconstructions).abs().mean()), "kl": float(posterior.kl().mean())},
            "images": {"inputs": to_hwc(images), "reconstructions": to_hwc(reconstructions),
                       "fixed_inputs": to_hwc(fixed), "fixed_reconstructions": to_hwc(self.model(fixed)),
                       "samples": to_hwc(self.model.decode(noise))},
        }

    # --- evaluation ----------------------------------------------------------
    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        """Per example: ``kl`` (nats), ``l1`` (mean |x - x̂| per pixel, x in [-1, 1]), and uint8 HWC images
        ``reconstruction`` (decoded posterior mean) and ``sample`` (decoded N(0, I) noise seeded by
        ``(seed, example index)``, so FID of samples is reproducible)."""
        images = batch["image"]
        posterior = self.model.encode(images)
        reconstructions = self.model.decode(posterior.mode())
        noise = per_example_normal(batch["index_"], self.model.params.z_dim, self.settings.seed)
        return {"kl": posterior.kl().float().cpu().numpy(),
                "l1": (images - reconstructions).abs().flatten(1).mean(1).float().cpu().numpy(),
                "reconstruction": to_uint8_hwc(reconstructions),
                "sample": to_uint8_hwc(self.model.decode(noise.to(self.device)))}

    # --- checkpoints -------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """The base state plus the loss's (discriminator, learned log-variance) and the discriminator's optimizer."""
        state = {**super().checkpoint_state(), "loss": self.loss.state_dict()}
        if self.d_optimizer is not None:
            state["discriminator_optimizer"] = self.d_optimizer.state_dict()
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        super().load_checkpoint_state(state)
        if self.d_optimizer is not None and "discriminator_optimizer" not in state:
            raise CheckpointError("the checkpoint has no discriminator, but the config trains one; "
                                  "set loss.params.discriminator: false or pass a checkpoint trained with it")
        self.loss.load_state_dict(state["loss"])
        if self.d_optimizer is not None:
            self.d_optimizer.load_state_dict(state["discriminator_optimizer"])
