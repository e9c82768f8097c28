"""Views of a conditional INN (:mod:`invproto.models.cinn`): what a network's layer cannot see.

Invariances: an image, its reconstruction through the INN, and ``n`` images
decoded from N(0, I) draws under the image's representation -- images the
network (ideally) cannot tell apart from it at the interpreted layer -- with
the fidelity figures of the evaluation callbacks for these samples.
Attack: FGSM on the network's classification loss beside a random-sign
control of the same size, and the clean image's flow code decoded under each
perturbed representation: what the attacked network "sees".
"""

from __future__ import annotations

import streamlit as st
import torch

from invproto.demo.images import validation_example
from invproto.demo.views.common import ViewContext, choose_image, choose_or_upload_image, needs_images, show
from invproto.interpret.attacks import perturbed_views
from invproto.interpret.invariance_metrics import cosine, relative_error
from invproto.pictures import standard_normal


def sample_controls(key: str) -> tuple[int, float, int]:
    """Count, temperature and seed of the draws; the resample button moves the seed on."""
    seed_key = f"{key}_seed"
    st.session_state.setdefault(seed_key, 0)
    columns = st.columns(4)
    n = columns[0].slider("samples", 1, 24, 8, key=f"{key}_n")
    temperature = columns[1].slider("temperature", 0.0, 1.5, 1.0, 0.05, key=f"{key}_temperature",
                                    help="scales the N(0, I) draws: 0 gives the flow's mode under this representation")
    if columns[3].button("resample", key=f"{key}_resample"):
        st.session_state[seed_key] += 1
    seed = int(columns[2].number_input("seed", min_value=0, key=seed_key))
    return n, temperature, seed


def fidelity_table(ctx: ViewContext, image: torch.Tensor, samples: torch.Tensor, other: torch.Tensor) -> None:
    """Relative error and cosine of the network's representation of the samples, the autoencoder's
    reconstruction (floor) and another image (ceiling) against the input's; agreement when it classifies."""
    model, network = ctx.model, ctx.model.network
    compared = {"samples": samples, "floor: reconstruction": model.autoencoder.decode(model.codes(image)),
                "ceiling: another image": other}
    reference = model.representation(image)
    rows = []
    for name, images in compared.items():
        representation = network.encode(images)
        row = {"compared with the input": name,
               "relative error": float(relative_error(reference.expand_as(representation), representation).mean()),
               "cosine": float(cosine(reference.expand_as(representation), representation).mean())}
        if network.can_classify:
            row["same prediction"] = float((network.classify(images).argmax(1)
                                           == network.classify(image).argmax(1)).float().mean())
        rows.append(row)
    st.dataframe(rows, hide_index=True)


def invariances(ctx: ViewContext) -> None:
    """Input | reconstruction | samples sharing the input's representation, with fidelity figures."""
    if not needs_images(ctx):
        return
    image = choose_or_upload_image(ctx, "cinn")
    if image is None:
        return
    n, temperature, seed = sample_controls("cinn")
    model = ctx.model
    representation = model.representation(image)
    noise = standard_normal((n, model.code_dim), seed).to(ctx.device) * temperature
    samples = model.sample(representation.expand(n, *representation.shape[1:]), noise)
    show(torch.cat([image, model.reconstruct(image)]), caption=["input", "reconstruction through the INN"])
    st.caption("Samples the network sees (about) as it sees the input at its layer "
               f"`{model.params.network.get('layer') or 'output'}`; what varies is what that layer ignores:")
    show(samples)
    other, _ = validation_example(ctx.dataset, 1 if len(ctx.dataset) > 1 else 0)
    fidelity_table(ctx, image, samples, other.to(ctx.device))


def attack(ctx: ViewContext) -> None:
    """FGSM and random-sign images of one validation image, and the clean flow code decoded under each."""
    model, network = ctx.model, ctx.model.network
    if not network.can_classify:
        st.info("The interpreted network has no class outputs (e.g. TF-Inception up to pool3), so it cannot be "
                "attacked through its classification loss.")
        return
    if not needs_images(ctx):
        return
    image = choose_image(ctx, "validation image (index)", key="cinn_attack_index")
    epsilon = st.slider("epsilon (in [-1, 1] units; 2/255 is one 8-bit level)", 0.0, 0.5, 0.1, 0.01,
                        key="cinn_attack_epsilon")
    label = network.classify(image).argmax(1)  # attack the network's own prediction
    z, _ = model(image)
    views = perturbed_views(model, image, label, z, epsilon)
    names = {"clean": "clean", "attacked": "FGSM", "random": "random signs"}
    show(torch.cat([view.images for view in views.values()]),
         caption=[f"{names[kind]}: {ctx.class_name(int(view.classes))}" for kind, view in views.items()])
    st.caption("The clean image's flow code decoded under each representation: what the network sees")
    show(torch.cat([view.decode for view in views.values()]),
         caption=[f"{names[kind]} → {ctx.class_name(int(view.decode_classes))}" for kind, view in views.items()])
