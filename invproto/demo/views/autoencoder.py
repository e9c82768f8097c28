"""Autoencoder views: validation images against their reconstructions; decoded N(0, I) samples."""

from __future__ import annotations

import streamlit as st

from invproto.demo.images import validation_images
from invproto.demo.views.common import ViewContext, gaussian_samples, needs_images, show


def reconstructions(ctx: ViewContext) -> None:
    """Top row: validation images; bottom row: their reconstructions (decoded posterior means)."""
    if not needs_images(ctx):
        return
    columns = st.columns(2)
    n = columns[0].slider("images", 1, 16, 8, key="ae_n")
    start = int(columns[1].number_input("first validation index", min_value=0, max_value=len(ctx.dataset) - 1,
                                        value=0, key="ae_start"))
    indices = range(start, min(start + n, len(ctx.dataset)))
    images = validation_images(ctx.dataset, indices).to(ctx.device)
    show(images, caption=[f"#{i}" for i in indices])
    show(ctx.model(images), caption=[f"#{i}" for i in indices])
    st.caption("Top: validation images. Bottom: their reconstructions (decoded posterior means).")


def samples(ctx: ViewContext) -> None:
    """Decoded draws from the prior N(0, I) of the latent code."""
    gaussian_samples(ctx, ctx.model.params.z_dim, ctx.model.decode, key="ae_samples")
