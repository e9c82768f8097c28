"""The IIN vector flow's size against the reference's at the reference's shape.

The reference (CompVis/iin, ``configs/*_iin.yaml``) runs 12 blocks on a 64-d
code with coupling MLPs of width 512 and ``hidden_depth: 2``. Its parameter
count is computed here from its layer shapes: per block, ActNorm (``2 D``)
and two affine couplings, each with a scale and a shift
``BasicFullyConnectedNet`` from one half of the code (``D/2``) to the other:
``Linear(D/2, h)``, ``hidden_depth`` x ``Linear(h, h)``, ``Linear(h, D/2)``.

Writes ``iin.flow_params_vs_reference`` = invproto's count / the reference's
(target 1.0), with both counts::

    .venv/bin/python -m benchmarks.flow_params
"""

from __future__ import annotations

import time

from benchmarks.results_io import write_result
from invproto.modules.flow import FlowParams, VectorFlow

REFERENCE_SHAPE = {"in_dim": 64, "n_flow": 12, "hidden_dim": 512, "hidden_depth": 2}


def reference_parameters(in_dim: int, n_flow: int, hidden_dim: int, hidden_depth: int) -> int:
    """Parameters of the reference's ``VectorTransformer`` of this shape, from its layer shapes."""
    half = in_dim // 2
    mlp = ((half + 1) * hidden_dim                         # Linear(D/2, h)
           + hidden_depth * (hidden_dim + 1) * hidden_dim   # hidden_depth x Linear(h, h)
           + (hidden_dim + 1) * half)                       # Linear(h, D/2)
    coupling = 2 * 2 * mlp                                  # 2 couplings x (scale, shift)
    return n_flow * (2 * in_dim + coupling)                 # + ActNorm's loc and log-scale


def main() -> None:
    start = time.perf_counter()
    ours = sum(p.numel() for p in VectorFlow(FlowParams(**REFERENCE_SHAPE)).parameters())
    reference = reference_parameters(**REFERENCE_SHAPE)
    write_result("iin.flow_params_vs_reference", round(ours / reference, 4), "x (invproto / reference parameters)",
                 1.0, time.perf_counter() - start, invproto_parameters=ours, reference_parameters=reference,
                 shape=REFERENCE_SHAPE)


if __name__ == "__main__":
    main()
