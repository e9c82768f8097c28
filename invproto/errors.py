"""The problems invproto reports to its user, as one exception hierarchy.

Library code raises these; it never exits the process. Each message is one
line naming the culprit (a config key, a file, a path) and the fix, without a
prefix. The command-line entries (``edflow`` through :mod:`invproto.compat`,
``invproto-fid``) print ``invproto: <message>`` and exit with
:attr:`InvprotoError.exit_status`; the demo shows the message in an error box.

* :class:`ConfigError` -- an invalid config (a typo'd key, a value out of range);
* :class:`DataError` -- a dataset that is missing, corrupt or does not fit the model;
* :class:`CheckpointError` -- a checkpoint that cannot be read or belongs to another model;
* :class:`RunError` -- a run directory that cannot be used now (locked by another
  trainer, no checkpoint to evaluate, a disk that is full);
* :class:`TrainingStopped` -- training stopped on SIGINT/SIGTERM after saving its
  state; its exit status is 128 + the signal (130, 143), as a shell reports it.
"""

from __future__ import annotations


class InvprotoError(Exception):
    """A problem the user can fix; ``str(error)`` is one line naming it and the fix."""

    exit_status = 1

    def __init__(self, message: str):
        super().__init__(message.removeprefix("invproto: "))


class ConfigError(InvprotoError):
    """An invalid config; the message names the key and the fix."""


class DataError(InvprotoError):
    """Data that is missing, unreadable, corrupt or does not fit the model."""


class CheckpointError(InvprotoError):
    """A checkpoint that cannot be loaded into this model."""


class RunError(InvprotoError):
    """A run directory that cannot be used as asked."""


class TrainingStopped(RunError):
    """Training stopped on a signal, its last step saved; the message says how to resume."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status
