"""Write one benchmark figure as ``benchmarks/results/<name>.json``.

Every figure in the README's results table comes from such a file; the schema
is fixed by DEVELOPERS.md::

    {"value": ..., "unit": ..., "target": ..., "command": ..., "device": ...,
     "wall_s": ..., "date": ...}
"""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def describe_device() -> str:
    """'cuda: <GPU name>' when a GPU is used, else 'cpu: <N> cores <processor>'."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {os.cpu_count()} cores {platform.processor() or platform.machine()}"


def invocation() -> str:
    """The command line that ran the current benchmark script (``python -m benchmarks.x ...``)."""
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.orig_argv[1:]])


def write_result(name: str, value, unit: str, target, wall_s: float, command: str | None = None,
                 device: str | None = None, **extra) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path.

    ``extra`` keys (e.g. ``steps``, ``n_images``) are stored beside the
    required ones so the figure can be reproduced and understood.
    """
    record = {
        "value": value,
        "unit": unit,
        "target": target,
        "command": command or invocation(),
        "device": device or describe_device(),
        "wall_s": round(float(wall_s), 2),
        "date": datetime.date.today().isoformat(),
        **extra,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{name}: {value} {unit} (target {target}) -> {path}")
    return path


def write_results(figures: list[tuple[str, object, str, object]], wall_s: float, dry_run: bool = False,
                  **common) -> None:
    """Write each ``(name, value, unit, target)`` with the shared ``common`` fields; ``dry_run`` only prints."""
    for name, value, unit, target in figures:
        if dry_run:
            print(f"{name}: {value} {unit} (target {target}) [dry run, not written] {common}")
        else:
            write_result(name, value, unit, target, wall_s, **common)
