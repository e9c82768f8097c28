"""Rebuild the README's results table from ``benchmarks/results/*.json``.

    .venv/bin/python -m benchmarks.results_table          # rewrite README.md in place
    .venv/bin/python -m benchmarks.results_table --check  # exit 1 if README.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.results_io import RESULTS_DIR
from benchmarks.runs import REPO

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def cell(value) -> str:
    """``value`` as text for a Markdown table cell (``|`` escaped, as GitHub's tables require)."""
    return str(value).replace("|", "\\|")


def table() -> str:
    rows = ["| figure | value | target | device | wall (s) | date | command |",
            "|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS_DIR.glob("*.json")):
        r = json.loads(path.read_text())
        rows.append(f"| `{path.stem}` | {cell(r['value'])} {cell(r['unit'])} | {cell(r['target'])} | "
                    f"{cell(r['device'])} | {r['wall_s']} | {r['date']} | `{cell(r['command'])}` |")
    return "\n".join(rows)


def render(readme: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = REPO / "README.md"
    current = path.read_text()
    updated = render(current)
    if args.check:
        return 0 if updated == current else 1
    path.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
