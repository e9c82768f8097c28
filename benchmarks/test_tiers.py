"""Wall time of the fast test tier (``make test-fast``: every test not marked ``slow``).

Runs the same pytest command as the Makefile's ``test-fast`` target in a
subprocess, with the same environment (``INVPROTO_DATA`` defaulting to
``../shared/data``, ``WANDB_MODE=offline``), and times it end to end::

    .venv/bin/python -m benchmarks.test_tiers

Writes ``tests.fast_tier_seconds`` (target < 120 s on an idle 2-core machine),
with pytest's summary (``n passed, n deselected``) as the note. A tier with
failing tests writes nothing: its time would not be the tier's.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_io import write_result

REPO = Path(__file__).resolve().parents[1]
PYTEST_ARGS = ["-m", "pytest", "-q", "--durations=20", "-m", "not slow", "tests"]


def run_fast_tier() -> tuple[float, int, str]:
    """Run the fast tier in the repository root; return (wall seconds, exit status, output)."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.setdefault("INVPROTO_DATA", str((REPO.parent / "shared" / "data").resolve()))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *PYTEST_ARGS], cwd=REPO, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, result.returncode, result.stdout + result.stderr


def summary(output: str) -> str:
    """pytest's final counts without the warnings, e.g. '312 passed, 3 skipped, 40 deselected'."""
    for line in reversed(output.strip().splitlines()):
        counts = re.findall(r"\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed)", line)
        if counts:
            return ", ".join(counts)
    return "no pytest summary found"


def main() -> None:
    wall, status, output = run_fast_tier()
    note = summary(output)
    if status != 0:
        sys.exit(f"fast tier failed (exit {status}, {note}) after {wall:.1f} s; nothing written\n{output[-4000:]}")
    write_result("tests.fast_tier_seconds", round(wall, 1), "s", "< 120", wall, note=note,
                 pytest="INVPROTO_DATA=../shared/data WANDB_MODE=offline .venv/bin/python "
                        + " ".join(shlex.quote(a) for a in PYTEST_ARGS))


if __name__ == "__main__":
    main()
