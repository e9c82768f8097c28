"""Metrics view (every run, no model needed): curves from ``metrics.csv``, tables from ``results/scores.yaml``;
refreshed every few seconds while the run is training.

Each file is shown on its own: a malformed one is an error box naming it, and the other still shows.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from invproto.demo.kinds import LoadError
from invproto.demo.runs import Run, metric_curves, metric_names, per_epoch_metrics
from invproto.iterators.run_lock import is_training

SCORE_TITLES = {"per_epoch": "After each epoch", "evaluations": "Evaluations (edflow -p)"}


REFRESH_SECONDS = 15  # how often the metrics of a run still training are read again


def metrics(run: Run, others: list[Run] = ()) -> None:
    """The run's metric curves (with any of ``others`` overlaid) and its evaluations as tables; an error box for a
    file that cannot be shown. While a trainer holds the run (``trainer.lock``) they refresh by themselves."""
    if is_training(run.path):
        st.caption(f"{run.name} is training: its metrics refresh every {REFRESH_SECONDS} s")
        st.fragment(run_every=REFRESH_SECONDS)(metric_sections)(run, others)
    else:
        metric_sections(run, others)


def metric_sections(run: Run, others: list[Run]) -> None:
    for section in (lambda r: curves(r, others), score_tables):
        try:
            section(run)
        except LoadError as error:
            st.error(f"invproto: {error}")


def curves(run: Run, others: list[Run] = ()) -> None:
    """Chosen metrics over training steps, one line per phase, a point per logged value (``metrics.csv``);
    other runs chosen for comparison are drawn beside, one colour per run and phase."""
    frame = run.metrics()
    names = metric_names(frame)
    if not names:
        st.info(f"{run.name} has no metrics.csv yet: it is written from the first logged step on.")
        return
    chosen = st.multiselect("metrics", names, default=per_epoch_metrics(frame) or names[:2], key="metrics_chosen")
    by_name = {other.name: other for other in others if other.name != run.name}
    compared = st.multiselect("compare with runs", list(by_name), key="metrics_compared")
    st.caption("phases: train / validation = logged steps, epoch_end = evaluation after an epoch, "
               "evaluation = edflow -p")
    frames = {run.name: frame, **{name: by_name[name].metrics() for name in compared}}
    columns = st.columns(2)
    for i, name in enumerate(chosen):
        with columns[i % 2]:
            st.markdown(f"**{name}**")
            st.altair_chart(metric_chart(frames, name), width="stretch")


def metric_chart(frames: dict[str, pd.DataFrame], name: str) -> alt.Chart:
    """Lines with a point per value (one evaluation is one visible point) of ``name`` over steps, coloured by
    phase, or by run and phase when several runs are drawn."""
    long = pd.concat([metric_curves(frame, name).assign(run=run) for run, frame in frames.items()
                      if name in frame.columns], ignore_index=True)
    series = long["phase"] if len(frames) == 1 else long["run"].str.rsplit("_", n=1).str[-1] + " · " + long["phase"]
    long = long.assign(series=series)
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y(f"{name}:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None), tooltip=["run", "phase", "step", name])


def score_tables(run: Run) -> None:
    """The evaluations after each epoch and by ``edflow -p`` (``results/scores.yaml``), a table each."""
    scores = run.scores
    for section, title in SCORE_TITLES.items():
        if scores.get(section):
            st.markdown(f"**{title}** (results/scores.yaml)")
            st.dataframe(pd.DataFrame(scores[section]), hide_index=True)
