"""Part-prototype networks: ProtoPNet (Chen et al., 2019) with PixPNet's corrections (Carmichael et al., 2023).

An image goes through a conv **backbone** truncated at a chosen layer and the
**add-on** layers (1x1 conv, ReLU, 1x1 conv, sigmoid) to a latent map ``z``
of shape ``(N, D, Hf, Wf)``. Each of the ``P = C * m`` **prototypes** is a
``(D, K, K)`` latent patch owned by one class, in class-major order
(``m = prototypes_per_class``; prototype ``c * m + k`` belongs to class ``c``).
Every ``K x K`` patch of ``z`` (stride 1) has a **distance** to every prototype

* ``l2``: squared Euclidean distance ``||z_patch - p||^2``,
* ``cosine``: ``1 - cos(z_patch, p)``,

giving ``(N, P, Hc, Wc)`` maps with ``Hc = Hf - K + 1``, turned into a
**similarity** per patch by

* ``log``: ``log((d + 1) / (d + epsilon))`` (ProtoPNet),
* ``linear``: ``-d`` for ``l2``, ``1 - d`` (the cosine) for ``cosine``.

A prototype's similarity to an image is its largest patch similarity (its
nearest patch). The bias-free **head** maps the ``(N, P)`` similarities to
``C`` logits:

* ``linear``: a full ``(C, P)`` matrix, initialised to +1 for the own class and
  -0.5 for the others,
* ``sparse``: each class weighs only its own prototypes (one weight each, init 1),
* ``proto``: no parameters; a class's logit is the sum of its prototypes'
  similarities (PixPNet's simplified head).

**Push** (:func:`invproto.iterators.part_prototype_push.push_prototypes`) replaces every prototype by its nearest
latent patch among training images of its own class. Every cell of the
distance map has an exact receptive field in the image
(:mod:`invproto.interpret.receptive_field`, computed once at construction),
so a pushed prototype records its source image and the box of pixels its
patch sees; :meth:`PartPrototypeNet.prototype_images` shows both.

The **backbone** (``model_params.backbone``: ``vgg`` or a torchvision model,
``cut`` at a named layer) is built by :mod:`invproto.modules.backbones`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from invproto.config.run import abort_cleanly
from invproto.errors import ConfigError
from invproto.interpret.receptive_field import ReceptiveField, Window, layer_windows, pixel_heatmap, receptive_field
from invproto.models.base import Model
from invproto.models.prototype_model import Explanation, PrototypeModel
from invproto.modules.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from invproto.modules.distances import PATCH_DISTANCES, SIMILARITIES, distance_to_similarity, patch_distances

HEADS = ("linear", "sparse", "proto")
OUTSIDE_BRIGHTNESS = 0.35  # prototype_images: pixels outside the receptive-field box keep this share of brightness


@dataclass
class PartPrototypeOutput:
    """A part-prototype network's view of ``N`` images (``P`` prototypes, ``C`` classes)."""

    logits: torch.Tensor  # (N, C)
    distances: torch.Tensor  # (N, P, Hc, Wc) patch distances
    similarity_maps: torch.Tensor  # (N, P, Hc, Wc) patch similarities

    @property
    def min_distances(self) -> torch.Tensor:
        """``(N, P)`` distance of each prototype to its nearest patch."""
        return self.distances.amin(dim=(2, 3))

    @property
    def similarity(self) -> torch.Tensor:
        """``(N, P)`` each prototype's largest patch similarity."""
        return self.similarity_maps.amax(dim=(2, 3))

    @property
    def nearest_patch(self) -> torch.Tensor:
        """``(N, P)`` flat (row-major) index of each prototype's nearest patch."""
        return self.distances.flatten(2).argmin(dim=2)


# --- the model -----------------------------------------------------------------------------------------

class PartPrototypeNet(Model, PrototypeModel):
    """ProtoPNet/PixPNet part prototypes; see the module docstring."""

    @dataclass
    class Params:
        in_channels: int = 1  # image channels
        in_size: int = 28  # image height = width in pixels
        n_classes: int = 10  # C
        backbone: str = "vgg"  # vgg (own stack from `features`) | a torchvision model name
        features: List[Any] = field(default_factory=lambda: [32, 32, "M", 64, 64, "M"])  # vgg: channels or "M"
        cut: Optional[str] = None  # last backbone layer kept (dotted name); null: the whole vgg stack
        weights: Optional[str] = None  # torchvision weights (e.g. DEFAULT; downloads); null: random init
        prototypes_per_class: int = 10  # m
        prototype_dim: int = 32  # D, channels of the add-on output
        prototype_kernel: int = 1  # K, prototypes are K x K latent patches
        distance: str = "l2"  # l2 (squared) | cosine
        similarity: str = "log"  # log | linear
        epsilon: float = 1.0e-4  # of the log similarity
        head: str = "linear"  # linear | sparse | proto

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        with abort_cleanly():
            self._check_params()
            self.backbone = build_backbone(p.backbone, p.in_channels, p.features, p.cut, p.weights)
        self.backbone_channels = 3 if p.backbone != "vgg" else p.in_channels
        backbone_out = self._probe(self.backbone)
        self.add_on = nn.Sequential(nn.Conv2d(backbone_out.shape[1], p.prototype_dim, 1), nn.ReLU(),
                                    nn.Conv2d(p.prototype_dim, p.prototype_dim, 1), nn.Sigmoid())
        nn.init.kaiming_normal_(self.add_on[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.xavier_normal_(self.add_on[2].weight)
        for conv in (self.add_on[0], self.add_on[2]):
            nn.init.zeros_(conv.bias)
        n_prototypes = p.n_classes * p.prototypes_per_class
        self.prototypes = nn.Parameter(torch.rand(n_prototypes, p.prototype_dim, p.prototype_kernel,
                                                  p.prototype_kernel))
        self.register_buffer("prototype_class", torch.arange(p.n_classes).repeat_interleave(p.prototypes_per_class))
        self.register_buffer("class_members", F.one_hot(self.prototype_class, p.n_classes).T.float())  # (C, P)
        if p.head == "linear":
            self.head_weights = nn.Parameter(self.class_members * 1.5 - 0.5)  # +1 own class, -0.5 others
        elif p.head == "sparse":
            self.head_weights = nn.Parameter(torch.ones(n_prototypes))
        self.field = self._receptive_field(tuple(backbone_out.shape[-2:]))
        self.register_buffer("push_image", torch.zeros(n_prototypes, p.in_channels, p.in_size, p.in_size))
        self.register_buffer("push_box", torch.zeros(n_prototypes, 4, dtype=torch.long))
        self.register_buffer("push_source", torch.full((n_prototypes,), -1, dtype=torch.long))
        self.register_buffer("pushed", torch.zeros(n_prototypes, dtype=torch.bool))

    def _check_params(self) -> None:
        p = self.params
        for key, value, allowed in [("distance", p.distance, PATCH_DISTANCES),
                                    ("similarity", p.similarity, SIMILARITIES),
                                    ("head", p.head, HEADS)]:
            if value not in allowed:
                raise ConfigError(f"model_params.{key} must be one of {', '.join(allowed)}, got {value!r}")
        if p.prototypes_per_class < 1 or p.prototype_kernel < 1 or p.prototype_dim < 1:
            raise ConfigError("model_params.prototypes_per_class, prototype_dim and prototype_kernel "
                              "must be >= 1")

    @torch.no_grad()
    def _probe(self, module: nn.Module) -> torch.Tensor:
        """``module``'s output on one blank image (eval mode: BatchNorm must not see a batch of one)."""
        module.eval()
        size = self.params.in_size
        try:
            output = module(torch.zeros(1, self.backbone_channels, size, size))
        except RuntimeError as error:
            with abort_cleanly():
                raise ConfigError(f"the backbone cannot take {size} px images ({str(error).splitlines()[0]}); "
                                  "cut it earlier (model_params.cut) or use larger images") from None
        module.train()
        return output

    def _receptive_field(self, backbone_grid: tuple[int, int]) -> ReceptiveField:
        """Fields of the distance-map cells (backbone, 1x1 add-on, K x K prototype window), checked against
        the backbone's actual ``(Hf, Wf)`` output grid."""
        p = self.params
        kernel = Window(kernel=p.prototype_kernel)
        with abort_cleanly():
            try:
                field_ = receptive_field(layer_windows(self.backbone) + [(kernel, kernel)], (p.in_size, p.in_size))
            except ValueError as error:
                raise ConfigError(f"{error} (model_params.backbone '{p.backbone}', cut '{p.cut}')") from None
            cells = (backbone_grid[0] - p.prototype_kernel + 1, backbone_grid[1] - p.prototype_kernel + 1)
            if cells != field_.feature_shape or min(cells) < 1:
                raise ConfigError(f"the backbone's output grid {tuple(cells)} does not match its layer "
                                  f"list {field_.feature_shape}; its forward is not the sequence of its layers "
                                  "up to model_params.cut (or the prototype kernel is larger than the map)")
        return field_

    # --- forward -------------------------------------------------------------------------------------
    def latent(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` images in [-1, 1] -> ``(N, D, Hf, Wf)`` add-on output in [0, 1]."""
        if images.shape[1] != self.backbone_channels:
            images = images.expand(-1, self.backbone_channels, -1, -1)
        if self.params.weights is not None:
            mean, std = (torch.tensor(v, device=images.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
            images = ((images + 1) / 2 - mean) / std
        return self.add_on(self.backbone(images))

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable weights of the head (none for the ``proto`` head)."""
        return [self.head_weights] if self.params.head != "proto" else []

    def class_prototypes(self, classes: torch.Tensor) -> torch.Tensor:
        """``(N,)`` class labels -> ``(N, m)`` indices of the prototypes of each class."""
        p = self.params
        indices = torch.arange(self.n_prototypes, device=classes.device)
        return indices.view(p.n_classes, p.prototypes_per_class)[classes]

    def head_weight(self) -> torch.Tensor:
        """The ``(C, P)`` matrix mapping prototype similarities to logits (zero off-class for sparse/proto)."""
        if self.params.head == "linear":
            return self.head_weights
        if self.params.head == "sparse":
            return self.class_members * self.head_weights
        return self.class_members

    def forward(self, images: torch.Tensor) -> PartPrototypeOutput:
        p = self.params
        distances = patch_distances(self.latent(images), self.prototypes, p.distance)
        similarity_maps = distance_to_similarity(distances, p.similarity, p.distance, p.epsilon)
        logits = similarity_maps.amax(dim=(2, 3)) @ self.head_weight().T
        return PartPrototypeOutput(logits=logits, distances=distances, similarity_maps=similarity_maps)

    def explain(self, images: torch.Tensor) -> Explanation:
        output = self(images)
        return Explanation(logits=output.logits, similarity=output.similarity)

    def pixel_heatmaps(self, similarity_maps: torch.Tensor, mapping: str, sigma_factor: float = 1.0,
                       reduction: str = "max") -> torch.Tensor:
        """``(N, M, Hc, Wc)`` patch similarities -> ``(N, M, S, S)`` pixel heat maps (``rf`` or ``upsample``)."""
        return pixel_heatmap(similarity_maps, self.field, mapping, sigma_factor, reduction)

    # --- push --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def adopt_patches(self, prototypes: torch.Tensor, images: torch.Tensor, patches: torch.Tensor,
                      sources: torch.Tensor, move: bool) -> None:
        """Record ``images[i]`` (dataset index ``sources[i]``) and its patch ``patches[i]`` for ``prototypes[i]``.

        With ``move`` the prototype becomes that latent patch (a push);
        otherwise it stays and the patch is only its nearest one (for
        :meth:`prototype_images` before the first push).
        """
        if move:
            kernel = self.params.prototype_kernel
            z = self.latent(images)
            row, col = patches // self.field.cols.n_cells, patches % self.field.cols.n_cells
            for i, (r, c) in enumerate(zip(row.tolist(), col.tolist())):
                self.prototypes[prototypes[i]] = z[i, :, r:r + kernel, c:c + kernel]
            self.pushed[prototypes] = True
        self.push_image[prototypes] = images
        self.push_box[prototypes] = self.field.boxes(patches).to(self.push_box.device)
        self.push_source[prototypes] = sources.to(self.push_source.device)

    def prototype_images(self) -> torch.Tensor:
        """``(P, C, S, S)``: the image each prototype was pushed onto (before any push: of its nearest patch).

        Pixels outside the patch's receptive-field box are dimmed to
        ``OUTSIDE_BRIGHTNESS`` of their brightness; images are in [-1, 1].
        """
        if bool((self.push_source < 0).any()):
            raise RuntimeError("invproto: this model has no prototype images yet; they are recorded at the end "
                               "of every training epoch (push or nearest-patch search)")
        size = self.params.in_size
        y, x = torch.arange(size, device=self.push_box.device)[:, None], torch.arange(size, device=self.push_box.device)
        x0, y0, x1, y1 = (self.push_box[:, i, None, None] for i in range(4))
        inside = ((x >= x0) & (x < x1) & (y >= y0) & (y < y1))[:, None]
        dimmed = (self.push_image + 1) * OUTSIDE_BRIGHTNESS - 1
        return torch.where(inside, self.push_image, dimmed)
