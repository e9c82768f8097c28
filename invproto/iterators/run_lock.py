"""One trainer per run directory: ``<run>/trainer.lock`` while a process trains it.

The lock file holds the trainer's host, PID and process start time. A second
``edflow -p <run> -t`` finds it and stops in one line naming that PID. A lock
whose process is gone -- killed with SIGKILL, a crashed machine -- is taken
over: its PID no longer runs, or runs another process (PID reuse: the start
time differs). A lock from another host cannot be checked from here and is
respected; the message says to delete it if that trainer is gone.

Checking the lock and writing it (atomically, temporary file + rename) happen
under an ``flock`` on ``<run>/.trainer.lock.guard``, so of two trainers that
start at once only one gets the lock. The lock is released
(removed, if it is still this process's) when training ends, also by an
exception or a stop signal, and at interpreter exit. Under torchrun only
rank 0 holds it; evaluation (``edflow -p`` without ``-t``) needs none.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

import psutil

from invproto.errors import RunError

LOCK_NAME = "trainer.lock"


def _this_process() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": psutil.Process(pid).create_time()}


def _alive(holder: dict) -> bool:
    """Whether the process recorded in ``holder`` still runs (on this host; another host's counts as alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        started = psutil.Process(int(holder["pid"])).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, KeyError, ValueError, TypeError):
        return False
    except psutil.AccessDenied:
        return True
    return abs(started - float(holder.get("started", -1))) < 1.0  # another process under a reused PID


@contextlib.contextmanager
def _guard(run_root: Path):
    with open(run_root / f".{LOCK_NAME}.guard", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


class RunLock:
    """The trainer lock of ``run_root`` (see the module docstring)."""

    def __init__(self, run_root: str | os.PathLike):
        self.root = Path(run_root)
        self.path = self.root / LOCK_NAME
        self.me = _this_process()
        self.held = False
        self.took_over: dict | None = None  # the stale holder replaced, if any

    def acquire(self) -> RunLock:
        """Hold the lock, or raise :class:`RunError` naming the live trainer that holds it."""
        with _guard(self.root):
            holder = self._read()
            if holder is not None and _alive(holder) and holder.get("pid") != self.me["pid"]:
                where = "" if holder.get("host") == self.me["host"] else f" on {holder.get('host')}"
                raise RunError(
                    f"{self.root} is being trained by process {holder.get('pid')}{where} (lock {self.path}); "
                    f"wait for it or stop it, or delete the lock file if that process is gone")
            self.took_over = holder if holder is not None and holder.get("pid") != self.me["pid"] else None
            tmp = self.path.with_name(f".{LOCK_NAME}.{self.me['pid']}.tmp")
            tmp.write_text(json.dumps(self.me) + "\n")
            os.replace(tmp, self.path)
        self.held = True
        atexit.register(self.release)
        return self

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {"pid": "unknown", "host": "an unknown host"}  # unreadable: from another host or another version

    def release(self) -> None:
        """Remove the lock if this process still holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError), _guard(self.root):
            if self._read() == self.me:
                self.path.unlink()


def is_training(run_root: str | os.PathLike) -> bool:
    """Whether a live trainer holds ``run_root``'s lock (a lock of another host counts as live)."""
    holder = RunLock(run_root)._read()
    return holder is not None and _alive(holder)


def hold_run_lock(run_root: str | os.PathLike) -> RunLock | None:
    """Rank 0 takes the lock of ``run_root`` (announcing a stale one it took over); every rank raises if it is held.

    Returns the held lock on rank 0, None on the other ranks.
    """
    from invproto import distributed
    from invproto.config.run import abort_cleanly

    lock, refusal = None, None
    if distributed.is_main_process():
        try:
            lock = RunLock(run_root).acquire()
        except RunError as error:
            refusal = str(error)
        if lock is not None and lock.took_over is not None:
            print(f"invproto: took over the lock of process {lock.took_over.get('pid')}, which no longer runs",
                  file=sys.stderr, flush=True)
    refusal = distributed.broadcast_from_main(refusal)
    if refusal is not None:
        with abort_cleanly():  # removes this call's empty eval/<time> folder
            raise RunError(refusal)
    return lock
