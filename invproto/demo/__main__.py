"""``invproto-demo [--logs LOGS] [--device DEVICE] [streamlit options]``: the demo, safe from any directory.

``streamlit run invproto/demo/app.py`` reads ``.streamlit/config.toml`` only
when started in the repository root; elsewhere Streamlit serves every network
interface and sends usage statistics. This command starts the same page with
those settings on the command line, wherever it is run: the server listens on
127.0.0.1 only, no usage statistics, a viewer's toolbar. Options after the
demo's own are passed to Streamlit (e.g. ``--server.port 8502``; to share the
page on a network on purpose, ``--server.address 0.0.0.0``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from invproto.demo.options import add_demo_options

APP = Path(__file__).resolve().with_name("app.py")
SAFE_SETTINGS = {"server.address": "127.0.0.1", "browser.gatherUsageStats": "false", "client.toolbarMode": "viewer"}


def streamlit_command(argv: list[str]) -> list[str]:
    """The ``python -m streamlit run`` command line for the demo's ``argv``."""
    parser = add_demo_options(argparse.ArgumentParser(prog="invproto-demo", description=__doc__.split("\n")[0]))
    args, streamlit_options = parser.parse_known_args(argv)
    given = {option.split("=", 1)[0].removeprefix("--") for option in streamlit_options if option.startswith("--")}
    settings = [f"--{key}={value}" for key, value in SAFE_SETTINGS.items() if key not in given]
    return [sys.executable, "-m", "streamlit", "run", str(APP), *settings, *streamlit_options,
            "--", "--logs", str(Path(args.logs).resolve()), "--device", args.device]


def main(argv: list[str] | None = None) -> None:
    command = streamlit_command(sys.argv[1:] if argv is None else argv)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
