"""Synthetic identities: the persistent traits of each subject of the embedded dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The action units the renderer can draw, in the column order of every AU intensity vector.
RENDERED_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 15, 17, 20, 23, 24, 25, 26, 27)

_SKIN_LIGHT = np.array([0.96, 0.82, 0.71])
_SKIN_DARK = np.array([0.33, 0.21, 0.14])
_HAIR_COLORS = np.array(
    [
        [0.08, 0.06, 0.05],  # black
        [0.30, 0.18, 0.09],  # brown
        [0.55, 0.36, 0.18],  # light brown
        [0.85, 0.70, 0.42],  # blond
        [0.62, 0.26, 0.10],  # red
        [0.62, 0.62, 0.60],  # grey
    ]
)


@dataclass(frozen=True)
class SubjectTraits:
    """Everything that makes one synthetic subject look like themself across expressions.

    Lengths are in face units: the canvas spans [-1, 1] on both axes before the head pose is
    applied, and y grows downwards.
    """

    face_half_width: float  # half the width of the face at the cheekbones
    face_half_height: float  # half the height from brow line to chin
    jaw_taper: float  # how much narrower the face gets towards the chin, 0 = oval
    skin: np.ndarray  # RGB of the skin
    eye_spacing: float  # horizontal distance of each eye's centre from the midline
    eye_height: float  # vertical position of the eyes
    eye_half_width: float
    eye_opening: float  # half the height of the open eye at rest
    iris: np.ndarray  # RGB of the iris
    brow_gap: float  # distance from eye centre up to the brow at rest
    brow_thickness: float
    brow_arch: float  # how much the middle of the brow rises above its ends
    nose_length: float
    nose_half_width: float
    mouth_height: float  # vertical position of the lip line
    mouth_half_width: float
    upper_lip: float  # thickness of the upper lip
    lower_lip: float  # thickness of the lower lip
    lip_color: np.ndarray
    resting_mouth: float  # resting downturn (+) or upturn (-) of the mouth corners
    resting_brow: float  # resting brow drop (+, image y points down) or lift (-), which mimics a mild expression
    hair: np.ndarray  # RGB of the hair and, darker, of the brows
    hairline: float  # height of the hairline, negative is up
    hair_volume: float  # how far the hair stands out around the head
    long_hair: bool
    glasses: bool
    glasses_color: np.ndarray
    expressivity: np.ndarray  # per-AU gain, aligned with RENDERED_AUS


def make_subject(seed: int, subject_id: int) -> SubjectTraits:
    """Draws the traits of one subject, deterministically from ``(seed, subject_id)``.

    Args:
        seed: Dataset seed.
        subject_id: Non-negative subject id.

    Returns:
        The subject's traits.
    """
    rng = np.random.default_rng([seed, subject_id, 0x5B])
    tone = rng.uniform(0.0, 1.0)
    skin = _SKIN_LIGHT + tone * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0.0, 0.02, 3)
    hair = _HAIR_COLORS[rng.integers(len(_HAIR_COLORS))] * rng.uniform(0.8, 1.1)
    skin = np.clip(skin, 0.05, 1.0)
    # Expressivity: a global gain (some people emote little) times a per-AU gain.
    overall = rng.uniform(0.75, 1.15)
    expressivity = overall * rng.uniform(0.8, 1.2, len(RENDERED_AUS))
    return SubjectTraits(
        face_half_width=rng.uniform(0.56, 0.70),
        face_half_height=rng.uniform(0.74, 0.88),
        jaw_taper=rng.uniform(0.05, 0.4),
        skin=skin,
        eye_spacing=rng.uniform(0.21, 0.30),
        eye_height=rng.uniform(-0.20, -0.10),
        eye_half_width=rng.uniform(0.085, 0.12),
        eye_opening=rng.uniform(0.035, 0.055),
        iris=rng.uniform(0.05, 0.45, 3),
        brow_gap=rng.uniform(0.09, 0.14),
        brow_thickness=rng.uniform(0.012, 0.03),
        brow_arch=rng.uniform(0.0, 0.05),
        nose_length=rng.uniform(0.2, 0.3),
        nose_half_width=rng.uniform(0.06, 0.1),
        mouth_height=rng.uniform(0.34, 0.44),
        mouth_half_width=rng.uniform(0.15, 0.22),
        upper_lip=rng.uniform(0.018, 0.035),
        lower_lip=rng.uniform(0.025, 0.045),
        lip_color=np.clip(skin * np.array([0.85, 0.55, 0.55]) + np.array([0.1, 0.02, 0.02]), 0, 1),
        resting_mouth=rng.uniform(-0.025, 0.025),
        resting_brow=rng.uniform(-0.025, 0.025),
        hair=np.clip(hair, 0.0, 1.0),
        hairline=rng.uniform(-0.78, -0.52),
        hair_volume=rng.uniform(0.04, 0.2),
        long_hair=bool(rng.uniform() < 0.4),
        glasses=bool(rng.uniform() < 0.25),
        glasses_color=rng.uniform(0.0, 0.4, 3),
        expressivity=expressivity,
    )
