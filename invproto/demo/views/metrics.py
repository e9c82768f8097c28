"""Metrics view (every run, no model needed): curves from ``metrics.csv``, tables from ``results/scores.yaml``.

Each file is shown on its own: a malformed one is an error box naming it, and the other still shows.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from invproto.demo.kinds import LoadError
from invproto.demo.runs import Run, metric_curves, metric_names, per_epoch_metrics

SCORE_TITLES = {"per_epoch": "After each epoch", "evaluations": "Evaluations (edflow -p)"}


def metrics(run: Run) -> None:
    """The run's metric curves and its evaluations as tables; an error box for a file that cannot be shown."""
    for section in (curves, score_tables):
        try:
            section(run)
        except LoadError as error:
            st.error(f"invproto: {error}")


def curves(run: Run) -> None:
    """Chosen metrics over training steps, one line per phase (``metrics.csv``)."""
    frame = run.metrics()
    names = metric_names(frame)
    if not names:
        st.info(f"{run.name} has no metrics.csv yet: it is written from the first logged step on.")
        return
    chosen = st.multiselect("metrics", names, default=per_epoch_metrics(frame) or names[:2], key="metrics_chosen")
    st.caption("phases: train / validation = logged steps, epoch_end = evaluation after an epoch, "
               "evaluation = edflow -p")
    columns = st.columns(2)
    for i, name in enumerate(chosen):
        with columns[i % 2]:
            st.markdown(f"**{name}**")
            st.line_chart(metric_curves(frame, name), x="step", y=name, color="phase", y_label="")


def score_tables(run: Run) -> None:
    """The evaluations after each epoch and by ``edflow -p`` (``results/scores.yaml``), a table each."""
    scores = run.scores
    for section, title in SCORE_TITLES.items():
        if scores.get(section):
            st.markdown(f"**{title}** (results/scores.yaml)")
            st.dataframe(pd.DataFrame(scores[section]), hide_index=True)
