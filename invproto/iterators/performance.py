"""How a training step runs on the hardware: mixed precision, ``torch.compile``, memory layout, timing.

The config section ``performance`` (:class:`~invproto.config.schema.PerformanceParams`)
chooses, all off by default::

    performance:
      amp: bf16            # null | bf16 | fp16: the forward and loss under autocast
      compile: true        # torch.compile the training step (forward + loss; backward via AOTAutograd)
      compile_backend: inductor
      channels_last: true  # model weights and 4-d inputs in NHWC memory layout

None of them changes the maths beyond float rounding: the same seed gives
the same losses within the tolerance of the chosen precision.

* ``bf16`` needs no loss scaling. ``fp16`` scales the loss of the main
  optimizer with a :class:`torch.amp.GradScaler`; iterators that step other
  optimizers inside their training step (a GAN discriminator) must use
  ``bf16``, which :func:`check_precision` enforces. The scaler decides to skip a
  step on the host, one synchronisation per step; ``bf16`` has none.
* ``compile`` compiles the iterator's ``train_step`` (or the DDP-wrapped step
  under torchrun), so everything a step computes -- model, loss, regularisers
  -- is traced, while the optimizer step stays eager.

:class:`StepTimer` measures training throughput without synchronising the
device on every step: on CUDA it records events around each step and reads
them when asked (at log steps, which synchronise anyway).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

import torch

from invproto.config.schema import PerformanceParams
from invproto.config.validation import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(params: PerformanceParams, other_optimizers: int) -> None:
    """Refuse an unknown ``amp`` and ``fp16`` where the step also drives optimizers the scaler does not see."""
    if params.amp is not None and params.amp not in AMP_DTYPES:
        raise ConfigError(f"config key 'performance.amp' must be null, bf16 or fp16, got '{params.amp}'")
    if params.amp == "fp16" and other_optimizers:
        raise ConfigError("performance.amp fp16 scales the main loss only, but this iterator also steps "
                          f"{other_optimizers} other optimizer(s); use performance.amp bf16")


def autocast(params: PerformanceParams, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``params.amp`` on ``device`` (a no-op context when off)."""
    if params.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[params.amp])


def grad_scaler(params: PerformanceParams, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for ``fp16``; None otherwise (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type) if params.amp == "fp16" else None


def compiled(step: Callable, params: PerformanceParams) -> Callable:
    """``step`` itself, or compiled with ``params.compile_backend`` when ``params.compile``.

    The first call runs eagerly: data-dependent initialisation (ActNorm's
    first batch, k-means prototypes) happens there, so the compiled graph
    never contains it -- a branch on a tensor's value would break the graph
    and recompile the step for every layer size.
    """
    if not params.compile:
        return step
    compiled_step = torch.compile(step, backend=params.compile_backend)
    calls = 0

    def eager_first(*args, **kwargs):
        nonlocal calls
        calls += 1
        return (step if calls == 1 else compiled_step)(*args, **kwargs)

    return eager_first


def memory_format(params: PerformanceParams) -> torch.memory_format:
    """``torch.channels_last`` when asked for, else ``torch.contiguous_format``."""
    return torch.channels_last if params.channels_last else torch.contiguous_format


class StepTimer:
    """Images per second of repeated steps, without synchronising the device on every step.

    ``with timer.step(n_images): ...`` times one step. On the CPU that is a
    wall-clock interval; on CUDA, a pair of events recorded on the current
    stream, read (``elapsed_time`` needs the end event finished) only by
    :attr:`images_per_s`.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.images, self.seconds = 0, 0.0
        self._pending: list[tuple[int, torch.cuda.Event, torch.cuda.Event]] = []

    @contextlib.contextmanager
    def step(self, n_images: int):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((n_images, start, end))
        else:
            started = time.perf_counter()
            yield
            self.add(n_images, time.perf_counter() - started)

    def add(self, images: int, seconds: float) -> None:
        self.images += images
        self.seconds += seconds

    def _resolve(self) -> None:
        """Fold the recorded CUDA event pairs into the totals (waits for the last one)."""
        if self._pending:
            self._pending[-1][2].synchronize()
            for n_images, start, end in self._pending:
                self.add(n_images, start.elapsed_time(end) / 1000)
            self._pending.clear()

    @property
    def images_per_s(self) -> float | None:
        self._resolve()
        return round(self.images / self.seconds, 1) if self.seconds > 0 else None
