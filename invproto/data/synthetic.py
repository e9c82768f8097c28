"""Sprites: an embedded synthetic dataset with known factors, no download.

Each image is one coloured sprite on a black background, rendered with NumPy
from five ground-truth factors:

=========  =======  ====================================================
factor     dtype    values
=========  =======  ====================================================
``shape``  int      index into :data:`SHAPES` (the ``class`` label by default, see ``label``)
``color``  int      index into :data:`PALETTE` (uint8 RGB)
``x, y``   float    sprite centre as a fraction of the width/height
``scale``  float    sprite radius as a fraction of the image size
=========  =======  ====================================================

Rendering evaluates a signed distance to the sprite's outline at every pixel
centre (vectorised over the whole split, precomputed coordinate grid) and
anti-aliases its edge over one pixel; the sprite's *part mask* is the set of
pixels whose centre lies inside the outline (:func:`sprite_masks`,
:meth:`Sprites.mask`, :meth:`Sprites.box`); five part keypoints mark its
centre and the sides of its box (:data:`KEYPOINTS`, :meth:`Sprites.part_keypoints`).
Every split is rendered once into uint8 memory at construction (about 1 s for
20000 images of 32 px).

Splits are independent draws from the generator seeded with
``(dataset_params.seed, split number)``; their sizes are
``dataset_params.n_train/n_validation/n_test`` (``data.validation_size`` does
not apply). Factors are continuous, so no two splits share an example.

``SpritesPairs*`` pair each image with a freshly rendered partner that shares
one factor of ``dataset_params.pair_factors`` (``position`` = both ``x`` and
``y``) and redraws all others. Examples: ``image1``, ``image2``, ``factor``
and both sprites' factors (``shape1`` ... ``scale2``); see
:mod:`invproto.data.pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, List, Mapping

import numpy as np

from invproto.config.run import component_params, prepare_run
from invproto.data.base import ImageDataset, LabelledImages
from invproto.data.pairs import FactorPairs
from invproto.data.splits import SPLITS
from invproto.data.transforms import to_signed
from invproto.errors import ConfigError

SHAPES = ("square", "circle", "triangle", "cross", "diamond")
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25],
                    [0, 130, 200], [245, 130, 48], [240, 50, 230]], dtype=np.uint8)
PALETTE_NAMES = ("red", "green", "yellow", "blue", "orange", "magenta")
SCALE_RANGE = (0.12, 0.25)  # sprite radius / image size
POSITION_RANGE = (0.25, 0.75)  # sprite centre / image size: the largest sprite stays inside
PAIR_FACTORS = {"shape": ("shape",), "color": ("color",), "position": ("x", "y"), "scale": ("scale",)}
KEYPOINTS = ("center", "top", "bottom", "left", "right")  # part keypoints of a sprite, see sprite_keypoints


@dataclass
class SpriteFactors:
    """Factors of ``N`` sprites, one array ``(N,)`` per factor."""

    shape: np.ndarray  # int64
    color: np.ndarray  # int64
    x: np.ndarray  # float64 in POSITION_RANGE
    y: np.ndarray  # float64 in POSITION_RANGE
    scale: np.ndarray  # float64 in SCALE_RANGE

    @classmethod
    def sample(cls, n: int, rng: np.random.Generator) -> "SpriteFactors":
        """Draw every factor independently and uniformly."""
        return cls(shape=rng.integers(len(SHAPES), size=n), color=rng.integers(len(PALETTE), size=n),
                   x=rng.uniform(*POSITION_RANGE, size=n), y=rng.uniform(*POSITION_RANGE, size=n),
                   scale=rng.uniform(*SCALE_RANGE, size=n))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def subset(self, indices) -> "SpriteFactors":
        return SpriteFactors(**{name: values[indices] for name, values in self.as_dict().items()})

    def example(self, i: int) -> dict[str, int | float]:
        """Factors of sprite ``i`` as Python numbers."""
        return {name: values[i].item() for name, values in self.as_dict().items()}

    def __len__(self) -> int:
        return len(self.shape)


def _box(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    """Signed distance (unit coordinates, negative inside) to an axis-aligned box, inside-exact."""
    return np.maximum(np.abs(u) - half_u, np.abs(v) - half_v)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Upward triangle with apex (0, -1) and base y = 0.7 from x = -0.95 to 0.95."""
    edge = np.array([1.7, -0.95]) / np.hypot(1.7, 0.95)  # outward normal of the right edge
    return np.maximum(v - 0.7, edge[0] * np.abs(u) + edge[1] * (v + 1.0))


_OUTLINES = {  # shape index -> signed distance in units of the sprite radius
    0: lambda u, v: _box(u, v, 0.8, 0.8),
    1: lambda u, v: np.hypot(u, v) - 1.0,
    2: _triangle,
    3: lambda u, v: np.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0)),
    4: lambda u, v: (np.abs(u) + np.abs(v) - 1.0) / np.sqrt(2.0),
}


def signed_distance(factors: SpriteFactors, size: int) -> np.ndarray:
    """Distance in pixels from each pixel centre to each sprite's outline, negative inside.

    Returns float32 ``(N, size, size)``.
    """
    grid = (np.arange(size, dtype=np.float32) + 0.5)  # pixel centres
    radius = (factors.scale * size).astype(np.float32)[:, None, None]
    u = (grid[None, None, :] - (factors.x * size).astype(np.float32)[:, None, None]) / radius
    v = (grid[None, :, None] - (factors.y * size).astype(np.float32)[:, None, None]) / radius
    u, v = np.broadcast_arrays(u, v)
    distance = np.empty((len(factors), size, size), dtype=np.float32)
    for shape, outline in _OUTLINES.items():
        members = factors.shape == shape
        distance[members] = outline(u[members], v[members]) * radius[members]
    return distance


def render_sprites(factors: SpriteFactors, size: int, chunk: int = 4096) -> np.ndarray:
    """uint8 ``(N, size, size, 3)`` images of the sprites, edges anti-aliased over one pixel."""
    images = np.empty((len(factors), size, size, 3), dtype=np.uint8)
    for start in range(0, len(factors), chunk):
        part = factors.subset(slice(start, start + chunk))
        coverage = np.clip(0.5 - signed_distance(part, size), 0.0, 1.0)[..., None]
        images[start:start + chunk] = np.rint(coverage * PALETTE[part.color][:, None, None, :])
    return images


def sprite_masks(factors: SpriteFactors, size: int) -> np.ndarray:
    """bool ``(N, size, size)``: pixels whose centre lies inside the sprite (its part mask)."""
    return signed_distance(factors, size) <= 0


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of a non-empty bool ``(H, W)`` mask, ``x1``/``y1`` exclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def sprite_keypoints(factors: SpriteFactors, size: int) -> np.ndarray:
    """int64 ``(N, 5, 2)``: ``(x, y)`` pixel indices of each sprite's :data:`KEYPOINTS`.

    ``center`` is the pixel holding the sprite's centre; ``top``, ``bottom``,
    ``left`` and ``right`` are the middles of the sides of its mask's bounding
    box (the pixel rows/columns the mask reaches first and last), level with
    the centre.
    """
    centre_x, centre_y = (np.floor(factors.x * size).astype(np.int64), np.floor(factors.y * size).astype(np.int64))
    boxes = np.array([bounding_box(mask) for mask in sprite_masks(factors, size)], dtype=np.int64).reshape(-1, 4)
    x0, y0, x1, y1 = boxes.T
    points = [(centre_x, centre_y), (centre_x, y0), (centre_x, y1 - 1), (x0, centre_y), (x1 - 1, centre_y)]
    return np.stack([np.stack(point, axis=-1) for point in points], axis=1)


CLASS_LABELS = ("shape", "color", "shape_color")  # choices of dataset_params.label


def class_labels(factors: SpriteFactors, label: str) -> np.ndarray:
    """int64 ``(N,)`` class labels of sprites: their ``shape``, ``color`` or ``shape_color`` = shape * 6 + colour."""
    return {"shape": factors.shape, "color": factors.color,
            "shape_color": factors.shape * len(PALETTE) + factors.color}[label]


def class_names(label: str) -> tuple[str, ...]:
    """Names of the classes of :func:`class_labels` (``"circle red"`` ... for ``shape_color``)."""
    return {"shape": SHAPES, "color": PALETTE_NAMES,
            "shape_color": tuple(f"{shape} {colour}" for shape in SHAPES for colour in PALETTE_NAMES)}[label]


@dataclass
class SpritesParams:
    """``dataset_params`` of the Sprites datasets."""

    size: int = 32  # image height = width in pixels
    n_train: int = 20000
    n_validation: int = 2000
    n_test: int = 2000
    seed: int = 0  # generator seed of the factors; each split its own stream
    pair_factors: List[str] = field(default_factory=lambda: ["shape", "color"])  # pairs only
    label: str = "shape"  # what ``class`` is: shape (5 classes), color (6) or shape_color (shape * 6 + colour, 30)


class Sprites(ImageDataset):
    """One split of Sprites, rendered at construction; examples add the factors.

    ``{"image": float32 (size, size, 3) in [-1, 1], "class": int (``dataset_params.label``, by default the shape),
    "shape": int, "color": int, "x": float, "y": float, "scale": float}``
    """

    Params: ClassVar[type] = SpritesParams
    class_names = SHAPES

    def __init__(self, config: Mapping):
        prepare_run(config)
        self.params = component_params(config, "dataset_params", type(self))
        count = {"train": self.params.n_train, "validation": self.params.n_validation,
                 "test": self.params.n_test}[self.split]
        rng = np.random.default_rng([self.params.seed, SPLITS.index(self.split)])
        self.factors = SpriteFactors.sample(count, rng)
        if self.params.label not in CLASS_LABELS:
            raise ConfigError(f"dataset_params.label must be one of {', '.join(CLASS_LABELS)}, "
                              f"got '{self.params.label}'")
        self.class_names = class_names(self.params.label)
        classes = class_labels(self.factors, self.params.label)
        self.arrays = LabelledImages(render_sprites(self.factors, self.params.size), classes)
        self.labels = {"class": classes, **self.factors.as_dict()}

    def get_example(self, i: int) -> dict:
        return {**super().get_example(i), **self.factors.example(i)}

    def get_batch(self, indices: np.ndarray) -> dict:
        return {**super().get_batch(indices), **{k: v[indices] for k, v in self.factors.as_dict().items()}}

    def mask(self, i: int) -> np.ndarray:
        """bool ``(size, size)`` part mask of example ``i``'s sprite."""
        return sprite_masks(self.factors.subset([i]), self.params.size)[0]

    def box(self, i: int) -> tuple[int, int, int, int]:
        """Bounding box ``(x0, y0, x1, y1)`` of example ``i``'s part mask."""
        return bounding_box(self.mask(i))

    def part_keypoints(self, indices) -> np.ndarray:
        """int64 ``(N, 5, 2)`` ``(x, y)`` pixels of the :data:`KEYPOINTS` of examples ``indices``, all visible."""
        return sprite_keypoints(self.factors.subset(np.asarray(indices)), self.params.size)


class SpritesPairs(FactorPairs, Sprites):
    """Sprite pairs sharing one of ``dataset_params.pair_factors``."""

    def __init__(self, config: Mapping):
        super().__init__(config)
        unknown = set(self.params.pair_factors) - set(PAIR_FACTORS)
        if unknown or not self.params.pair_factors:
            raise ConfigError(f"invproto: dataset_params.pair_factors must be a non-empty list of "
                              f"{', '.join(PAIR_FACTORS)}; got {list(self.params.pair_factors)}")
        self.factor_names = tuple(self.params.pair_factors)

    def pair(self, i: int, factor: int, rng: np.random.Generator) -> tuple[dict, dict]:
        partner = SpriteFactors.sample(1, rng)
        for name in PAIR_FACTORS[self.factor_names[factor]]:
            getattr(partner, name)[0] = getattr(self.factors, name)[i]
        image2 = to_signed(render_sprites(partner, self.params.size)[0])
        return self.single(i), {"image": image2, "class": int(class_labels(partner, self.params.label)[0]), **partner.example(0)}


class SpritesTrain(Sprites):
    split = "train"


class SpritesValidation(Sprites):
    split = "validation"


class SpritesTest(Sprites):
    split = "test"


class SpritesPairsTrain(SpritesPairs):
    split = "train"


class SpritesPairsValidation(SpritesPairs):
    split = "validation"


class SpritesPairsTest(SpritesPairs):
    split = "test"


def read_colours(images: np.ndarray, relative_threshold: float = 0.5) -> np.ndarray:
    """int64 ``(N,)`` :data:`PALETTE` index of each sprite's colour, read from the pixels.

    ``images``: float ``(N, H, W, 3)`` in [-1, 1] (rendered or decoded). The
    sprite is every pixel whose brightness (max over RGB) exceeds
    ``relative_threshold`` times the image's brightest pixel, which leaves out
    the black background and the anti-aliased edge; its mean RGB, scaled so
    that its largest channel is 1 (a dimmer decoder keeps the hue), is matched
    to the nearest palette colour scaled alike. Exact on rendered sprites (a
    test checks it).
    """
    pixels = (np.asarray(images, dtype=np.float64) + 1) / 2
    brightness = pixels.max(axis=-1)
    foreground = brightness > relative_threshold * brightness.max(axis=(1, 2), keepdims=True)
    mean = (pixels * foreground[..., None]).sum(axis=(1, 2)) / np.maximum(foreground.sum(axis=(1, 2)), 1)[:, None]
    hue = mean / np.maximum(mean.max(axis=1, keepdims=True), 1e-12)
    palette_hue = PALETTE / PALETTE.max(axis=1, keepdims=True)
    return ((hue[:, None, :] - palette_hue[None]) ** 2).sum(-1).argmin(axis=1)
