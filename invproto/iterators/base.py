"""The shared base of every invproto iterator (edflow ``TemplateIterator``).

What it does for all models, so that subclasses only write the maths:

* validates the config and seeds everything (:func:`prepare_run`),
* places the model on CUDA when available, else the CPU,
* builds the optimizer and LR schedule from the ``optimizer`` section,
* saves/restores model + optimizer + schedule (+ step, via edflow) with atomic
  writes, and refuses checkpoints written by another model,
* stops with one line on a non-finite loss or weight, never saving that state; resumes from the last
  finite checkpoint (:mod:`~invproto.iterators.nan_recovery`) with this call's hyperparameters
  (:mod:`~invproto.iterators.resume_overrides`); holds ``<run>/trainer.lock`` (:mod:`~invproto.iterators.run_lock`),
* stops on SIGINT/SIGTERM between two steps, the last one saved, with status 128 + signal
  (:mod:`invproto.iterators.stop_signals`),
* runs the step as the ``performance`` section asks (mixed precision,
  ``torch.compile``, channels-last; :mod:`invproto.iterators.performance`),
* writes ``metrics.csv``, ``results/model_info.yaml``; opens wandb for ``edflow -p``
  (:mod:`~invproto.iterators.wandb_evaluation`) and closes it,
* under torchrun, trains on PyTorch's DistributedDataParallel (see below).

A subclass implements three methods on a batch of tensors (images NCHW):

* :meth:`train_step` -> ``(loss, scalars)``, the optimizer step is done here,
* :meth:`log_step` -> ``{"scalars": ..., "images": ...}`` (no gradients),
* :meth:`eval_step` -> ``{name: array}`` stored for the evaluation callbacks,

and lists its evaluation callbacks in ``callbacks``. Factor-pair validation data
for an iterator of single images: :mod:`~invproto.iterators.factor_pairs`.

The training step never waits for the device outside log steps: scalars
stay tensors (0-d, detached) until a log step turns them into floats, the
loss's finiteness is tracked on the device and checked at log steps and
before every checkpoint, and throughput is timed with CUDA events. So a step
on CUDA only queues work, and the host runs ahead to load the next batch.

Under ``torchrun`` nothing changes for a subclass: :mod:`invproto.iterators.ddp`
describes how the step, the evaluation and the scores are shared between the ranks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from edflow.custom_logging import run
from edflow.iterators.template_iterator import TemplateIterator

from invproto import distributed
from invproto.artifacts import RunArtifacts
from invproto.config import instantiate
from invproto.config.run import abort_cleanly, prepare_run
from invproto.config.schema import OptimizerParams, PerformanceParams
from invproto.data.pairs import as_single
from invproto.io import save_checkpoint
from invproto.iterators.data_position import continue_data_order
from invproto.iterators.ddp import average_gradients_before_step, gather_outputs, replicate
from invproto.iterators.factor_pairs import pair_codes, validates_on_pairs, with_dim_callback
from invproto.iterators.hooks import ModelInfoHook, StopOnSignalHook
from invproto.iterators.nan_recovery import all_finite, divergence_message, resume_checkpoint
from invproto.iterators.optimization import build_optimizer, build_schedule
from invproto.iterators.performance import StepTimer, autocast, check_precision, compiled, grad_scaler, memory_format
from invproto.iterators.resume_overrides import keep_configured_hyperparameters
from invproto.iterators.run_lock import hold_run_lock
from invproto.iterators.stop_signals import StopSignals
from invproto.iterators.wandb_evaluation import finish_wandb, start_evaluation_run
from invproto.models.base import load_checkpoint

Batch = dict[str, torch.Tensor]
Scalars = dict[str, torch.Tensor | float]  # logged values: 0-d detached tensors (read at log steps only) or floats


class Iterator(TemplateIterator):
    def __init__(self, config, root, model, *args, **kwargs):
        self.settings = prepare_run(config)
        if not self.reads_pairs and validates_on_pairs(config):  # factor dimensionalities after every epoch
            self.callbacks = with_dim_callback(getattr(type(self), "callbacks", {}))
        distributed.setup()
        self.run_lock = None if config.get("test_mode", False) else hold_run_lock(run.root)
        if not distributed.is_main_process():
            for integration in (config.get("integrations") or {}).values():
                integration["active"] = False  # one wandb run: rank 0's
        os.environ.setdefault("WANDB_DIR", str(Path(run.root).resolve()))
        super().__init__(config, root, model, *args, **kwargs)
        self.device = distributed.device()
        self.performance = PerformanceParams(**self.settings.performance)
        self.model = model.to(self.device, memory_format=memory_format(self.performance))
        self.params = self.Params(**(self.settings.iterator_params or {})) if self.Params is not None else None
        self.build_components()
        self.optimizer_params = optimizer_params = OptimizerParams(**self.settings.optimizer)
        self.optimizer = build_optimizer(self.parameter_groups(), optimizer_params)
        self.schedule = build_schedule(self.optimizer, int(config.get("num_steps") or 1), optimizer_params)
        self.grad_clip_norm = optimizer_params.grad_clip_norm
        check_precision(self.performance, len(self._other_optimizers()))
        self.grad_scaler = grad_scaler(self.performance, self.device)
        # step of the first non-finite loss since the last check, -1 if none (kept on the device)
        self._first_nonfinite_step = torch.tensor(-1, device=self.device)
        self.artifacts = RunArtifacts(run.root)
        self.train_speed, self.inference_speed = StepTimer(self.device), StepTimer(self.device)
        self.epoch_hooks.append(ModelInfoHook(self))
        self.stop_signals = StopSignals()
        if config.get("test_mode", False):  # evaluation has nothing to save: signals stop it at once
            self.stop_signals.restore_defaults()
            if distributed.is_main_process():
                start_evaluation_run(config, run.root)
        else:  # replaces edflow's handlers, which save from inside a running step and exit with 0
            self.stop_signals.install()
            self.hooks.append(StopOnSignalHook(self))
        replicated_step = None if config.get("test_mode", False) else replicate(
            self.train_step, self.model, [p for group in self.optimizer.param_groups for p in group["params"]],
            find_unused_parameters=self.leaves_parameters_unused)
        self.training_step = compiled(replicated_step or self.train_step, self.performance)
        if distributed.is_distributed():
            for optimizer in self._other_optimizers():
                optimizer.register_step_pre_hook(average_gradients_before_step)
            torch.manual_seed(self.settings.seed + distributed.rank())

    # --- to implement -------------------------------------------------------
    def train_step(self, batch: Batch) -> tuple[torch.Tensor, Scalars]:
        """``(loss, scalars)`` of one batch; scalars as detached 0-d tensors (``float()`` would wait for the device)."""
        raise NotImplementedError

    def log_step(self, batch: Batch) -> dict:
        raise NotImplementedError

    def eval_step(self, batch: Batch) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def build_components(self) -> None:
        """Build what the iterator needs besides the model (its loss, its parameters), before the optimizer.

        Called once the settings are validated, the seed is set and the model is
        on ``self.device``; :meth:`parameter_groups` may use what it builds.
        """

    Params: type | None = None  # dataclass of ``iterator_params`` (checked by the config schema) -> ``self.params``
    default_loss: dict | None = None  # the ``{"target", "params"}`` spec used when the config has no ``loss``
    leaves_parameters_unused = False  # some trained parameters get no gradient in some steps (DDP must search)
    reads_pairs = False  # the steps read factor pairs themselves (else: see the module docstring)

    def build_loss(self, **kwargs):
        """``config["loss"]`` (else :attr:`default_loss`) instantiated with ``kwargs``.

        A loss that is an ``nn.Module`` (it holds parameters or buffers) is moved
        to ``self.device``. A loss that cannot be built stops the run with one
        line, and its fresh run directory is removed.
        """
        spec = self.settings.loss if self.settings.loss is not None else self.default_loss
        with abort_cleanly():
            loss = instantiate(spec, "loss", **kwargs)
        return loss.to(self.device) if isinstance(loss, torch.nn.Module) else loss

    def trainable_parameters(self):
        return self.model.parameters()

    def _other_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers the iterator built besides ``self.optimizer``."""
        return [value for value in vars(self).values()
                if isinstance(value, torch.optim.Optimizer) and value is not self.optimizer]

    def parameter_groups(self) -> list[dict]:
        """Optimizer parameter groups (``torch.optim`` style); all trainable parameters share ``optimizer``.

        Override to give some parameters their own ``lr`` or ``weight_decay``;
        the LR schedule scales every group alike. Every parameter of
        :meth:`trainable_parameters` must be in exactly one group.
        """
        return [{"params": list(self.trainable_parameters())}]

    # --- edflow step -------------------------------------------------------
    def step_op(self, model, **batch):
        tensors = self.to_tensors(batch)
        single = tensors if self.reads_pairs else as_single(tensors)  # a pair's first image for single-image steps
        n_images = len(batch["index_"]) * distributed.world_size()  # of the global batch
        trained: dict = {}

        def train_op():
            self.model.train()
            with self.train_speed.step(n_images):
                with autocast(self.performance, self.device):
                    loss, scalars = self.training_step(single)
                self.optimize(loss)
            trained["scalars"] = {**scalars, "loss": loss.detach(), "lr": self.schedule.get_last_lr()[0]}

        def log_op():
            self.stop_if_diverged()
            self.model.eval()
            with torch.no_grad():
                logs = self.log_step(single)
            scalars = {**logs.get("scalars", {}), **trained.get("scalars", {})}
            logs["scalars"] = distributed.mean_scalars_over_ranks({k: float(v) for k, v in scalars.items()})
            self.artifacts.append_metrics({"step": self.get_global_step(), "phase": self.get_split(),
                                           **logs["scalars"]})
            return logs

        def eval_op():
            self.model.eval()
            with self.inference_speed.step(n_images), torch.inference_mode():
                outputs = self.eval_step(single)  # arrays on the host: the device has finished
                if single is not tensors and hasattr(self.model, "encode"):
                    outputs.update(pair_codes(self.model, tensors))
            if distributed.is_distributed():
                outputs = gather_outputs(self.evalhook, outputs, batch["index_"])
            return {"labels": outputs}

        return {"train_op": train_op, "log_op": log_op, "eval_op": eval_op}

    def to_tensors(self, batch: Mapping) -> Batch:
        """Numeric batch entries as tensors on the device; 4-d image arrays NHWC -> NCHW.

        Images are NCHW views of the NHWC arrays, laid out channels-last when
        ``performance.channels_last`` asks for it. On CUDA the arrays are copied
        through pinned memory, so the copy does not wait for the device.
        """
        tensors = {}
        for key, value in batch.items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
                tensor = torch.from_numpy(value)
                if tensor.dim() == 4:
                    tensor = tensor.permute(0, 3, 1, 2)
                if self.device.type == "cuda":
                    tensor = tensor.pin_memory()
                tensor = tensor.to(self.device, non_blocking=True)
                tensors[key] = (tensor.contiguous(memory_format=memory_format(self.performance))
                                if tensor.dim() == 4 else tensor.contiguous())
        return tensors

    def optimize(self, loss: torch.Tensor) -> None:
        """One optimizer + schedule step (the loss scaled under fp16); a non-finite loss is noted for the next check.

        Nothing here waits for the device: :meth:`stop_if_diverged` reads the
        note at log steps and before every checkpoint.
        """
        self._note_nonfinite(distributed.mean_over_ranks(loss.detach()))  # every rank notes the same steps
        self.optimizer.zero_grad(set_to_none=True)
        scaler = self.grad_scaler
        (loss if scaler is None else scaler.scale(loss)).backward()
        if self.grad_clip_norm is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable_parameters(), self.grad_clip_norm)
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)
            scaler.update()
        self.schedule.step()

    def _note_nonfinite(self, loss: torch.Tensor) -> None:
        """Remember the current step if ``loss`` is not finite and none was noted since the last check."""
        first_here = ~torch.isfinite(loss) & (self._first_nonfinite_step < 0)
        self._first_nonfinite_step = torch.where(first_here, self.get_global_step(), self._first_nonfinite_step)

    def stop_if_diverged(self) -> None:
        """Stop the run with one line if a loss since the start was not finite.

        The noted losses are means over the ranks, so every rank stops at the
        same check. The state is then not saved: the last checkpoint on disk
        predates the divergence and is intact.
        """
        first = int(self._first_nonfinite_step)
        if first >= 0:
            raise divergence_message("the loss", first, run.root, self.optimizer_params.lr)

    # --- checkpoints -------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """Everything a checkpoint holds (tensors and plain containers only).

        Subclasses with more state (a discriminator and its optimizer, say)
        extend the dict and :meth:`load_checkpoint_state`.
        """
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "describe": self.model.describe(),
        }
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_checkpoint_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.grad_scaler is not None and "grad_scaler" in state:
            self.grad_scaler.load_state_dict(state["grad_scaler"])

    def save(self, checkpoint_path: str) -> None:
        """Write the checkpoint -- on rank 0 only: every rank holds the same state. A diverged state is never saved."""
        self.stop_if_diverged()
        if not all_finite(self.model.parameters()):
            raise divergence_message("a weight", self.get_global_step(), run.root, self.optimizer_params.lr)
        if distributed.is_main_process():
            save_checkpoint(self.checkpoint_state(), checkpoint_path, keep=self.settings.keep_checkpoints)

    def restore(self, checkpoint_path: str) -> None:
        state = load_checkpoint(checkpoint_path, self.model, "checkpoint",
                                "evaluate it with the config it was trained with (edflow -p <run>) "
                                "or pass a matching checkpoint with -c", map_location=self.device)
        with keep_configured_hyperparameters(self):  # e.g. edflow -p <run> -t --optimizer/lr 1e-4
            self.load_checkpoint_state(state)

    def initialize(self, checkpoint_path=None):
        """edflow's restore; training resumes from the last finite checkpoint, ``metrics.csv`` cut back to its step."""
        if self.config.get("test_mode", False):
            return super().initialize(checkpoint_path)
        resumed = resume_checkpoint(checkpoint_path)
        super().initialize(resumed)
        if checkpoint_path is not None and distributed.is_main_process():
            print(f"invproto: resumed from {resumed} at step {self.get_global_step()}", flush=True)
            self.artifacts.drop_metrics_after(self.get_global_step())

    def _save_final_checkpoint(self) -> None:
        """edflow saves at multiples of ``ckpt_freq`` only (when it is set): keep the last state too."""
        self.stop_if_diverged()  # on every rank, also where the file exists already
        path = Path(self.ckpthook.savename.format(self.get_global_step()))
        if not path.is_file():
            self.save(str(path))

    # --- artifacts ---------------------------------------------------------
    def model_info(self) -> dict:
        parameters = list(self.model.parameters())
        size_bytes = sum(t.numel() * t.element_size() for t in [*parameters, *self.model.buffers()])
        return {
            "model": self.model.describe()["model"],
            "parameters": sum(p.numel() for p in parameters),
            "trainable_parameters": sum(p.numel() for p in parameters if p.requires_grad),
            "size_mb": round(size_bytes / 2 ** 20, 3),
            "train_images_per_s": self.train_speed.images_per_s,
            "inference_images_per_s": self.inference_speed.images_per_s,
            "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                          if self.device.type == "cuda" else ""),
            "processes": distributed.world_size(),
            "global_step": self.get_global_step(),
        }

    def iterate(self, batches):
        if not self.config.get("test_mode", False):  # resumed: the batches an uninterrupted run would see
            continue_data_order(batches["train"], self.get_global_step())
        try:
            super().iterate(batches)
            if not self.config.get("test_mode", False):
                self._save_final_checkpoint()
        finally:
            self.artifacts.write_model_info(self.model_info())
            finish_wandb()
