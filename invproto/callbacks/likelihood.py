"""Likelihood of the evaluation split under a flow, per dimension."""

from __future__ import annotations

import math

import numpy as np

from invproto.callbacks.base import evaluation_callback


@evaluation_callback
def likelihood(root, data_in, data_out, config):
    """Mean ``nats_per_dim`` and ``bits_per_dim`` over the evaluation split (per-example ``nats_per_dim`` in)."""
    nats = float(np.mean(data_out.labels["nats_per_dim"]))
    return {"nats_per_dim": nats, "bits_per_dim": nats / math.log(2)}
