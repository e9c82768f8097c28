"""Which file a config key came from, for error messages.

edflow merges the ``-b`` files left to right with a shallow ``dict.update``
and then applies ``--a/b value`` overrides; it keeps no record of where a key
came from. We re-read the same command line to answer two questions:

* :meth:`ConfigSources.origin` -- where was this key set?
* :meth:`ConfigSources.home` -- which file should define this section?
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml


@dataclass
class ConfigSources:
    files: list[tuple[str, dict]] = field(default_factory=list)  # (path, content), in -b order
    cli_keys: list[str] = field(default_factory=list)  # dotted keys given as --a/b value

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None) -> "ConfigSources":
        argv = list(sys.argv[1:] if argv is None else argv)
        paths, cli_keys = [], []
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg in ("-b", "--base"):
                i += 1
                while i < len(argv) and not argv[i].startswith("-"):
                    paths.append(argv[i])
                    i += 1
                continue
            if arg in ("-p", "--project") and i + 1 < len(argv) and argv[i + 1].endswith(".yaml"):
                paths.insert(0, argv[i + 1])
            elif arg.startswith("--") and arg not in ("--train", "--retrain", "--debug"):
                cli_keys.append(arg[2:].split("=")[0].replace("/", "."))
            i += 1
        files = []
        for path in paths:
            try:
                files.append((path, yaml.safe_load(Path(path).read_text()) or {}))
            except (OSError, yaml.YAMLError):
                continue
        return cls(files, cli_keys)

    def origin(self, dotted_key: str) -> str | None:
        """The file (or 'the command line') that set ``dotted_key``, if known."""
        if any(dotted_key == k or dotted_key.startswith(k + ".") for k in self.cli_keys):
            return "the command line"
        top = dotted_key.split(".")[0]
        for path, content in reversed(self.files):
            if isinstance(content, dict) and top in content:
                return path if _has_path(content, dotted_key) else None
        return None

    def home(self, dotted_key: str) -> str:
        """The file that defines the section of ``dotted_key`` (else the first -b file)."""
        top = dotted_key.split(".")[0]
        for path, content in reversed(self.files):
            if isinstance(content, dict) and top in content:
                return path
        return self.files[0][0] if self.files else "your config file"


def _has_path(content: dict, dotted_key: str) -> bool:
    node = content
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
