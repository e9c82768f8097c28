"""The push of part prototypes: each prototype becomes its nearest latent patch of its own class.

ProtoPNet's projection step, run by the part-prototype iterator's push hook
(:mod:`invproto.iterators.part_prototypes`). :class:`NearestPatchSearch`
streams over the push set and keeps, per prototype, the nearest images of
its class; :func:`push_prototypes` assigns them (with PixPNet's duplicate
filter) and lets the model adopt the patches
(:meth:`~invproto.models.part_prototypes.PartPrototypeNet.adopt_patches`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from invproto.models.part_prototypes import PartPrototypeNet, PartPrototypeOutput

DUPLICATE_FILTERS = ("sample", "none")

PushBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images (N, C, S, S), labels (N,), dataset indices (N,)


class NearestPatchSearch:
    """Per prototype, the ``depth`` nearest images of its class seen so far (streamed over batches).

    Holds ``distance`` (P, depth) ascending (``inf`` = none yet), the dataset
    index ``source`` and the flat ``patch`` index of each candidate's nearest
    patch. One image per candidate: an image's best patch stands for it.
    """

    def __init__(self, n_prototypes: int, depth: int):
        self.distance = torch.full((n_prototypes, depth), torch.inf)
        self.source = torch.full((n_prototypes, depth), -1, dtype=torch.long)
        self.patch = torch.full((n_prototypes, depth), -1, dtype=torch.long)

    def add(self, output: PartPrototypeOutput, labels: torch.Tensor, sources: torch.Tensor,
            prototype_class: torch.Tensor) -> None:
        """Merge a batch: only images of a prototype's own class are candidates for it."""
        own_class = labels[:, None].cpu() == prototype_class[None, :].cpu()  # (N, P)
        distance = torch.where(own_class, output.min_distances.float().cpu(), torch.inf).T  # (P, N)
        patch = output.nearest_patch.cpu().T
        source = sources.cpu().long()[None, :].expand_as(patch)
        distance, order = torch.cat([self.distance, distance], 1).topk(self.distance.shape[1], dim=1, largest=False)
        self.distance = distance
        self.source = torch.cat([self.source, source], 1).gather(1, order)
        self.patch = torch.cat([self.patch, patch], 1).gather(1, order)

    def assign(self, duplicate_filter: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(source, patch, distance)`` per prototype; ``source`` -1 where its class had no image.

        ``none``: every prototype takes its nearest image. ``sample``
        (PixPNet's default): candidates are taken greedily in order of
        increasing distance over all prototypes, skipping images already
        taken, so no two prototypes share a source image. A prototype can only
        lose images to the other prototypes of its class, so with ``depth``
        at least the number of prototypes per class the greedy choice is the
        same as over all images.
        """
        n_prototypes = self.distance.shape[0]
        if duplicate_filter == "none":
            return self.source[:, 0].clone(), self.patch[:, 0].clone(), self.distance[:, 0].clone()
        if duplicate_filter != "sample":
            raise ValueError(f"duplicate_filter must be one of {', '.join(DUPLICATE_FILTERS)}, "
                             f"got {duplicate_filter!r}")
        source = torch.full((n_prototypes,), -1, dtype=torch.long)
        patch, distance = source.clone(), torch.full((n_prototypes,), torch.inf)
        taken: set[int] = set()
        flat = self.distance.flatten()
        for index in flat.argsort(stable=True).tolist():
            prototype, slot = divmod(index, self.distance.shape[1])
            candidate = int(self.source[prototype, slot])
            if not torch.isfinite(flat[index]):
                break
            if source[prototype] >= 0 or candidate in taken:
                continue
            taken.add(candidate)
            source[prototype], patch[prototype] = candidate, self.patch[prototype, slot]
            distance[prototype] = flat[index]
        return source, patch, distance


@torch.no_grad()
def push_prototypes(model: PartPrototypeNet, batches: Iterable[PushBatch],
                    fetch: Callable[[np.ndarray], torch.Tensor], duplicate_filter: str = "sample",
                    move: bool = True) -> torch.Tensor:
    """Push every prototype onto its nearest latent patch among ``batches`` of its own class (eval mode).

    ``batches`` yields images, labels and dataset indices; ``fetch`` returns
    the ``(n, C, S, S)`` images of given dataset indices (on the model's
    device). With ``move=False`` only the nearest patches are recorded (see
    :meth:`PartPrototypeNet.adopt_patches`). Prototypes whose class does not
    occur stay as they are. Returns ``(P,)`` each prototype's distance to its
    patch before the push (``inf`` where none).
    """
    was_training = model.training
    model.eval()
    depth = model.params.prototypes_per_class if duplicate_filter == "sample" else 1
    search = NearestPatchSearch(model.n_prototypes, depth)
    for images, labels, sources in batches:
        search.add(model(images), labels, sources, model.prototype_class)
    source, patch, distance = search.assign(duplicate_filter)
    found = torch.nonzero(source >= 0).flatten()
    if len(found):
        images = fetch(source[found].numpy())
        model.adopt_patches(found.to(images.device), images, patch[found], source[found], move)
    model.train(was_training)
    return distance
