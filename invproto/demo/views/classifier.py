"""Classifier view: the predicted class and class posterior of a chosen or uploaded image."""

from __future__ import annotations

import streamlit as st

from invproto.demo.views.common import ViewContext, choose_or_upload_image, class_posterior, needs_images


def predict(ctx: ViewContext) -> None:
    if not needs_images(ctx):
        return
    left, right = st.columns([1, 2])
    with left:
        image = choose_or_upload_image(ctx, "classifier")
    if image is not None:
        with right:
            class_posterior(ctx, ctx.model(image)[0])
