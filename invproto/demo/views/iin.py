"""IIN and dIIN views, in the flow's interpretable space ``z`` (decoded through the first stage).

IIN: samples ``decode(T * N(0, I))`` at a temperature ``T``; the straight line
between two images' ``z``. dIIN: the factor swap grid between two images and a
per-factor walk from one image to the other.
"""

from __future__ import annotations

import streamlit as st
import torch

from invproto.data.pairs import factor_labels
from invproto.demo.views.common import ViewContext, choose_image, gaussian_samples, needs_decoder, needs_images, show


def samples(ctx: ViewContext) -> None:
    """Decoded draws of the flow's prior: ``first_stage.decode(flow.inverse(T * eps))``."""
    if needs_decoder(ctx.model):
        gaussian_samples(ctx, ctx.model.code_dim, ctx.model.decode, key="iin_samples")


def choose_two_images(ctx: ViewContext, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images A and B, side by side, each ``(1, C, H, W)``."""
    left, right = st.columns(2)
    with left:
        a = choose_image(ctx, "image A (validation index)", key=f"{key}_a", default=0)
    with right:
        b = choose_image(ctx, "image B (validation index)", key=f"{key}_b", default=1)
    return a, b


def interpolation(ctx: ViewContext) -> None:
    """``decode((1 - t) z_A + t z_B)`` for ``t`` from 0 to 1."""
    if not (needs_images(ctx) and needs_decoder(ctx.model)):
        return
    a, b = choose_two_images(ctx, "iin_interpolation")
    steps = st.slider("steps", 3, 16, 8, key="iin_interpolation_steps")
    z_a, z_b = ctx.model(a)[0], ctx.model(b)[0]
    t = torch.linspace(0, 1, steps, device=ctx.device)[:, None]
    show(ctx.model.decode((1 - t) * z_a + t * z_b), caption=[f"t={float(v):.2f}" for v in t])


def factor_names(ctx: ViewContext) -> list[str]:
    """The dIIN's factors: the pair dataset's factor names and ``residual``, else numbered."""
    n = ctx.model.n_factors
    return factor_labels(ctx.dataset, n) or [f"factor {k}" for k in range(n)]


def factor_swaps(ctx: ViewContext) -> None:
    """Per factor ``k``: A with factor ``k`` of B, and B with factor ``k`` of A."""
    if not (needs_images(ctx) and needs_decoder(ctx.model)):
        return
    a, b = choose_two_images(ctx, "diin_swap")
    model = ctx.model
    z_a, z_b = model(a)[0], model(b)[0]
    show(model.decode(torch.cat([z_a, z_b])), caption=["A, decoded", "B, decoded"])
    for k, name in enumerate(factor_names(ctx)):
        swapped = torch.cat([model.swap_factor(z_a, z_b, k), model.swap_factor(z_b, z_a, k)])
        show(model.decode(swapped), caption=[f"A with {name} of B", f"B with {name} of A"])


def factor_walk(ctx: ViewContext) -> None:
    """``z_A + sum_k t_k mask_k (z_B - z_A)``: one slider ``t_k`` per factor moves that factor from A to B."""
    if not (needs_images(ctx) and needs_decoder(ctx.model)):
        return
    a, b = choose_two_images(ctx, "diin_walk")
    model = ctx.model
    z_a, z_b = model(a)[0], model(b)[0]
    names = factor_names(ctx)
    step = torch.zeros_like(z_a)
    columns = st.columns(len(names))
    for k, (column, name) in enumerate(zip(columns, names)):
        t = column.slider(f"{name}: A → B", 0.0, 1.0, 0.0, 0.05, key=f"diin_walk_{k}")
        step += t * model.factor_mask(torch.tensor([k], device=ctx.device)) * (z_b - z_a)
    show(model.decode(z_a + step), caption="A moved by the sliders")
    st.caption("Each factor alone, from A (left) to B (right):")
    t = torch.linspace(0, 1, 6, device=ctx.device)[:, None]
    for k, name in enumerate(names):
        mask = model.factor_mask(torch.tensor([k], device=ctx.device))
        show(model.decode(z_a + t * mask * (z_b - z_a)),
                 caption=[f"{name} t={float(v):.1f}" for v in t])
