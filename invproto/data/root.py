"""Where datasets live on disk, and the errors raised when they are absent or unreadable.

Resolution order of the dataset root:

1. the config key ``data.root``,
2. the environment variable ``INVPROTO_DATA``,
3. ``./data`` (relative to the working directory, i.e. the repository root).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Mapping, Sequence

from invproto.errors import DataError


class DataNotFoundError(DataError):
    """Dataset files are missing and could not be downloaded; the message names them and the fix."""


class CorruptDataError(DataError):
    """A dataset file exists but its content is not what its format promises."""


class UnreadableDataError(DataError):
    """A dataset file or folder exists but cannot be read (permissions, a file where a folder belongs, I/O)."""


def unreadable(error: OSError, dataset: str | None = None) -> UnreadableDataError:
    """One line for an ``OSError`` met while reading ``dataset``'s files: the path, the reason, the fix."""
    path = error.filename
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM):
        fix = (f"give this user read access (chmod -R a+rX {path}) or set INVPROTO_DATA / data.root "
               "to a readable copy")
    elif error.errno == errno.ENOTDIR:
        fix = ("a file stands where a folder belongs; move it away or set INVPROTO_DATA / data.root "
               "to the right folder")
    elif error.errno == errno.EISDIR:
        fix = "a folder stands where a file belongs; move it away and put the dataset file there"
    else:
        fix = "check the disk and the path, or set INVPROTO_DATA / data.root to another copy"
    what = f"{path}" if path is not None else "a dataset file"
    return UnreadableDataError(f"cannot read {what}{f' for {dataset}' if dataset else ''}: {reason}; {fix}")


def check_root(root: Path) -> Path:
    """``root`` itself, after refusing a dataset root that exists but is not a folder."""
    if root.exists() and not root.is_dir():
        raise UnreadableDataError(f"the dataset root {root} is a file, not a folder; set data.root / "
                                  "INVPROTO_DATA to the folder that holds the datasets")
    return root


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
    files_there = [str(p) for p in searched if p.exists() and not p.is_dir()]
    blocked = f"; {', '.join(files_there)} is a file, not a folder" if files_there else ""
    return (f"invproto: {dataset} files not found: {', '.join(files)} (looked in {where}{blocked}); "
            f"{how_to_provide}")
