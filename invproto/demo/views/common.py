"""What the views share: the loaded run, picking an image, decoding Gaussian samples, class posteriors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st
import torch

from invproto.demo.images import pictures, uploaded_image, validation_example
from invproto.demo.runs import Run
from invproto.models.base import Model
from invproto.pictures import standard_normal


@dataclass
class ViewContext:
    """A view's inputs: the run, its loaded model (eval mode), its validation split (``None`` when it cannot be
    loaded), the device the model is on, and a key naming that model (run, checkpoint file and its modification
    time, device) for caching what views compute from it."""

    run: Run
    model: Model
    dataset: object | None
    device: torch.device
    model_key: str

    def class_name(self, label: int) -> str:
        names = getattr(self.dataset, "class_names", None)
        return str(names[label]) if names is not None and 0 <= label < len(names) else f"class {label}"

    def class_names(self, n: int) -> list[str]:
        """Names of classes ``0 .. n-1``, numbered where the dataset names fewer."""
        return [self.class_name(c) for c in range(n)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the model's inputs: the validation images' shape."""
        return tuple(validation_example(self.dataset, 0)[0].shape[1:])


def show(images: torch.Tensor, caption: str | list[str] | None = None) -> None:
    """``(N, C, H, W)`` images in [-1, 1] in a row (wrapping), as lossless PNG pictures of equal width."""
    shown = pictures(images)
    st.image(shown, caption=caption, output_format="PNG", width=shown[0].shape[1])


def needs_images(ctx: ViewContext) -> bool:
    """Whether the run's validation images are there; explains on the page when not."""
    if ctx.dataset is None:
        st.info("This view needs the run's validation images, which could not be loaded (see the warning above).")
    return ctx.dataset is not None


def needs_decoder(model: Model) -> bool:
    """Whether an IIN-like ``model`` can turn codes back into images; explains on the page when not."""
    if not getattr(model, "can_decode", False):
        st.info("This model's first stage has no decoder (a classifier), so its codes cannot be shown as "
                "images. Train the flow on an autoencoder to see them.")
        return False
    return True


def choose_image(ctx: ViewContext, label: str, key: str, default: int = 0) -> torch.Tensor:
    """A validation image picked by index, shown; ``(1, C, H, W)`` on the model's device."""
    last = len(ctx.dataset) - 1
    index = int(st.number_input(label, min_value=0, max_value=last, value=min(default, last), key=key))
    image, target = validation_example(ctx.dataset, index)
    show(image, caption=f"#{index}" + ("" if target is None else f" · {ctx.class_name(target)}"))
    return image.to(ctx.device)


def choose_or_upload_image(ctx: ViewContext, key: str) -> torch.Tensor | None:
    """A validation image or an uploaded picture (resized to the model's input), shown, ``(1, C, H, W)``;
    ``None`` until a picture is uploaded."""
    source = st.radio("image", ["validation image", "upload a picture"], horizontal=True, key=f"{key}_source")
    if source == "validation image":
        return choose_image(ctx, "validation image (index)", key=f"{key}_index")
    file = st.file_uploader("PNG or JPEG", type=["png", "jpg", "jpeg"], key=f"{key}_upload")
    if file is None:
        return None
    image = uploaded_image(file, ctx.image_shape)
    show(image, caption="uploaded, as the model sees it")
    return image.to(ctx.device)


def gaussian_samples(ctx: ViewContext, dim: int, decode: Callable[[torch.Tensor], torch.Tensor], key: str) -> None:
    """Decoded draws ``temperature * N(0, I)`` of a ``dim``-dimensional code; temperature, count and seed on sliders."""
    columns = st.columns(3)
    temperature = columns[0].slider("temperature", 0.0, 2.0, 1.0, 0.05, key=f"{key}_temperature",
                                    help="scales the N(0, I) draws: < 1 typical images, > 1 unusual ones")
    n = columns[1].slider("samples", 1, 32, 16, key=f"{key}_n")
    seed = int(columns[2].number_input("seed", min_value=0, value=0, key=f"{key}_seed"))
    noise = standard_normal((n, dim), seed).to(ctx.device) * temperature
    show(decode(noise))


def class_posterior(ctx: ViewContext, logits: torch.Tensor) -> None:
    """The predicted class and a bar per class of ``softmax(logits)`` for one image's ``(C,)`` logits."""
    probabilities = logits.float().softmax(-1).cpu()
    names = ctx.class_names(len(probabilities))
    predicted = int(probabilities.argmax())
    st.metric("predicted class", names[predicted], f"p = {float(probabilities[predicted]):.1%}", delta_color="off",
              delta_arrow="off")
    st.bar_chart(pd.DataFrame({"class": names, "probability": probabilities.numpy()}), x="class",
                 y="probability", horizontal=True, sort=False)
