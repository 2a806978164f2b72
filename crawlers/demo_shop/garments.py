"""What a synthetic garment is: its attribute labels, its style, and its outline geometry.

Geometry lives in a garment frame (shirt: neck centre at the origin, body width 1; jeans: waist
centre at the origin, waist width 1, y pointing down) so one shape serves every view and size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Item = Literal["shirt", "jeans"]
# easy / medium / hard: varied scenes, harder the further along. packshot: studio photos as
# catalogue shops shoot them (plain background, one pose, each design in several colourways),
# where different products look alike to a grey-level hash.
Difficulty = Literal["easy", "medium", "hard", "packshot"]
Points = np.ndarray  # (N, 2) float64 in the garment frame

# The classes of each attribute, as params.yaml names them.
ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "shirt": {
        "collar": ("band", "button_down", "notched", "regular"),
        "pattern": ("check", "dot", "floral", "solid", "stripe"),
    },
    "jeans": {
        "fit": ("bootcut", "regular", "skinny", "wide"),
        "color": ("light", "middle", "deep"),
        "washing": ("one", "brush"),
        "damage": ("damage", "non_damage"),
    },
}


@dataclass(frozen=True)
class GarmentSpec:
    """One product's garment: its labels and the seed of everything about its look."""

    item: Item
    labels: dict[str, str]
    style_seed: int
    colourway: int = 0  # 0: the design's own colours; n > 0: the n-th other colourway of it


def sample_garment(rng: np.random.Generator, item: Item) -> GarmentSpec:
    """A garment with uniformly drawn attribute labels and its own style seed."""
    labels = {name: str(rng.choice(classes)) for name, classes in ATTRIBUTES[item].items()}
    return GarmentSpec(item=item, labels=labels, style_seed=int(rng.integers(0, 2**31 - 1)))


# --- shirt outline and collars --------------------------------------------------------------

NECK_HALF_WIDTH = 0.11
SHIRT_EXTENT = ((-0.86, 0.86), (-0.12, 1.32))  # x range, y range of the shirt frame


def shirt_outline(rng: np.random.Generator) -> Points:
    """Body and long sleeves, clockwise from the left of the neck."""
    sleeve_drop = rng.uniform(0.82, 0.95)
    sleeve_out = rng.uniform(0.74, 0.84)
    hem = rng.uniform(1.2, 1.3)
    body = rng.uniform(0.42, 0.47)
    n = NECK_HALF_WIDTH
    return np.array(
        [
            (-n, 0.0),
            (-0.47, 0.07),
            (-0.54, 0.16),
            (-sleeve_out, sleeve_drop),
            (-sleeve_out + 0.17, sleeve_drop + 0.05),
            (-body, 0.40),
            (-body - 0.01, hem),
            (0.0, hem + 0.03),
            (body + 0.01, hem),
            (body, 0.40),
            (sleeve_out - 0.17, sleeve_drop + 0.05),
            (sleeve_out, sleeve_drop),
            (0.54, 0.16),
            (0.47, 0.07),
            (n, 0.0),
            (0.0, 0.05),
        ]
    )


@dataclass(frozen=True)
class CollarShape:
    """Collar pieces (drawn in order, fabric-filled), the V opening under them (if any), buttons
    (centre, radius) and where the shirt's placket starts."""

    pieces: tuple[Points, ...]
    opening: Points | None
    buttons: tuple[tuple[float, float, float], ...]
    placket_top: float


def _mirror(points: Points) -> Points:
    return points[::-1] * np.array([-1.0, 1.0])


def collar_shape(kind: str, rng: np.random.Generator) -> CollarShape:
    """The collar's real shape: band (stand-up strip, no points), regular (plain pointed leaves),
    button_down (longer rounded points pinned by buttons) or notched (lapels with a notch)."""
    n = NECK_HALF_WIDTH
    if kind == "band":
        height = rng.uniform(0.045, 0.06)
        xs = np.linspace(-n - 0.015, n + 0.015, 9)
        bottom = np.stack([xs, 0.035 * (1 - (xs / (n + 0.015)) ** 2)], axis=1)
        top = bottom[::-1] - np.array([0.0, height])
        band = np.concatenate([bottom, top])
        return CollarShape((band,), None, ((0.0, 0.035 - height / 2, 0.011),), 0.05)
    if kind in ("regular", "button_down"):
        back = np.array([(-n - 0.02, -0.045), (n + 0.02, -0.045), (n + 0.02, 0.0), (-n - 0.02, 0.0)])
        if kind == "regular":
            spread = rng.uniform(0.0, 0.05)
            tip = (-(0.065 + spread), rng.uniform(0.15, 0.19))
            leaf = np.array([(-0.008, 0.03), (-n - 0.025, -0.04), (-n - 0.06, 0.02), tip, (-0.02, 0.06)])
        else:
            tip_y = rng.uniform(0.19, 0.22)
            # Rounded tip: the point is pinned down to the shirt, so it rolls instead of ending sharp.
            leaf = np.array(
                [
                    (-0.008, 0.03),
                    (-n - 0.025, -0.04),
                    (-n - 0.06, 0.03),
                    (-0.095, tip_y - 0.02),
                    (-0.08, tip_y),
                    (-0.06, tip_y - 0.01),
                    (-0.02, 0.065),
                ]
            )
        right = _mirror(leaf)
        buttons: list[tuple[float, float, float]] = [(0.0, 0.07, 0.011)]
        if kind == "button_down":
            buttons += [(-0.075, tip_y - 0.022, 0.013), (0.075, tip_y - 0.022, 0.013)]
        return CollarShape((back, leaf, right), None, tuple(buttons), 0.08)
    if kind == "notched":
        v_bottom = rng.uniform(0.38, 0.46)
        notch_y = rng.uniform(0.1, 0.13)
        lapel = np.array(
            [
                (-0.03, 0.0),
                (-n - 0.02, -0.04),
                (-n - 0.10, 0.03),
                (-n - 0.07, notch_y),  # collar point
                (-n - 0.03, notch_y - 0.005),  # into the notch
                (-n - 0.10, notch_y + 0.045),  # lapel point
                (-0.012, v_bottom),
                (-0.04, 0.06),
            ]
        )
        opening = np.array([(-0.05, 0.0), (0.05, 0.0), (0.0, v_bottom)])
        return CollarShape((lapel, _mirror(lapel)), opening, ((0.0, v_bottom + 0.03, 0.012),), v_bottom)
    raise ValueError(f"unknown collar {kind!r}")


# --- jeans outline --------------------------------------------------------------------------

JEANS_EXTENT = ((-0.75, 0.75), (-0.05, 2.05))
# Leg width (as a share of the waist) at thigh, knee and hem for each fit.
FIT_WIDTHS: dict[str, tuple[float, float, float]] = {
    "skinny": (0.50, 0.31, 0.23),
    "regular": (0.52, 0.42, 0.40),
    "wide": (0.58, 0.60, 0.68),
    "bootcut": (0.52, 0.37, 0.53),
}
THIGH_Y, KNEE_Y, HEM_Y, CROTCH_Y = 0.45, 1.15, 1.95, 0.40


def leg_width(fit: str, y: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Leg width along the leg: quadratic through thigh, knee and hem widths."""
    widths = np.array(FIT_WIDTHS[fit]) * jitter
    coeffs = np.polyfit([THIGH_Y, KNEE_Y, HEM_Y], widths, 2)
    return np.polyval(coeffs, y)


def jeans_outline(fit: str, rng: np.random.Generator, jitter_scale: float) -> tuple[Points, Points, Points]:
    """Whole outline and each leg's centreline (for placing wear, whiskers and rips)."""
    jitter = 1.0 + rng.uniform(-jitter_scale, jitter_scale, size=3)
    spread = rng.uniform(0.0, 0.08)
    ys = np.linspace(THIGH_Y, HEM_Y, 12)
    widths = leg_width(fit, ys, jitter)
    centre = 0.25 + spread * (ys - THIGH_Y) / (HEM_Y - THIGH_Y) + np.maximum(0, widths - 0.5) * 0.35
    left_outer = np.stack([-centre - widths / 2, ys], axis=1)
    left_inner = np.stack([-centre + widths / 2, ys], axis=1)
    crotch = np.array([(0.0, CROTCH_Y)])
    top = np.array([(-0.5, 0.0), (-0.53, 0.28)])
    outline = np.concatenate(
        [
            top,
            left_outer,
            left_inner[::-1],
            crotch,
            left_inner * np.array([-1.0, 1.0]),
            _mirror(left_outer),
            _mirror(top),
        ]
    )
    left_centre = np.stack([-centre, ys], axis=1)
    return outline, left_centre, left_centre * np.array([-1.0, 1.0])


# The Labelme region that shows each attribute (what a contact sheet or a benchmark crops).
REGION_OF_ATTRIBUTE = {
    "collar": "collar",
    "pattern": "shirt",
    "fit": "jeans",
    "color": "jeans",
    "washing": "jeans",
    "damage": "jeans",
}
