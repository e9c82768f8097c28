"""Check a logs folder the way the demo reads it: ``python -m invproto.demo.check [LOGS]``.

Reads every run under ``LOGS`` (default ``logs``) as the demo's run table does
-- its config (model, kind, datasets; refused when it names code outside
``invproto.``, nothing is imported), ``results/scores.yaml`` and
``metrics.csv`` -- and prints one line per run that the demo would flag,
``invproto: <run>: <file> <problem>``, on stderr. Exit status 0 when every run
reads cleanly, 1 otherwise. Useful before opening the demo on a folder someone
else wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from invproto.demo.kinds import LoadError
from invproto.demo.runs import Run, described, find_runs


def problems(run: Run) -> list[str]:
    """What the demo cannot read of ``run``: one message per malformed part."""
    found = []
    for read in (lambda: described(run), lambda: run.scores, run.metrics):
        try:
            read()
        except LoadError as error:
            found.append(str(error))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invproto.demo.check", description=__doc__.split("\n")[0])
    parser.add_argument("logs", nargs="?", default="logs", type=Path, help="a logs folder or one run")
    logs = parser.parse_args(argv).logs
    runs = find_runs(logs)
    if not runs:
        print(f"invproto: no runs in {logs}; pass the logs folder edflow writes (logs/ where it ran)", file=sys.stderr)
        return 1
    messages = [message for run in runs for message in problems(run)]
    for message in messages:
        print(f"invproto: {message}", file=sys.stderr)
    if not messages:
        print(f"{len(runs)} run{'' if len(runs) == 1 else 's'} read cleanly")
    return 1 if messages else 0


if __name__ == "__main__":
    sys.exit(main())
