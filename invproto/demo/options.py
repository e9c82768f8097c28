"""The demo's own command-line options, shared by the page (``app.py``) and ``invproto-demo`` (``__main__.py``)."""

from __future__ import annotations

import argparse
import os


def add_demo_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--logs`` (default ``$INVPROTO_DEMO_LOGS``, else ``logs``) and ``--device`` (default ``cpu``)."""
    parser.add_argument("--logs", default=os.environ.get("INVPROTO_DEMO_LOGS", "logs"),
                        help="directory of runs (edflow's logs/), or one run directory")
    parser.add_argument("--device", default="cpu", help="torch device the models run on (cpu, cuda, cuda:1)")
    return parser
