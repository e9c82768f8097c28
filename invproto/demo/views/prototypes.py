"""Views of any :class:`~invproto.models.prototype_model.PrototypeModel` (prototype flows, prototypeDL,
metric-guided and part prototypes): the prototype gallery and "explain this image".

Only the interface is used: ``prototype_class``, ``prototype_images()`` and
``explain(images)``; draws from a prototype are shown for models that offer
``prototype_samples(n, generator)`` (prototype flows), and where in the image
each nearest prototype matched -- a heat map and the box around its hottest
5 % -- for models with patch similarity maps (part prototypes:
``similarity_maps`` and ``pixel_heatmaps``, by receptive field or upsampling);
for a prototype flow (a density), a warning when the image is less likely than
99 % of the validation images.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from invproto.demo.images import validation_images
from invproto.demo.views.common import ViewContext, choose_or_upload_image, class_posterior, needs_images, show
from invproto.interpret.receptive_field import MAPPINGS
from invproto.losses.protoflow import bits_per_dim, marginal_log_likelihood
from invproto.pictures import boxed, heat_overlay, top_share_box

MAPPING_NAMES = {"rf": "receptive field (PixPNet)", "upsample": "upsampling (ProtoPNet)"}
SIMILARITY_HELP = ("higher is closer; the unit depends on the model: a weighted component log-density in nats "
                   "(prototype flows), a negative distance (prototypeDL), a patch similarity (part prototypes)")


def gallery(ctx: ViewContext) -> None:
    """One row per class: its prototypes' images (decoded means), each with the share of validation images it
    explained at the run's latest evaluation (dead: none); then draws from a chosen prototype."""
    model = ctx.model
    images = model.prototype_images()
    owner = model.prototype_class.cpu()
    recorded = ctx.run.prototype_usage()
    usage = recorded[1] if recorded and len(recorded[1]) == model.n_prototypes else None
    if usage is not None:
        dead = sum(n == 0 for n in usage)
        st.caption(f"Under each prototype: the share of validation images it explains (it is their most similar "
                   f"prototype), from the evaluation at step {recorded[0]}; {dead} of {len(usage)} are dead "
                   f"(explain none).")
    for label in owner.unique().tolist():
        members = torch.nonzero(owner == label).flatten().tolist()
        st.markdown(f"**{ctx.class_name(label)}**")
        show(images[members], caption=[prototype_caption(p, usage) for p in members])
    if hasattr(model, "prototype_samples"):
        st.subheader("Draws from a prototype")
        columns = st.columns(3)
        chosen = int(columns[0].selectbox("prototype", range(model.n_prototypes), key="proto_sample_which",
                                          format_func=lambda p: f"{p} ({ctx.class_name(int(owner[p]))})"))
        n = columns[1].slider("draws", 1, 16, 8, key="proto_sample_n")
        seed = int(columns[2].number_input("seed", min_value=0, value=0, key="proto_sample_seed"))
        draws = model.prototype_samples(n, generator=torch.Generator(ctx.device).manual_seed(seed))
        show(draws[chosen])


def bits_of(model, images: torch.Tensor) -> torch.Tensor:
    """A prototype flow's ``(M,)`` bits/dim of ``(M, C, S, S)`` images: ``-log2 p(x) / dims``, uniform class prior."""
    return bits_per_dim(marginal_log_likelihood(model.class_log_likelihood(images)[0]), model.data_dims)


@st.cache_data(max_entries=4, show_spinner="Scoring the validation images under the model ...")
def validation_bits(model_key: str, _model, _dataset, n: int) -> torch.Tensor:
    """``(n,)`` bits/dim of the first ``n`` validation images, once per model (``model_key``: run, checkpoint and
    its modification time, device) instead of on every rerun of the page."""
    with torch.no_grad():
        return bits_of(_model, validation_images(_dataset, range(n)).to(next(_model.parameters()).device)).float().cpu()


def likelihood_rank(model, image: torch.Tensor, reference_bits: torch.Tensor) -> tuple[float, float, float]:
    """The bits/dim of the ``(1, C, S, S)`` ``image``, the 99th percentile of the ``(M,)`` ``reference_bits``, and
    the share of the reference images that are more likely than ``image``."""
    image_bits = float(bits_of(model, image)[0])
    return (image_bits, float(torch.quantile(reference_bits, 0.99)),
            float((reference_bits < image_bits).float().mean()))


def warn_if_unlikely(model, image: torch.Tensor, reference_bits: torch.Tensor) -> None:
    """A warning box when a prototype flow finds ``image`` less likely than 99 % of the validation images
    (``reference_bits``): its explanation of an image unlike its training data is not to be trusted; else the
    likelihood in a caption."""
    image_bits, limit, more_likely = likelihood_rank(model, image, reference_bits)
    if image_bits > limit:
        st.warning(f"Out of distribution? {image_bits:.3g} bits/dim: less likely under the model than "
                   f"{more_likely:.0%} of {len(reference_bits)} validation images (99 % have at most {limit:.3g}). "
                   f"Its classes and prototypes are not to be trusted for such an image.")
    else:
        st.caption(f"likelihood: {image_bits:.3g} bits/dim (validation images: 99 % at most {limit:.3g})")


def prototype_caption(prototype: int, usage: list[int] | None) -> str:
    """``prototype 3 · 12%`` (its share of the explained images), ``prototype 3 · dead``, or without usage."""
    if usage is None:
        return f"prototype {prototype}"
    share = usage[prototype] / max(sum(usage), 1)
    return f"prototype {prototype} · " + ("dead" if usage[prototype] == 0 else f"{share:.0%}")


def explain(ctx: ViewContext) -> None:
    """The predicted class of an image, the class posterior, and the prototypes most similar to it."""
    if not needs_images(ctx):
        return
    model = ctx.model
    left, right = st.columns([1, 2])
    with left:
        image = choose_or_upload_image(ctx, "proto_explain")
    if image is None:
        return
    explanation = model.explain(image)
    with right:
        class_posterior(ctx, explanation.logits[0])
        if hasattr(model, "class_log_likelihood"):
            reference_bits = validation_bits(ctx.model_key, model, ctx.dataset, min(len(ctx.dataset), 256))
            warn_if_unlikely(model, image, reference_bits)
    k = st.slider("nearest prototypes", 1, model.n_prototypes, min(5, model.n_prototypes), key="proto_nearest_k")
    similarity, nearest = explanation.similarity[0].float().topk(k)
    owner = model.prototype_class[nearest].tolist()
    show(model.prototype_images()[nearest],
         caption=[f"prototype {p} · {ctx.class_name(c)} · {s:.3g}"
                  for p, c, s in zip(nearest.tolist(), owner, similarity.tolist())])
    st.dataframe(pd.DataFrame({"prototype": nearest.tolist(), "class": [ctx.class_name(c) for c in owner],
                               "similarity": similarity.tolist()}), hide_index=True)
    st.caption(f"Similarity: {SIMILARITY_HELP}.")
    if hasattr(model, "pixel_heatmaps"):
        mapping = st.radio("where it matched: heat map by", MAPPINGS, horizontal=True, key="proto_heat_mapping",
                           format_func=MAPPING_NAMES.get)
        show(where_matched(model, image, nearest, mapping), caption=[f"prototype {p}" for p in nearest.tolist()])
        st.caption("This looks like that: each nearest prototype's similarity over the image, and the box around "
                   "its hottest 5 %.")


def where_matched(model, image: torch.Tensor, prototypes: torch.Tensor, mapping: str) -> torch.Tensor:
    """``(1, C, S, S)`` image, ``(k,)`` prototype indices -> ``(k, 3, S, S)``: the image under each prototype's
    pixel heat map (``mapping``: ``rf`` or ``upsample``), with the box around the hottest 5 % drawn."""
    maps = model(image).similarity_maps[:, prototypes]  # (1, k, Hc, Wc)
    heat = model.pixel_heatmaps(maps, mapping)[0]  # (k, S, S)
    overlays = heat_overlay(image.expand(len(prototypes), -1, -1, -1), heat)
    return boxed(overlays, torch.stack([top_share_box(h) for h in heat]))
