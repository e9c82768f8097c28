"""invproto demo: look inside the trained runs under ``logs/`` in a browser.

    streamlit run invproto/demo/app.py -- --logs logs/ [--device cpu]

Started in the repository root, the server listens on 127.0.0.1 only
(``.streamlit/config.toml``); elsewhere add ``--server.address 127.0.0.1``.
``$INVPROTO_DEMO_LOGS`` is the default of ``--logs``.

The sidebar picks a run and one of its checkpoints (``?run=<name>`` in the
address opens a run, and the address follows the choice); the page lists every run
(model, kind, dataset, step, key metrics) and shows the views of the chosen
run's kind (:data:`invproto.demo.views.VIEWS`) plus its metrics curves.
A run with a malformed file is flagged in the list (its ``error``) and, when
chosen, shows that error in a box; the other runs work as usual.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import streamlit as st
import torch

from invproto.demo.kinds import LoadError, first_line
from invproto.demo.loading import cached_model, cached_validation_dataset
from invproto.demo.options import add_demo_options
from invproto.demo.runs import Run, checkpoint_step, filtered_runs, find_runs, run_table
from invproto.demo.views import VIEWS, ViewContext
from invproto.demo.views.metrics import metrics


def parse_args() -> argparse.Namespace:
    """The options after ``--`` on the ``streamlit run`` command line (others are ignored)."""
    parser = argparse.ArgumentParser(prog="streamlit run invproto/demo/app.py --", allow_abbrev=False)
    return add_demo_options(parser).parse_known_args()[0]


def choose_run(runs: list[Run]) -> tuple[Run, Path | None]:
    """The run and checkpoint picked in the sidebar (the latest checkpoint first; ``None`` when there is none)."""
    by_name = {run.name: run for run in runs}
    if "run" not in st.session_state and st.query_params.get("run") in by_name:  # a link to a run: ?run=<name>
        st.session_state["run"] = st.query_params["run"]
    run = by_name[st.sidebar.selectbox("run", list(by_name), key="run")]
    st.query_params["run"] = run.name  # the address names the run shown: it can be shared or reloaded
    forget_other_runs_widgets(run.name)
    checkpoints = run.checkpoints[::-1]
    if not checkpoints:
        return run, None
    name = st.sidebar.selectbox("checkpoint", [p.name for p in checkpoints], key=f"checkpoint:{run.name}",
                                format_func=lambda n: f"step {checkpoint_step(Path(n))} ({n})")
    return run, run.path / "train" / "checkpoints" / name


def forget_other_runs_widgets(run: str) -> None:
    """When another run is chosen, the views' widgets start from their defaults (an upload, a metric choice or
    an image index chosen for one run must not carry over to the next); the run and checkpoint choices stay."""
    if st.session_state.get("shown_run") not in (None, run):
        for key in list(st.session_state):
            if key not in ("run", "shown_run", "runs_filter", "runs_sort") and not str(key).startswith("checkpoint:"):
                del st.session_state[key]
    st.session_state["shown_run"] = run


def show_run_table(runs: list[Run]) -> None:
    """Every run with its kind, dataset, step and key metrics; filtered by a text and sorted by a column."""
    table = run_table(runs)
    left, right = st.columns([3, 1])
    text = left.text_input("filter runs (name, model, kind, dataset)", key="runs_filter")
    sort_by = right.selectbox("sort by", ["newest first", "run", *table.columns.drop("error", errors="ignore")],
                              key="runs_sort")
    shown = filtered_runs(table, text, None if sort_by == "newest first" else sort_by)
    st.table(shown)
    if len(shown) < len(table):
        st.caption(f"{len(shown)} of {len(table)} runs")


def load_context(run: Run, checkpoint: Path | None, device: str) -> ViewContext:
    """The run's model and validation images for its views (a warning box when only the images cannot load);
    :class:`LoadError` when the model cannot load."""
    if checkpoint is None:
        raise LoadError(f"{run.name} has no checkpoint in train/checkpoints/; train it (edflow -b <config> -t) "
                        f"or resume it (edflow -p {run.path} -t)")
    try:
        modified_ns = checkpoint.stat().st_mtime_ns
        model = cached_model(str(run.path), str(checkpoint), modified_ns, device)
    except OSError as error:
        raise LoadError(f"cannot read checkpoint {checkpoint}: {first_line(error)}") from None
    try:
        dataset = cached_validation_dataset(str(run.path))
    except LoadError as error:
        st.warning(f"invproto: {error}")
        dataset = None
    return ViewContext(run=run, model=model, dataset=dataset, device=torch.device(device),
                       model_key=f"{run.path}:{checkpoint}:{modified_ns}:{device}")


def run_views(run: Run, checkpoint: Path | None, device: str) -> tuple[list, ViewContext | None]:
    """Describe the run; the views of its kind and their context. No views (after an error box) when the
    run's config or model cannot be loaded."""
    try:
        st.caption(f"{run.model} ({run.kind}) trained on {run.dataset}"
                   + (f", checkpoint {checkpoint.name}" if checkpoint else ""))
        views = VIEWS.get(run.kind, [])
        return views, (load_context(run, checkpoint, device) if views or checkpoint is None else None)
    except LoadError as error:
        st.error(f"invproto: {error}")
        return [], None


def main() -> None:
    st.set_page_config(page_title="invproto demo", layout="wide")
    args = parse_args()
    st.sidebar.title("invproto demo")
    runs = find_runs(Path(args.logs))
    if not runs:
        st.warning(f"No runs under {Path(args.logs).resolve()}: train one (edflow -b configs/quickstart.yaml -t) "
                   f"or point the demo elsewhere (streamlit run invproto/demo/app.py -- --logs <dir>).")
        st.stop()
    run, checkpoint = choose_run(runs)
    st.sidebar.caption(f"runs from {Path(args.logs).resolve()}; models on {args.device}")

    st.subheader("Runs")
    show_run_table(runs)
    st.header(run.name)
    views, ctx = run_views(run, checkpoint, args.device)
    tabs = st.tabs([title for title, _ in views] + ["Metrics"])
    for tab, (title, view) in zip(tabs, views):
        with tab, torch.inference_mode():
            try:
                view(ctx)
            except Exception as error:  # one view that cannot draw this model (e.g. no prototype images yet)
                st.error(f"invproto: {title} cannot be shown for {run.name}: {type(error).__name__}: "
                         f"{first_line(error)}")
    with tabs[-1]:
        metrics(run, runs)


main()
