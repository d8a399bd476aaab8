"""Procedural face renderer driven by FACS action units.

Each image is a function of ``(seed, subject_id, category, index)`` alone: the subject's traits come
from ``(seed, subject_id)`` (see :mod:`cfer.data.synthetic.subjects`), and the expression and the
nuisance (pose, light, noise, blur, background) from the whole key. The renderer draws a batch of
keys with one NumPy call per facial part, so its cost per image falls with the batch size.

How each action unit moves the face follows the FACS descriptions (Ekman & Friesen 1978):

======  =====================  =============================================================
AU      FACS name              what the renderer moves
======  =====================  =============================================================
1       inner brow raiser      inner brow ends up, horizontal forehead lines
2       outer brow raiser      outer brow ends up, forehead lines
4       brow lowerer           brows down and together, vertical furrow between the brows
5       upper lid raiser       upper lid up: sclera shows above the iris
6       cheek raiser           cheeks up, lower lid up, crow's feet, deeper nasolabial furrow
7       lid tightener          lids narrow, mostly the lower one
9       nose wrinkler          wrinkles across the nose bridge, nostrils up, nasolabial furrow;
                               inner brows down, lower lids up (procerus, cheeks)
10      upper lip raiser       upper lip up, square opening (teeth show), nostrils up, nasolabial furrow
11      nasolabial deepener    nasolabial furrow darker
12      lip corner puller      corners up and out
15      lip corner depressor   corners down
17      chin raiser            lower lip pushed up, chin boss and mentolabial furrow
20      lip stretcher          corners out, lips flatten, parted lips open as a rectangle
23      lip tightener          lips narrow and thin
24      lip presser            lips pressed thin and closed, bulges above and below
25      lips part              lips apart
26      jaw drop               mouth open, chin down
27      mouth stretch          mouth wide open vertically, chin further down
======  =====================  =============================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from cfer.data.synthetic import raster
from cfer.data.synthetic.subjects import RENDERED_AUS, SubjectTraits, make_subject
from cfer.taxonomy import Category, get_category

#: Facial regions whose masks come with a rendered batch; a pointing-game score checks that an
#: attention map falls inside the regions of the active AUs.
REGIONS: tuple[str, ...] = ("brows", "eyes", "nose", "cheeks", "mouth", "chin")

#: The facial regions each AU moves.
AU_REGION: dict[int, tuple[str, ...]] = {
    1: ("brows",), 2: ("brows",), 4: ("brows",),
    5: ("eyes",), 6: ("eyes", "cheeks"), 7: ("eyes",),
    9: ("nose", "brows", "eyes"), 11: ("cheeks",),
    10: ("mouth",), 12: ("mouth",), 15: ("mouth",), 20: ("mouth",), 23: ("mouth",), 24: ("mouth",),
    25: ("mouth",), 26: ("mouth", "chin"), 27: ("mouth", "chin"),
    17: ("chin",),
}  # fmt: skip

_AU_COLUMN = {au: column for column, au in enumerate(RENDERED_AUS)}
# Chance that an AU outside the category's sets fires weakly, as in spontaneous faces.
_SPURIOUS_AU_RATE = 0.04
# Head pose ranges, in radians and face units.
_MAX_ROLL = math.radians(18.0)
_MAX_YAW = 0.3


@dataclass(frozen=True)
class RenderedBatch:
    """Images and targets of a batch of keys.

    Attributes:
        images: (B, 3, H, W) uint8 RGB.
        au_intensities: (B, len(RENDERED_AUS)) float32 in [0, 1].
        regions: (B, len(REGIONS), H, W) float32 coverage of each facial region, or None.
    """

    images: np.ndarray
    au_intensities: np.ndarray
    regions: np.ndarray | None = None


def sample_expression(category: Category, traits: SubjectTraits, rng: np.random.Generator) -> np.ndarray:
    """Draws the AU intensities of one image of ``category`` by a subject.

    Prototypical AUs always fire, optional AUs fire with their frequency in Du et al. (2014), and
    every other AU fires weakly now and then; intensities scatter around the subject's expressivity.

    Args:
        category: The expression category.
        traits: The subject's traits (its expressivity scales every AU).
        rng: Generator seeded by the image key.

    Returns:
        (len(RENDERED_AUS),) float32 intensities in [0, 1].
    """
    intensity = np.zeros(len(RENDERED_AUS))
    # Draw everything for every AU, always, so that the generator's stream does not depend on the
    # category and two categories of one key differ only where their AUs differ.
    base = rng.normal(0.85, 0.12, len(RENDERED_AUS))
    fires = rng.uniform(size=len(RENDERED_AUS))
    optional = rng.uniform(0.25, 0.7, len(RENDERED_AUS))
    spurious = rng.uniform(0.05, 0.25, len(RENDERED_AUS))
    gain = traits.expressivity
    for au in category.aus:
        c = _AU_COLUMN[au]
        intensity[c] = max(0.35, base[c] * gain[c])
    for au, frequency in category.optional_aus:
        c = _AU_COLUMN[au]
        if fires[c] < frequency:
            intensity[c] = optional[c] * gain[c]
    expected = {au for au in category.aus} | {au for au, _ in category.optional_aus}
    for au in RENDERED_AUS:
        c = _AU_COLUMN[au]
        if au not in expected and fires[c] < _SPURIOUS_AU_RATE:
            intensity[c] = spurious[c] * gain[c]
    return np.clip(intensity, 0.0, 1.0).astype(np.float32)


def deviate_compound(intensities: np.ndarray, category: Category, traits: SubjectTraits, strength: float,
                     rng: np.random.Generator) -> np.ndarray:
    """A subject's own variant of a compound: AUs dropped and added, one component stronger than the other.

    Real compounds are messier than the prototypical AUs of Du et al. (2014). At ``strength`` s:

    * each of the compound's prototypical AUs is dropped with probability 0.3·s (one is always kept);
    * each AU of a component that the compound does not list fires with probability 0.4·s, and any
      other AU with probability 0.1·s, at an intensity between 0.2 and 0.8;
    * one component leans: the AUs only the other one has are scaled by ``1 - 0.7·s·u``, u in [0.3, 1].

    Args:
        intensities: The drawn intensities, (len(RENDERED_AUS),).
        category: A compound category (others are returned unchanged).
        traits: The subject's traits (its expressivity scales the added AUs).
        strength: s in [0, 1]; 0 changes nothing.
        rng: Generator seeded by (subject, category) only, so the variant is the subject's.

    Returns:
        (len(RENDERED_AUS),) float32 intensities in [0, 1].
    """
    if strength <= 0 or category.kind != "compound":
        return intensities
    out = intensities.astype(np.float64).copy()
    drop, add, level = rng.uniform(size=(3, len(RENDERED_AUS)))  # fixed-size draws: one stream for every category
    lean, amount = rng.uniform(), rng.uniform(0.3, 1.0)
    own = [set(get_category(name).aus) for name in category.components]
    listed = set(category.aus)
    for au in (own[1] - own[0]) if lean < 0.5 else (own[0] - own[1]):
        out[_AU_COLUMN[au]] *= 1.0 - 0.7 * strength * amount
    dropped = [au for au in category.aus if drop[_AU_COLUMN[au]] < 0.3 * strength]
    if len(dropped) == len(category.aus):  # keep the strongest
        dropped.remove(max(category.aus, key=lambda au: out[_AU_COLUMN[au]]))
    for au in dropped:
        out[_AU_COLUMN[au]] = 0.0
    leaks = (own[0] | own[1]) - listed
    for au in RENDERED_AUS:
        c = _AU_COLUMN[au]
        if au not in listed and add[c] < (0.4 if au in leaks else 0.1) * strength:
            out[c] = max(out[c], (0.2 + 0.6 * level[c]) * traits.expressivity[c])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@lru_cache(maxsize=4096)
def _subject(seed: int, subject_id: int) -> SubjectTraits:
    return make_subject(seed, subject_id)


def _image_params(seed: int, subject_id: int, category: Category, index: int, size: int,
                  deviation: float = 0.0) -> dict[str, np.ndarray]:
    """Draws everything about one image that is not the subject's: AUs, pose, light, noise."""
    traits = _subject(seed, subject_id)
    # The category id is part of the key so that each (subject, category) pair has its own nuisance.
    rng = np.random.default_rng([seed, subject_id, category.id, index, 0xFACE])
    aus = sample_expression(category, traits, rng)
    if deviation > 0:  # its own generator: the other draws stay those of the undeviated image
        variant = np.random.default_rng([seed, subject_id, category.id, 0xDE7A])
        aus = deviate_compound(aus, category, traits, deviation, variant)
    # One vector draw for the scalars, mapped onto their ranges, is several times cheaper than one
    # generator call each.
    (roll, yaw, scale, shift_x, shift_y, brightness, light_angle, light_strength, blur,
     noise) = rng.random(10)  # fmt: skip
    roll = _MAX_ROLL * (2.0 * roll - 1.0) * abs(2.0 * roll - 1.0)  # mostly small, sometimes large
    light_angle *= 2.0 * math.pi
    # Uniform noise with the standard deviation drawn, which costs a quarter of Gaussian noise.
    noise_std = 0.03 * noise * math.sqrt(12.0)
    return {
        "aus": aus,
        "cos_roll": np.float32(math.cos(roll)),
        "sin_roll": np.float32(math.sin(roll)),
        "yaw": np.float32(_MAX_YAW * (2.0 * yaw - 1.0)),
        "scale": np.float32(1.12 + 0.2 * scale),
        "shift_x": np.float32(0.07 * (2.0 * shift_x - 1.0)),
        "shift_y": np.float32(0.07 * (2.0 * shift_y - 1.0)),
        "brightness": np.float32(0.72 + 0.38 * brightness),
        "light_x": np.float32(math.cos(light_angle)),
        "light_y": np.float32(math.sin(light_angle)),
        "light_strength": np.float32(0.35 * light_strength),
        "background": rng.uniform(0.1, 0.9, (3, 3)).astype(np.float32),  # two gradient ends, a blob
        "blob": rng.uniform(-0.9, 0.9, 3).astype(np.float32),  # x, y, radius of a background blob
        "blur": np.float32(0.6 * blur),
        "noise": np.float32(noise_std) * (rng.random((3, size, size), dtype=np.float32) - np.float32(0.5)),
    }


class FaceRenderer:
    """Renders synthetic expressive faces for keys ``(subject_id, category, index)``.

    Args:
        size: Side of the square images in pixels (32 to 224 are supported).
        seed: Dataset seed; subjects and images are functions of it.
        compound_deviation: How far compounds stray from their prototypical AUs, in [0, 1]
            (:func:`deviate_compound`); 0 draws exactly them.

    Example:
        >>> renderer = FaceRenderer(size=64, seed=0)
        >>> batch = renderer.render([(0, "happy", 0), (0, "sadly_angry", 0)])
        >>> batch.images.shape
        (2, 3, 64, 64)
    """

    def __init__(self, size: int = 64, seed: int = 0, compound_deviation: float = 0.0) -> None:
        if not 16 <= size <= 512:
            raise ValueError(f"size must be between 16 and 512 pixels, got {size}")
        if not 0.0 <= compound_deviation <= 1.0:
            raise ValueError(f"compound_deviation must be between 0 and 1, got {compound_deviation}")
        self.size = size
        self.seed = seed
        self.compound_deviation = compound_deviation
        centres = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
        self._grid_x = centres[None, None, :]
        self._grid_y = centres[None, :, None]

    def subject(self, subject_id: int) -> SubjectTraits:
        """The traits of one subject."""
        return _subject(self.seed, subject_id)

    def render(
        self,
        keys: Sequence[tuple[int, int | str, int]],
        regions: bool = False,
        batch_size: int = 32,
        au_intensities: np.ndarray | None = None,
    ) -> RenderedBatch:
        """Renders one image per key.

        Args:
            keys: ``(subject_id, category, index)`` triples; ``category`` is a CFEE id or name.
            regions: Also return the facial-region masks.
            batch_size: Keys drawn per vectorised pass; bounds the memory, not the result.
            au_intensities: Optional (len(keys), len(RENDERED_AUS)) intensities that replace the ones
                drawn for the category, e.g. to show what a single AU does; the key still decides the
                subject and the nuisance.

        Returns:
            The batch, in the order of ``keys``.
        """
        if au_intensities is not None:
            au_intensities = np.asarray(au_intensities, dtype=np.float32)
            if au_intensities.shape != (len(keys), len(RENDERED_AUS)):
                raise ValueError(
                    f"au_intensities must have shape ({len(keys)}, {len(RENDERED_AUS)}) for columns "
                    f"{RENDERED_AUS}, got {au_intensities.shape}"
                )
        parts = [
            self._render_chunk(
                keys[start : start + batch_size],
                regions,
                None if au_intensities is None else au_intensities[start : start + batch_size],
            )
            for start in range(0, len(keys), batch_size)
        ]
        if not parts:
            shape = (0, 3, self.size, self.size)
            return RenderedBatch(
                np.zeros(shape, np.uint8),
                np.zeros((0, len(RENDERED_AUS)), np.float32),
                np.zeros((0, len(REGIONS), self.size, self.size), np.float32) if regions else None,
            )
        return RenderedBatch(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.au_intensities for p in parts]),
            np.concatenate([p.regions for p in parts]) if regions else None,
        )

    def _render_chunk(
        self, keys: Sequence[tuple[int, int | str, int]], with_regions: bool, au_override: np.ndarray | None
    ) -> RenderedBatch:
        traits = [self.subject(int(s)) for s, _, _ in keys]
        images = [_image_params(self.seed, int(s), get_category(c), int(i), self.size, self.compound_deviation)
                  for s, c, i in keys]
        face = _stack_traits(traits)
        img = _stack_images(images)
        aus = np.stack([p["aus"] for p in images]) if au_override is None else au_override
        au = {a: aus[:, _AU_COLUMN[a], None, None] for a in RENDERED_AUS}

        frame = _Frame(self.size, img)
        geometry = _Geometry(face, au)
        _draw_head(frame, face, geometry)
        _draw_texture(frame, face, geometry, au)
        _draw_nose(frame, face, geometry, au)
        _draw_eyes(frame, face, geometry)
        _draw_brows(frame, face, geometry)
        _draw_mouth(frame, face, geometry)
        _draw_front_hair(frame, face)
        _draw_glasses(frame, face)

        layers = np.concatenate([frame.color, frame.alpha[:, None]], axis=1)
        if with_regions:
            layers = np.concatenate([layers, _regions(frame, face, geometry)], axis=1)
        posed = _pose(layers, img, self.size, frame.size)
        # The face layers hold premultiplied colour, so compositing over the background is one step.
        canvas = posed[:, :3] + (1.0 - posed[:, 3:4]) * _background(self.size, img)
        light = img["light_strength"] * (img["light_x"] * self._grid_x + img["light_y"] * self._grid_y)
        canvas *= (img["brightness"] * (1.0 + light))[:, None]
        canvas = _gaussian_blur(canvas, [float(p["blur"]) * self.size / 64.0 for p in images])
        canvas += np.stack([p["noise"] for p in images])
        pixels = np.floor(np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        region_masks = np.ascontiguousarray(posed[:, 4:]) if with_regions else None
        return RenderedBatch(pixels, aus, region_masks)


def _square(value):
    return value * value


def _stack_traits(traits: list[SubjectTraits]) -> dict[str, np.ndarray]:
    """Per-subject traits as (B, 1, 1) float32 arrays, colours as (B, 3)."""
    stacked = {}
    for name in SubjectTraits.__dataclass_fields__:
        values = np.stack([np.asarray(getattr(t, name), dtype=np.float32) for t in traits])
        stacked[name] = values if values.ndim == 2 else values[:, None, None]
    return stacked


def _stack_images(images: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    stacked = {}
    for name in images[0]:
        if name in ("aus", "noise"):
            continue
        values = np.stack([np.asarray(p[name], dtype=np.float32) for p in images])
        stacked[name] = values if values.ndim > 1 else values[:, None, None]
    return stacked


class _Geometry:
    """Where each facial part sits once the AUs have moved it; all fields (B, 1, 1)."""

    def __init__(self, face: dict[str, np.ndarray], au: dict[int, np.ndarray]) -> None:
        self.chin_drop = 0.015 * au[25] + 0.08 * au[26] + 0.12 * au[27]
        # Brows: AU1 lifts the inner ends, AU2 the outer ends, AU4 pulls them down and together. With
        # AU1, AU4 draws the raised inner ends together instead of down (the 1+4 brow of grief and
        # fear); AU9's procerus pull lowers the inner ends too.
        base = face["eye_height"] - face["brow_gap"] + face["resting_brow"]
        self.brow_inner_y = base - 0.16 * au[1] + 0.18 * au[4] * (1.0 - 0.9 * au[1]) + 0.07 * au[9] - 0.01 * au[2]
        self.brow_outer_y = base - 0.12 * au[2] + 0.01 * au[4] + 0.04 * au[1] * (1.0 - au[2])
        self.brow_inner_x = 0.075 - 0.06 * au[4] * (1.0 - 0.6 * au[1])
        self.brow_arch = face["brow_arch"] * (1.0 - 0.8 * au[4]) + 0.02 * au[2] * (1.0 - au[4])
        self.brow_outer_x = face["eye_spacing"] + face["eye_half_width"] + 0.03
        # Eyes: AU5 opens the upper lid; AU7, AU6 and AU9 (through the cheeks) close mostly from below.
        opening = 1.2 * face["eye_opening"]
        self.eye_up = opening * np.maximum(
            0.25, 1.0 + 1.6 * au[5] - 0.45 * au[7] - 0.3 * au[4] * (1.0 - au[5]) - 0.2 * au[6] - 0.2 * au[9]
            - 0.35 * au[1] * au[4] * (1.0 - au[5]))
        self.eye_down = opening * np.maximum(0.12, 0.8 + 0.2 * au[5] - 0.5 * au[7] - 0.5 * au[6] - 0.3 * au[9])
        self.eye_half_width = 1.12 * face["eye_half_width"] * (1.0 - 0.1 * au[7] - 0.08 * au[6])
        # Nose: AU9 and AU10 pull the nostrils up.
        self.nose_bottom = face["eye_height"] + face["nose_length"] + 0.04 - 0.03 * au[9] - 0.015 * au[10]
        # Mouth.
        self.mouth_half_width = 1.25 * face["mouth_half_width"] * (
            1.0 + 0.4 * au[12] + 0.45 * au[20] - 0.25 * au[23] - 0.15 * au[24] - 0.15 * au[27] + 0.04 * au[25]
        )
        self.corner_drop = face["resting_mouth"] - 0.13 * au[12] + 0.22 * au[15] + 0.02 * au[20]
        self.mouth_y = face["mouth_height"] + 0.3 * self.chin_drop
        self.centre_lift = 0.045 * au[17]
        closing = np.clip(1.0 - 0.85 * au[24] - 0.5 * au[23], 0.0, 1.0)
        # A smile or a stretch opens parted lips wider (upper teeth show in a smile).
        self.open_up = closing * (0.02 * au[25] + 0.08 * au[10] + 0.02 * au[26] + 0.03 * au[27]
                                  + 0.02 * au[12] * au[25])
        self.open_down = closing * (0.03 * au[25] + 0.09 * au[26] + 0.14 * au[27] + 0.025 * au[12] * au[25]
                                    + 0.02 * au[20] * au[25])
        # How square the opening is: a stretched (AU20) or raised (AU10) mouth opens as a rectangle.
        self.squareness = 2.0 + 6.0 * np.maximum(au[20], au[10])
        self.press = np.maximum(au[24], 0.7 * au[23])
        thinning = 1.0 - 0.55 * au[24] - 0.4 * au[23] - 0.25 * au[20] - 0.2 * au[12]
        self.upper_lip = 1.4 * face["upper_lip"] * np.maximum(0.2, thinning)
        self.lower_lip = 1.4 * face["lower_lip"] * np.maximum(0.2, thinning + 0.3 * au[17] + 0.3 * au[15])
        self.chin_y = face["mouth_height"] + 0.18 + self.chin_drop


# The face is drawn upright in its own frame on a canvas this much larger than the output (in face
# units, the output spans [-1, 1] at scale 1), so that a rolled or shrunk head never shows an edge.
_FACE_CANVAS_EXTENT = 1.25


class _Frame:
    """An upright face canvas of a batch, and each pixel's coordinates in the face frame.

    Parts are drawn here with premultiplied colour and coverage, and the head pose is applied once
    at the end by resampling (see :func:`_pose`). Because the face is upright, ``window`` can hand
    each part a small fixed view of the canvas: parts cost what they cover, and a key renders to the
    same bytes whatever it is batched with.
    """

    def __init__(self, size: int, img: dict[str, np.ndarray]) -> None:
        self.size = int(2 * math.ceil(size * _FACE_CANVAS_EXTENT / 2))
        self.pixel = np.float32(2.0 * _FACE_CANVAS_EXTENT / self.size)
        centres = ((np.arange(self.size, dtype=np.float32) + 0.5) * self.pixel) - np.float32(_FACE_CANVAS_EXTENT)
        self.y = centres[None, :, None]
        x = centres[None, None, :]
        # Yaw: features stand in front of the outline, so they shift more, and the far side shrinks.
        yaw = img["yaw"]
        self.x_outline = x - 0.05 * yaw
        x_feat = x - 0.16 * yaw
        self.x = x_feat * (1.0 + 0.35 * yaw * np.clip(x_feat * 2.0, -1.0, 1.0))
        self.x_nose = self.x - 0.05 * yaw
        batch = len(yaw)
        self.color = np.zeros((batch, 3, self.size, self.size), dtype=np.float32)
        self.alpha = np.zeros((batch, self.size, self.size), dtype=np.float32)

    def window(self, half_width: float, top: float, bottom: float) -> "_Frame":
        """A view on the part of the canvas that a face-frame box can reach under any yaw.

        Args:
            half_width: The box spans [-half_width, half_width] horizontally in the face frame.
            top, bottom: Its vertical extent in the face frame (top < bottom).
        """
        reach = half_width / (1.0 - 0.35 * _MAX_YAW) + 0.21 * _MAX_YAW
        rows = self._slice(top, bottom)
        cols = self._slice(-reach, reach)
        view = object.__new__(_Frame)
        view.size, view.pixel = self.size, self.pixel
        view.y = self.y[:, rows]
        view.x_outline = self.x_outline[:, :, cols]
        view.x = self.x[:, :, cols]
        view.x_nose = self.x_nose[:, :, cols]
        view.color = self.color[:, :, rows, cols]
        view.alpha = self.alpha[:, rows, cols]
        return view

    def _slice(self, low: float, high: float) -> slice:
        margin = 3  # pixels: anti-aliased edges and the approximate ellipse distance reach past shapes
        first = int(math.floor((low + _FACE_CANVAS_EXTENT) / self.pixel)) - margin
        last = int(math.ceil((high + _FACE_CANVAS_EXTENT) / self.pixel)) + margin
        return slice(max(first, 0), min(last, self.size))

    def paint(self, mask: np.ndarray, color, opaque: bool = False) -> None:
        """Composite ``color`` where ``mask`` covers; ``opaque`` parts also add to the coverage."""
        raster.paint(self.color, mask, color)
        if opaque:
            self.alpha += mask * (1.0 - self.alpha)

    def shade(self, mask: np.ndarray, strength) -> None:
        raster.shade(self.color, mask, strength)


def _pose(layers: np.ndarray, img: dict[str, np.ndarray], size: int, face_canvas_size: int) -> np.ndarray:
    """Resamples upright face-frame layers (B, C, N, N) into the posed output (B, C, size, size)."""
    centres = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    cx = centres[None, None, :] - img["shift_x"]
    cy = centres[None, :, None] - img["shift_y"]
    # The inverse of the head pose: undo the shift, the roll and the scale.
    x = (img["cos_roll"] * cx + img["sin_roll"] * cy) / img["scale"]
    y = (img["cos_roll"] * cy - img["sin_roll"] * cx) / img["scale"]
    grid = np.stack(np.broadcast_arrays(x, y), axis=-1) / np.float32(_FACE_CANVAS_EXTENT)
    out = torch.nn.functional.grid_sample(
        torch.from_numpy(layers), torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )
    return out.numpy()


def _background(size: int, img: dict[str, np.ndarray]) -> np.ndarray:
    centres = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    grid_x, grid_y = centres[None, None, :], centres[None, :, None]
    colors = img["background"]  # (B, 3, 3): start, end, blob
    along = np.clip(0.5 + 0.5 * (img["light_y"] * grid_x - img["light_x"] * grid_y), 0.0, 1.0)
    start = colors[:, 0, :, None, None]
    canvas = start + along[:, None] * (colors[:, 1, :, None, None] - start)
    canvas = np.ascontiguousarray(canvas, dtype=np.float32)
    blob = img["blob"]
    radius = 0.3 + 0.4 * np.abs(blob[:, 2:3, None])
    mask = raster.ellipse(grid_x, grid_y, blob[:, 0:1, None], blob[:, 1:2, None], radius, radius, 0.4)
    raster.paint(canvas, 0.6 * mask, colors[:, 2])
    return canvas


def _draw_head(frame: _Frame, face, geometry) -> None:
    x, y, pixel = frame.x_outline, frame.y, frame.pixel
    volume = face["hair_volume"]
    back = raster.ellipse(x, y, 0.0, -0.08, face["face_half_width"] + volume, face["face_half_height"] + volume, pixel)
    hair_bottom = np.where(face["long_hair"] > 0.5, 0.75, face["eye_height"] + 0.1)
    frame.paint(back * raster.ramp(hair_bottom - y, pixel), face["hair"], opaque=True)
    f = frame.window(0.35, 0.25, 2.0)
    neck = raster.vertical_band(f.x_outline, f.y, 0.0, 0.3, 2.0, face["face_half_width"] * 0.45, pixel)
    f.paint(neck, face["skin"] * 0.82, opaque=True)
    f = frame.window(0.82, -0.25, 0.15)
    for side in (-1.0, 1.0):
        ear = raster.ellipse(f.x_outline, f.y, side * face["face_half_width"] * 0.97, face["eye_height"] + 0.12, 0.06, 0.11, pixel)
        f.paint(ear, face["skin"] * 0.9, opaque=True)
    # The outline: an ellipse that tapers towards the chin, which drops with the jaw.
    half_height = face["face_half_height"]
    lower = np.clip(y / half_height, 0.0, 1.0)
    half_width = face["face_half_width"] * (1.0 - face["jaw_taper"] * lower * lower)
    height = np.where(y > 0, half_height + geometry.chin_drop, half_height)
    dx = x / half_width
    dy = y / height
    radius = np.sqrt(dx * dx + dy * dy)
    frame.paint(raster.ramp((1.0 - radius) * np.minimum(half_width, height), pixel), face["skin"], opaque=True)
    _draw_depth(frame, face, radius)


def _draw_depth(frame: _Frame, face, radius: np.ndarray) -> None:
    """Shading that gives the flat outline depth: the face turns away towards its edge, the eye
    sockets lie under the brow ridge, the cheekbones catch the light, the nose casts a shadow."""
    inside = np.clip(1.0 - radius, 0.0, 1.0) > 0
    frame.shade(inside * np.clip(radius, 0.0, 1.0) ** 3, 0.45)
    f = frame.window(0.5, -0.4, 0.45)
    for side in (-1.0, 1.0):
        eye_x = side * face["eye_spacing"]
        socket = raster.ellipse(f.x, f.y, eye_x, face["eye_height"] - 0.02, face["eye_half_width"] + 0.05, 0.085, 0.04)
        f.shade(socket, 0.22)
        cheekbone = raster.ellipse(f.x, f.y, side * (face["eye_spacing"] + 0.04), face["eye_height"] + 0.2, 0.11, 0.07, 0.05)
        f.shade(cheekbone, -0.08)
        side_of_nose = raster.vertical_band(f.x_nose, f.y, side * (face["nose_half_width"] + 0.01), face["eye_height"],
                                            face["eye_height"] + face["nose_length"] + 0.03, 0.025, 0.02)
        f.shade(side_of_nose, 0.12)
    under_nose = raster.ellipse(f.x_nose, f.y, 0.0, face["eye_height"] + face["nose_length"] + 0.075, 0.07, 0.025, 0.02)
    f.shade(under_nose, 0.15)


def _draw_texture(frame: _Frame, face, geometry, au) -> None:
    """Wrinkles and furrows that FACS lists as appearance cues of some AUs."""
    # Horizontal forehead lines (AU1, AU2) and vertical furrows between the brows (AU4).
    f = frame.window(0.3, -0.75, 0.0)
    forehead = np.maximum(au[1], au[2])
    for k, lift in enumerate((0.07, 0.11, 0.15)):
        line_y = geometry.brow_inner_y - lift
        line = raster.band(f.x, f.y, -0.22 + 0.03 * k, 0.22 - 0.03 * k, lambda t, y0=line_y: y0 + 0.012 * _square(2 * t - 1), 0.005, f.pixel)
        f.shade(line, 0.35 * forehead)
    for side in (-1.0, 1.0):
        furrow = raster.vertical_band(f.x, f.y, side * 0.028, geometry.brow_inner_y - 0.02, geometry.brow_inner_y + 0.07, 0.005, f.pixel)
        f.shade(furrow, 0.7 * au[4] * (1.0 - 0.5 * au[1]))
    # Crow's feet (AU6) at the outer eye corners; the cheek and the furrow under the eye rise.
    f = frame.window(0.55, -0.35, 0.15)
    for side in (-1.0, 1.0):
        eye_x = side * face["eye_spacing"]
        corner_x = eye_x + side * (geometry.eye_half_width + 0.015)
        for slope in (-0.5, 0.0, 0.5):
            crow = raster.band(f.x, f.y, corner_x, corner_x + side * 0.06, lambda t, s=slope: face["eye_height"] + s * 0.06 * t, 0.0045, f.pixel)
            f.shade(crow, 0.45 * au[6])
        cheek = raster.ellipse(f.x, f.y, eye_x, face["eye_height"] + 0.19 - 0.05 * au[6], 0.12, 0.07, 3 * f.pixel)
        f.shade(cheek, -0.1 * au[6])
        under_eye_y = face["eye_height"] + geometry.eye_down + 0.045 - 0.02 * au[6]
        under_eye = raster.band(f.x, f.y, eye_x - 0.07, eye_x + 0.07, lambda t, y0=under_eye_y: y0 + 0.01 * _square(2 * t - 1), 0.005, f.pixel)
        f.shade(under_eye, 0.08 + 0.35 * au[6])
    # The nasolabial furrow runs from the nose wing to beyond the mouth corner.
    f = frame.window(0.4, -0.05, 0.7)
    depth = np.maximum.reduce([0.6 * au[6], au[9], au[10], au[11], 0.8 * au[12], 0.3 * au[20]])
    for side in (-1.0, 1.0):
        start_x = side * (face["nose_half_width"] + 0.03)
        end_x = side * (geometry.mouth_half_width + 0.045)
        start_y = geometry.nose_bottom - 0.02
        end_y = geometry.mouth_y + geometry.corner_drop + 0.03
        naso = raster.band(f.x, f.y, start_x, end_x, lambda t, y0=start_y, y1=end_y: y0 + (y1 - y0) * t * (1.25 - 0.25 * t), 0.006, f.pixel)
        f.shade(naso, 0.1 + 0.7 * depth)
    # Chin boss and mentolabial furrow (AU17); lip-press bulges (AU24).
    f = frame.window(0.2, 0.2, 0.8)
    chin = raster.ellipse(f.x, f.y, 0.0, geometry.chin_y - 0.04, 0.09, 0.05, 2 * f.pixel)
    f.shade(chin, 0.15 * au[17])
    crease_y = geometry.mouth_y + geometry.open_down + geometry.lower_lip + 0.04 - 0.015 * au[17]
    crease = raster.band(f.x, f.y, -0.07, 0.07, lambda t: crease_y - 0.012 * (1 - _square(2 * t - 1)), 0.005, f.pixel)
    f.shade(crease, 0.08 + 0.6 * au[17])
    for offset in (-1.0, 1.0):
        bulge = raster.vertical_band(f.y, f.x, geometry.mouth_y + offset * 0.05, -0.09, 0.09, 0.004, f.pixel)
        f.shade(bulge, 0.5 * au[24])


def _draw_nose(frame: _Frame, face, geometry, au) -> None:
    f = frame.window(0.25, -0.25, 0.35)
    x, y, pixel = f.x_nose, f.y, f.pixel
    bridge = raster.vertical_band(x, y, -0.035, face["eye_height"] + 0.03, geometry.nose_bottom - 0.05, 0.008, 2 * pixel)
    f.shade(bridge, 0.12)
    tip = raster.ellipse(x, y, 0.0, geometry.nose_bottom - 0.025, face["nose_half_width"], 0.045, 2 * pixel)
    f.shade(tip, 0.07)
    nostril_width = 0.024 * (1.0 + 0.4 * au[9])
    for side in (-1.0, 1.0):
        nostril = raster.ellipse(x, y, side * face["nose_half_width"] * 0.55, geometry.nose_bottom, nostril_width, 0.012, pixel)
        f.shade(nostril, 0.55)
    # AU9 wrinkles the bridge.
    for lift in (0.04, 0.07, 0.1):
        wrinkle_y = face["eye_height"] + lift
        wrinkle = raster.band(x, y, -0.065, 0.065, lambda t, y0=wrinkle_y: y0 + 0.01 * _square(2 * t - 1), 0.006, pixel)
        f.shade(wrinkle, 0.7 * au[9])


def _draw_eyes(frame: _Frame, face, geometry) -> None:
    f = frame.window(0.48, -0.36, 0.04)
    x, y, pixel = f.x, f.y, f.pixel
    for side in (-1.0, 1.0):
        centre_x = side * face["eye_spacing"]
        centre_y = face["eye_height"]
        half_width = geometry.eye_half_width
        t = (x - centre_x) / half_width
        profile = np.clip(1.0 - t * t, 0.0, 1.0)
        upper = centre_y - geometry.eye_up * profile
        lower = centre_y + geometry.eye_down * profile
        opening = raster.between(y, upper, lower, pixel) * raster.ramp((1.0 - np.abs(t)) * half_width, pixel)
        f.paint(opening, np.array([0.93, 0.92, 0.9]))
        iris_radius = face["eye_opening"] * 1.3
        iris = raster.ellipse(x, y, centre_x, centre_y, iris_radius, iris_radius, pixel) * opening
        f.paint(iris, face["iris"])
        pupil = raster.ellipse(x, y, centre_x, centre_y, 0.45 * iris_radius, 0.45 * iris_radius, pixel) * opening
        f.paint(pupil, np.array([0.02, 0.02, 0.02]))
        lid = raster.band(x, y, centre_x - half_width, centre_x + half_width,
                          lambda s, c=centre_y, up=geometry.eye_up: c - up * np.clip(1 - _square(2 * s - 1), 0, 1), 0.009, pixel)
        f.shade(lid, 0.8)


def _draw_brows(frame: _Frame, face, geometry) -> None:
    f = frame.window(0.5, -0.55, -0.05)
    color = np.minimum(face["hair"] * 0.6, 0.3)
    for side in (-1.0, 1.0):
        inner_y, outer_y, arch = geometry.brow_inner_y, geometry.brow_outer_y, geometry.brow_arch

        def height(t, inner_y=inner_y, outer_y=outer_y, arch=arch):
            return inner_y + (outer_y - inner_y) * t - 4.0 * arch * t * (1.0 - t)

        def thickness(t, base=face["brow_thickness"]):
            return 1.4 * base * (1.0 - 0.45 * t) + 0.008

        brow = raster.band(f.x, f.y, side * geometry.brow_inner_x, side * geometry.brow_outer_x, height, thickness, f.pixel)
        f.paint(brow, color)


def _draw_mouth(frame: _Frame, face, geometry) -> None:
    f = frame.window(0.55, 0.15, 0.8)
    x, y, pixel = f.x, f.y, f.pixel
    half_width = geometry.mouth_half_width
    t = x / half_width
    profile = np.clip(1.0 - t * t, 0.0, 1.0)
    opening = np.clip(1.0 - np.abs(t) ** geometry.squareness, 0.0, 1.0)
    across = raster.ramp((1.0 - np.abs(t)) * half_width, pixel)
    seam = geometry.mouth_y + geometry.corner_drop * t * t - geometry.centre_lift * profile
    inner_top = seam - geometry.open_up * opening
    inner_bottom = seam + geometry.open_down * opening
    outer_top = inner_top - geometry.upper_lip * (0.35 + 0.65 * profile)
    outer_bottom = inner_bottom + geometry.lower_lip * (0.35 + 0.65 * profile)
    lips = face["lip_color"] * np.array([0.85, 0.75, 0.75])
    f.paint(raster.between(y, outer_top, inner_top, pixel) * across, lips * 0.85)  # the upper lip in shade
    f.paint(raster.between(y, inner_bottom, outer_bottom, pixel) * across, lips)
    interior = raster.between(y, inner_top - 0.003, inner_bottom + 0.003, pixel) * across
    f.paint(interior, np.array([0.18, 0.05, 0.06]))
    # The line where the lips meet, darker when they are pressed.
    f.shade(raster.between(y, inner_top - 0.005, inner_bottom + 0.005, pixel) * across, 0.45 + 0.3 * geometry.press)
    teeth_color = np.array([0.94, 0.92, 0.86])
    sides = raster.ramp(0.85 - np.abs(t), 0.1)
    teeth_bottom = np.minimum(inner_top + 0.035, inner_bottom)
    f.paint(raster.between(y, inner_top, teeth_bottom, pixel) * across * sides, teeth_color)
    lower_teeth_top = np.maximum(inner_bottom - 0.02, teeth_bottom + 0.02)
    f.paint(raster.between(y, lower_teeth_top, inner_bottom, pixel) * across * sides * 0.9, teeth_color)
    # The lower lip's shadow on the chin.
    f.shade(raster.between(y, outer_bottom, outer_bottom + 0.025, pixel) * across, 0.15)
    # The mouth corners dimple where the lip muscles pull them.
    for side in (-1.0, 1.0):
        corner = raster.ellipse(x, y, side * (half_width + 0.01), geometry.mouth_y + geometry.corner_drop, 0.018, 0.025, pixel)
        f.shade(corner, 0.3)


def _draw_front_hair(frame: _Frame, face) -> None:
    f = frame.window(0.95, -1.2, -0.2)
    volume = face["hair_volume"]
    top = raster.ellipse(f.x_outline, f.y, 0.0, -0.08, face["face_half_width"] + volume, face["face_half_height"] + volume, f.pixel)
    fringe = raster.ramp(face["hairline"] + 0.25 * f.x_outline * f.x_outline - f.y, f.pixel)
    f.paint(top * fringe, face["hair"], opaque=True)


def _draw_glasses(frame: _Frame, face) -> None:
    worn = face["glasses"]
    if not np.any(worn > 0.5):
        return
    f = frame.window(0.52, -0.4, 0.08)
    x, y, pixel = f.x, f.y, f.pixel
    for side in (-1.0, 1.0):
        centre_x = side * face["eye_spacing"]
        rx = face["eye_half_width"] * 1.55
        ry = face["eye_half_width"] * 1.15
        outer = raster.ellipse(x, y, centre_x, face["eye_height"], rx + 0.012, ry + 0.012, pixel)
        inner = raster.ellipse(x, y, centre_x, face["eye_height"], rx, ry, pixel)
        f.paint(worn * np.clip(outer - inner, 0.0, 1.0), face["glasses_color"])
        f.shade(worn * inner, 0.06)
    inner_edge = face["eye_spacing"] - face["eye_half_width"] * 1.55
    bridge = raster.vertical_band(y, x, face["eye_height"] - 0.02, -inner_edge, inner_edge, 0.007, pixel)
    f.paint(worn * bridge, face["glasses_color"])


def _regions(frame: _Frame, face, geometry) -> np.ndarray:
    """Coverage of each facial region in REGIONS, (B, len(REGIONS), H, W)."""
    x, y, pixel = frame.x, frame.y, frame.pixel
    brow_y = 0.5 * (geometry.brow_inner_y + geometry.brow_outer_y)
    eye_y = face["eye_height"]
    eye_half_width = face["eye_half_width"] + 0.08
    cheek_x = 0.5 * (face["nose_half_width"] + geometry.mouth_half_width) + 0.04
    cheek_y = 0.5 * (geometry.nose_bottom + geometry.mouth_y)
    cheek_height = 0.5 * (geometry.mouth_y - geometry.nose_bottom) + 0.06
    masks = {
        "brows": raster.ellipse(x, y, 0.0, brow_y, geometry.brow_outer_x + 0.03, 0.1, pixel),
        "eyes": np.maximum(
            raster.ellipse(x, y, -face["eye_spacing"], eye_y + 0.03, eye_half_width, 0.11, pixel),
            raster.ellipse(x, y, face["eye_spacing"], eye_y + 0.03, eye_half_width, 0.11, pixel),
        ),
        "nose": raster.ellipse(x, y, 0.0, 0.5 * (eye_y + geometry.nose_bottom), face["nose_half_width"] + 0.06,
                               0.5 * (geometry.nose_bottom - eye_y) + 0.03, pixel),
        # The nasolabial furrows, from the nose wings to beyond the mouth corners.
        "cheeks": np.maximum(
            raster.ellipse(x, y, -cheek_x, cheek_y, 0.1, cheek_height, pixel),
            raster.ellipse(x, y, cheek_x, cheek_y, 0.1, cheek_height, pixel),
        ),
        # The mouth region reaches up the nasolabial furrows, which the mouth AUs deepen.
        "mouth": raster.ellipse(x, y, 0.0, geometry.mouth_y - 0.02, geometry.mouth_half_width + 0.12,
                                0.1 + geometry.open_down, pixel),
        # The chin region spans the jaw line, which AU26 and AU27 drop.
        "chin": raster.ellipse(x, y, 0.0, geometry.chin_y - 0.06, 0.75 * face["face_half_width"], 0.16, pixel),
    }
    return np.stack([masks[name] for name in REGIONS], axis=1).astype(np.float32)


def _gaussian_blur(canvas: np.ndarray, sigmas: list[float]) -> np.ndarray:
    """Separable Gaussian blur with a sigma (in pixels) per image; edges are replicated."""
    largest = max(sigmas)
    if largest < 0.3:
        return canvas
    radius = int(math.ceil(2.5 * largest))
    # Each image's kernel depends on its own sigma alone (zeros beyond its own radius), so that an
    # image blurs to the same bytes whatever else is in the batch.
    taps = np.zeros((len(sigmas), 2 * radius + 1), dtype=np.float32)
    for b, sigma in enumerate(sigmas):
        if sigma < 0.3:
            taps[b, radius] = 1.0
            continue
        own = int(math.ceil(2.5 * sigma))
        weights = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-own, own + 1)]
        total = sum(weights)
        taps[b, radius - own : radius + own + 1] = [w / total for w in weights]
    batch, channels, height, width = canvas.shape
    kernel = torch.from_numpy(np.repeat(taps, channels, axis=0))  # one kernel per image and channel
    images = torch.from_numpy(canvas).reshape(1, batch * channels, height, width)
    images = torch.nn.functional.pad(images, (radius, radius, radius, radius), mode="replicate")
    images = torch.nn.functional.conv2d(images, kernel[:, None, None, :], groups=batch * channels)
    images = torch.nn.functional.conv2d(images, kernel[:, None, :, None], groups=batch * channels)
    return images.reshape(batch, channels, height, width).numpy()
