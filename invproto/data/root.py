"""Where datasets live on disk, and the one error raised when they are absent.

Resolution order of the dataset root:

1. the config key ``data.root``,
2. the environment variable ``INVPROTO_DATA``,
3. ``./data`` (relative to the working directory, i.e. the repository root).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence


class DataNotFoundError(SystemExit):
    """Dataset files are missing and could not be downloaded.

    A ``SystemExit`` so that the edflow CLI prints the one-line message alone,
    without a traceback (the message already says what to do).
    """


class CorruptDataError(SystemExit):
    """A dataset file exists but its content is not what its format promises."""


def data_root(config: Mapping | None = None) -> Path:
    """Return the dataset root directory (it need not exist yet)."""
    configured = ((config or {}).get("data") or {}).get("root")
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("INVPROTO_DATA"):
        return Path(os.environ["INVPROTO_DATA"]).expanduser()
    return Path("data")


def missing_files_message(dataset: str, files: Sequence[str], searched: Sequence[Path],
                          how_to_provide: str) -> str:
    """One line: which files are missing, where we looked, how to provide them."""
    where = ", ".join(str(p) for p in searched)
    return (f"invproto: {dataset} files not found: {', '.join(files)} (looked in {where}); "
            f"{how_to_provide}")
