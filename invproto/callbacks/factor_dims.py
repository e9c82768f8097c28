"""How many code dimensions each factor deserves (IIN's ``dim_callback``).

Given first-stage codes ``za``, ``zb`` ``(N, D)`` of factor pairs (example
``i`` shares factor ``factor[i]``), the estimate is the reference formula:

1. ``V = Σ_d Var_d`` -- population variance of each dimension over all ``2N``
   stacked codes, summed;
2. for each named factor ``f`` (examples ``I_f``, every factor but the last):
   ``m_f = ½(mean_{I_f} za + mean_{I_f} zb)`` and
   ``s_f = Σ_d mean_{i ∈ I_f}[(za_id − m_fd)(zb_id − m_fd)] / V``,
   the share of the variance the pairs sharing ``f`` have in common;
3. the residual (last factor) scores ``s = 1``;
4. ``p = softmax(s)``;
5. ``N_f = ⌊p_f·D⌋`` for every factor but the last, which gets the rest.

The result is a ``factor_config`` for :class:`~invproto.models.iin.FactorIIN`.
"""

from __future__ import annotations

import numpy as np

from invproto import distributed
from invproto.callbacks.base import evaluation_callback


def estimate_factor_dims(za: np.ndarray, zb: np.ndarray, factor: np.ndarray, n_factors: int) -> list[int]:
    """Dimensions per factor (``n_factors`` ints adding up to ``D``; the last is the residual).

    ``za``, ``zb``: ``(N, D)`` codes of the pairs' first and second images;
    ``factor``: ``(N,)`` int, the factor each pair shares (never the residual).
    """
    za, zb, factor = np.asarray(za, np.float64), np.asarray(zb, np.float64), np.asarray(factor)
    dim = za.shape[1]
    total_variance = np.concatenate([za, zb]).var(axis=0).sum()
    scores = np.ones(n_factors)
    for f in range(n_factors - 1):
        members = factor == f
        if not members.any():
            raise ValueError(f"no pair shares factor {f}: cannot estimate its dimensionality")
        a, b = za[members], zb[members]
        mean = 0.5 * (a.mean(axis=0) + b.mean(axis=0))
        scores[f] = ((a - mean) * (b - mean)).mean(axis=0).sum() / total_variance
    shares = np.exp(scores - scores.max())
    shares /= shares.sum()
    dims = [int(np.floor(p * dim)) for p in shares[:-1]]
    return dims + [dim - sum(dims)]


@evaluation_callback
def dim_callback(root, data_in, data_out, config):
    """Prints and records ``factor_dim_<k>`` from the evaluation outputs ``za``, ``zb``, ``factor``."""
    labels = data_out.labels
    dims = estimate_factor_dims(labels["za"], labels["zb"], labels["factor"], data_in.n_factors)
    if distributed.is_main_process():  # under torchrun every rank estimates the same dimensions
        print(f"estimated factor dimensionalities: {dims}", flush=True)
    return {f"factor_dim_{k}": n for k, n in enumerate(dims)}
