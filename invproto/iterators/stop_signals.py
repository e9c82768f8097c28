"""Stopping a run on SIGINT or SIGTERM between two training steps, with the state of the last one saved.

edflow's own handler saves a checkpoint from inside whatever the process is
doing when the signal arrives -- halfway through an optimizer step, or
through another checkpoint write -- and exits with status 0, as if the run
had finished. :class:`StopSignals` replaces it: its handler only records the
signal. After each training step the iterator asks :meth:`StopSignals.requested`;
then it saves that step's complete state, prints one line saying where and how
to resume, and exits with status 128 + the signal number (130 for Ctrl-C, 143
for SIGTERM, a scheduler's preemption), so a scheduler sees that the run did
not finish. A second Ctrl-C before that interrupts at once.

Under torchrun every rank must stop after the same step: the ranks agree
through :func:`invproto.distributed.any_rank`, which costs no wait for the GPU.
"""

from __future__ import annotations

import signal
import threading

from invproto import distributed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Records SIGINT/SIGTERM instead of acting on them; see the module docstring."""

    def __init__(self):
        self.received: signal.Signals | None = None

    def install(self) -> None:
        """Become the handler of SIGINT and SIGTERM (signal handlers live in the main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._record)

    @staticmethod
    def restore_defaults() -> None:
        """SIGTERM ends the process, SIGINT raises KeyboardInterrupt (for runs with nothing to save)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _record(self, signum: int, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user does not want to wait for the step
        self.received = signal.Signals(signum)

    def requested(self) -> bool:
        """Whether this process -- or, under torchrun, any rank -- received a stop signal."""
        return distributed.any_rank(self.received is not None)

    def exit_status(self) -> int:
        """128 + the signal number, the shell's convention for a process ended by a signal."""
        return 128 + int(self.received or signal.SIGTERM)

    def describe(self) -> str:
        return self.received.name if self.received is not None else "a stop signal on another process"
