"""Render a synthetic product photo of a garment, with the Labelme regions of what it shows.

Deterministic: the garment's look comes from its style seed, the scene (background, pose,
lighting, distractors) from the style seed and the view, so the same inputs give the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from crawlers.demo_shop.garments import (
    JEANS_EXTENT,
    SHIRT_EXTENT,
    Difficulty,
    GarmentSpec,
    collar_shape,
    jeans_outline,
    shirt_outline,
)

View = Literal["front", "alt", "detail"]
_VIEW_CODE = {"front": 1, "alt": 2, "detail": 3}
_SUBPIXEL = 4  # cv2 drawing with 4 fractional bits keeps thin details smooth
_SCALE = 1 << _SUBPIXEL


@dataclass(frozen=True)
class SceneKnobs:
    """How hard a scene is: pose spread, clutter, lighting, noise and distractors."""

    rotation_deg: float
    width_share: tuple[float, float]  # garment width as a share of the canvas
    offset_share: float  # centre jitter as a share of the canvas
    clutter: tuple[int, int]
    light: float  # amplitude of the lighting gradient
    noise: float  # pixel noise sigma (0-255 scale)
    jpeg_quality: tuple[int, int]
    skin_distractor_p: float
    dark_scene_p: float  # dark background, and on shirts a dark contrast collar
    geometry_jitter: float
    pattern_contrast: tuple[float, float]
    studio: bool = False  # a plain, even backdrop: no gradient, clutter or floor edge


KNOBS: dict[str, SceneKnobs] = {
    "easy": SceneKnobs(3, (0.62, 0.78), 0.03, (0, 2), 0.08, 2.0, (88, 95), 0.1, 0.0, 0.04, (0.7, 1.0)),
    "medium": SceneKnobs(8, (0.5, 0.8), 0.07, (2, 6), 0.18, 4.0, (70, 92), 0.35, 0.12, 0.07, (0.45, 1.0)),
    "hard": SceneKnobs(14, (0.4, 0.84), 0.11, (4, 10), 0.3, 7.0, (45, 85), 0.6, 0.3, 0.1, (0.3, 0.9)),
    # One camera, one pose: every product of a design framed identically, only its colours differ.
    "packshot": SceneKnobs(0, (0.7, 0.7), 0.0, (0, 0), 0.0, 1.5, (90, 92), 0.0, 0.0, 0.04, (0.7, 1.0), studio=True),
}
STUDIO_GREY = 244.0
COLOURWAY_TURN_DEG = 120.0  # each colourway turns the design's hues this much further
COLOURWAY_MIN_SATURATION = 0.35  # so a grey design's other colourways are colours, not the same grey

SKIN_TONES = np.array(
    [(182, 203, 240), (150, 178, 226), (118, 150, 205), (84, 112, 160), (58, 76, 112)], dtype=np.float32
)
# Denim depth runs from a pale washed blue (0) to dark indigo (1); each colour class is a band of
# depth, and neighbouring bands overlap a little, as shop photos of "mid" and "dark" wash do.
DENIM_PALEST = np.array([226.0, 196.0, 160.0], dtype=np.float32)  # BGR
DENIM_DARKEST = np.array([78.0, 40.0, 16.0], dtype=np.float32)
DENIM_DEPTH: dict[str, tuple[float, float]] = {"light": (0.0, 0.37), "middle": (0.31, 0.69), "deep": (0.63, 1.0)}


@lru_cache(maxsize=4)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every pixel (read-only, shared between renders)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


@dataclass(frozen=True)
class Region:
    """A Labelme polygon: label and its points in image pixels (x, y)."""

    label: str
    points: np.ndarray


@dataclass(frozen=True)
class RenderedImage:
    pixels: np.ndarray  # (H, W, 3) uint8, BGR as OpenCV writes it
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class Pose:
    """Garment frame → image: scale (px per garment unit), rotation (rad), translation (px)."""

    scale: float
    angle: float
    tx: float
    ty: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        x, y = points[:, 0], points[:, 1]
        return np.stack([self.scale * (c * x - s * y) + self.tx, self.scale * (s * x + c * y) + self.ty], axis=1)

    def wave(self, height: int, width: int, ku: float, kv: float) -> np.ndarray:
        """sin(ku·u + kv·v) over the image, for (u, v) the garment frame: a plane wave in pixel
        space too, so it is built from 1-D sines by sin(a + b) = sin a cos b + cos a sin b."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        # u = (c·(x − tx) + s·(y − ty)) / scale,  v = (−s·(x − tx) + c·(y − ty)) / scale
        alpha = (ku * c - kv * s) / self.scale
        beta = (ku * s + kv * c) / self.scale
        x = alpha * (np.arange(width, dtype=np.float64) - self.tx)
        y = beta * (np.arange(height, dtype=np.float64) - self.ty)
        sin_x, cos_x = np.sin(x).astype(np.float32), np.cos(x).astype(np.float32)
        sin_y, cos_y = np.sin(y).astype(np.float32), np.cos(y).astype(np.float32)
        return sin_y[:, None] * cos_x[None, :] + cos_y[:, None] * sin_x[None, :]

    def frame_grid(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Garment-frame coordinates (u, v) of every pixel, for textures that move with the garment."""
        ys, xs = _pixel_grid(height, width)
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = (xs - self.tx) / self.scale, (ys - self.ty) / self.scale
        return c * dx + s * dy, -s * dx + c * dy


def render_view(
    spec: GarmentSpec, view: View, difficulty: Difficulty, *, width: int = 360, height: int = 480
) -> RenderedImage:
    """One product photo of `spec`: `front` and `alt` show the whole garment in different scenes,
    `detail` is a close-up (the collar of a shirt, the legs of jeans)."""
    knobs = KNOBS[difficulty]
    style = np.random.default_rng([spec.style_seed, 0])
    scene = np.random.default_rng([spec.style_seed, _VIEW_CODE[view]])
    dark = scene.random() < knobs.dark_scene_p
    canvas = _background(scene, knobs, height, width, dark)
    if spec.item == "shirt":
        canvas, regions = _draw_shirt(canvas, spec, style, scene, knobs, view, dark)
    else:
        canvas, regions = _draw_jeans(canvas, spec, style, scene, knobs, view)
    canvas = _photograph(canvas, scene, knobs)
    return RenderedImage(canvas, regions)


# --- scene ----------------------------------------------------------------------------------


def _linear_ramp(height: int, width: int, angle: float) -> np.ndarray:
    """A 0..1 gradient across the image in direction `angle`, built from two 1-D ramps."""
    ramp = (np.float32(np.cos(angle)) * np.linspace(0, 1, width, dtype=np.float32))[None, :] + (
        np.float32(np.sin(angle)) * np.linspace(0, 1, height, dtype=np.float32)
    )[:, None]
    low, high = float(ramp.min()), float(ramp.max())
    return (ramp - low) / max(high - low, 1e-6)


def _background(rng: np.random.Generator, knobs: SceneKnobs, height: int, width: int, dark: bool) -> np.ndarray:
    if knobs.studio:
        return np.full((height, width, 3), STUDIO_GREY, dtype=np.float32)
    low, high = (25, 80) if dark else (150, 250)
    top = rng.uniform(low, high, size=3).astype(np.float32)
    bottom = rng.uniform(low, high, size=3).astype(np.float32)
    direction = rng.uniform(0, np.pi)
    t = _linear_ramp(height, width, direction)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    canvas = top[None, None, :] * (1 - t[..., None]) + bottom[None, None, :] * t[..., None]
    clutter = canvas.copy()
    for _ in range(int(rng.integers(knobs.clutter[0], knobs.clutter[1] + 1))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        kind = rng.integers(0, 4)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.05, 0.3) * width
        if kind == 0:
            cv2.rectangle(
                clutter, (int(cx), int(cy)), (int(cx + size), int(cy + size * rng.uniform(0.3, 1.5))), colour, -1
            )
        elif kind == 1:
            cv2.circle(clutter, (int(cx), int(cy)), int(size / 2), colour, -1)
        elif kind == 2:
            cv2.line(
                clutter,
                (int(cx), int(cy)),
                (int(rng.uniform(0, width)), int(rng.uniform(0, height))),
                colour,
                int(rng.integers(2, 8)),
            )
        else:  # a leafy plant: clustered green blobs
            for _ in range(8):
                ox, oy = rng.normal(0, size / 4, size=2)
                cv2.ellipse(
                    clutter,
                    (int(cx + ox), int(cy + oy)),
                    (int(size / 6), int(size / 14)),
                    float(rng.uniform(0, 180)),
                    0,
                    360,
                    (40, float(rng.uniform(110, 170)), 50),
                    -1,
                )
    if rng.random() < 0.5:  # a table or floor edge
        edge = int(rng.uniform(0.75, 0.95) * height)
        clutter[edge:] = clutter[edge:] * 0.6 + np.array(rng.uniform(60, 140, size=3)) * 0.4
    clutter = cv2.GaussianBlur(clutter, (0, 0), sigmaX=float(rng.uniform(1.0, 3.0)))
    return clutter.astype(np.float32)


def _pose(rng: np.random.Generator, knobs: SceneKnobs, extent, height: int, width: int, zoom: float, focus) -> Pose:
    (x0, x1), (y0, y1) = extent
    share = rng.uniform(*knobs.width_share)
    scale = min(share * width / (x1 - x0), 0.94 * height / (y1 - y0)) * zoom
    angle = np.deg2rad(rng.uniform(-knobs.rotation_deg, knobs.rotation_deg))
    fx, fy = focus if focus is not None else ((x0 + x1) / 2, (y0 + y1) / 2)
    cx = width / 2 + rng.uniform(-1, 1) * knobs.offset_share * width
    cy = height / 2 + rng.uniform(-1, 1) * knobs.offset_share * height
    c, s = np.cos(angle), np.sin(angle)
    return Pose(scale, angle, cx - scale * (c * fx - s * fy), cy - scale * (s * fx + c * fy))


def _photograph(canvas: np.ndarray, rng: np.random.Generator, knobs: SceneKnobs) -> np.ndarray:
    """Lighting gradient, colour cast, sensor noise, slight blur and JPEG compression."""
    height, width = canvas.shape[:2]
    ramp = _linear_ramp(height, width, rng.uniform(0, 2 * np.pi)) * 2 - 1
    light = 1.0 + np.float32(knobs.light * rng.uniform(0.3, 1.0)) * ramp
    cast = (1.0 + rng.uniform(-0.04, 0.04, size=3)).astype(np.float32)
    canvas = canvas * (light[..., None] * cast)
    canvas += rng.standard_normal(size=canvas.shape, dtype=np.float32) * np.float32(knobs.noise)
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=0.6)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    quality = int(rng.integers(knobs.jpeg_quality[0], knobs.jpeg_quality[1] + 1))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, "OpenCV failed to encode an in-memory JPEG"
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


# --- drawing helpers ------------------------------------------------------------------------


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def _mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the union of image-space polygons."""
    mask = np.zeros(shape, dtype=np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [_fixed(polygon)], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
    return mask.astype(np.float32) / 255.0


def _paint(canvas: np.ndarray, layer: np.ndarray, polygons: list[np.ndarray], alpha: float = 1.0) -> None:
    """Blend `layer` (an image the canvas's size, or one colour) into the canvas inside the
    polygons, in place. Works on the polygons' bounding box only: most paint is small."""
    height, width = canvas.shape[:2]
    points = np.concatenate(polygons)
    x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, (width, height))
    if x0 >= x1 or y0 >= y1:
        return
    coverage = _mask((int(y1 - y0), int(x1 - x0)), [polygon - (x0, y0) for polygon in polygons])[..., None] * alpha
    window = canvas[y0:y1, x0:x1]
    source = layer[y0:y1, x0:x1] if layer.ndim == 3 else layer
    window += (source - window) * coverage


def _outline(canvas: np.ndarray, polygon: np.ndarray, colour, thickness: int) -> None:
    cv2.polylines(canvas, [_fixed(polygon)], True, colour, thickness, lineType=cv2.LINE_AA, shift=_SUBPIXEL)


def _disc(canvas: np.ndarray, centre: np.ndarray, radius: float, colour) -> None:
    cv2.circle(
        canvas,
        tuple(int(v) for v in np.round(centre * _SCALE)),
        int(round(radius * _SCALE)),
        colour,
        -1,
        lineType=cv2.LINE_AA,
        shift=_SUBPIXEL,
    )


def _region(label: str, coverage: np.ndarray) -> Region | None:
    """The outer contour of a coverage mask as a Labelme polygon (None if nothing is visible)."""
    binary = (coverage > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = [c for c in contours if cv2.contourArea(c) >= 12]
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    approx = cv2.approxPolyDP(largest, 1.0, True).reshape(-1, 2).astype(np.float64)
    if len(approx) < 3:
        return None
    return Region(label, approx)


def _fold_shading(u: np.ndarray, v: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Soft light and dark bands of cloth folds; smooth, so computed on a coarse grid."""
    coarse_u, coarse_v = u[::4, ::4], v[::4, ::4]
    shade = np.ones_like(coarse_u)
    for _ in range(3):
        fu, fv, phase = rng.uniform(2, 7), rng.uniform(1, 5), rng.uniform(0, 2 * np.pi)
        shade += np.float32(strength / 3) * np.sin(fu * coarse_u + fv * coarse_v + phase)
    return cv2.resize(shade, (u.shape[1], u.shape[0]), interpolation=cv2.INTER_LINEAR)


# --- shirts ---------------------------------------------------------------------------------


def _fabric_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(20, 200), rng.uniform(90, 245)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _colourway(texture: np.ndarray, colourway: int) -> np.ndarray:
    """The design's fabric in its `colourway`-th other colourway: hues turned, saturation kept
    above a floor; lightness (and so the pattern's drawing) unchanged."""
    if colourway == 0:
        return texture
    hsv = cv2.cvtColor(np.clip(texture, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = (hsv[..., 0] + COLOURWAY_TURN_DEG * colourway) % 360.0
    hsv[..., 1] = np.maximum(hsv[..., 1], COLOURWAY_MIN_SATURATION)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255.0


def _pattern_texture(
    pattern: str, pose: Pose, u: np.ndarray, v: np.ndarray, rng: np.random.Generator, contrast: float
) -> np.ndarray:
    """Fabric colour of every pixel, from its garment-frame coordinates."""
    base = _fabric_colour(rng)
    accent = _fabric_colour(rng)
    # Keep the accent distinguishable from the ground, then scale by the scene's contrast.
    if np.abs(accent - base).sum() < 120:
        accent = 255 - base
    accent = base + (accent - base) * contrast
    angle = rng.uniform(-0.35, 0.35) if rng.random() < 0.8 else np.pi / 4
    ca, sa = np.cos(angle), np.sin(angle)
    a, b = ca * u + sa * v, -sa * u + ca * v
    out = np.broadcast_to(base, (*u.shape, 3)).copy()
    if pattern == "stripe":
        period = rng.uniform(0.035, 0.09)
        duty = rng.uniform(0.2, 0.5)
        on = ((a / period) % 1.0) < duty
        out[on] = accent
    elif pattern == "check":
        period = rng.uniform(0.07, 0.18)
        duty = rng.uniform(0.3, 0.5)
        on_a = ((a / period) % 1.0) < duty
        on_b = ((b / period) % 1.0) < duty
        weight = (on_a.astype(np.float32) + on_b.astype(np.float32)) / 2
        out = base * (1 - weight[..., None]) + accent * weight[..., None]
    elif pattern == "dot":
        spacing = rng.uniform(0.05, 0.11)
        radius = spacing * rng.uniform(0.18, 0.32)
        row = np.floor(b / spacing)
        shifted = a / spacing + 0.5 * (row % 2)
        da = (shifted - np.round(shifted)) * spacing
        db = (b / spacing - row - 0.5) * spacing
        on = da**2 + db**2 < radius**2
        out[on] = accent
    elif pattern == "floral":
        out = _floral(a, b, base, accent, rng)
    elif pattern != "solid":
        raise ValueError(f"unknown pattern {pattern!r}")
    # Woven texture: a faint high-frequency grain every real fabric shows.
    height, width = u.shape
    grain = 1.0 + 0.025 * pose.wave(height, width, 420, 0) * pose.wave(height, width, 0, 410)
    return out * grain[..., None]


def _floral(a: np.ndarray, b: np.ndarray, base: np.ndarray, petal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cell = rng.uniform(0.12, 0.22)
    petals = int(rng.integers(4, 7))
    centre_colour = _fabric_colour(rng)
    leaf_colour = np.array([60, rng.uniform(110, 160), 70], dtype=np.float32)
    ia, ib = np.floor(a / cell), np.floor(b / cell)
    # Per-cell flower position and turn from a hash of the cell index: no per-flower loop.
    h1 = np.sin(ia * 12.9898 + ib * 78.233) * 43758.5453
    h2 = np.sin(ia * 39.346 + ib * 11.135) * 24634.6345
    jx, jy = (h1 % 1.0) * 0.4 + 0.3, (h2 % 1.0) * 0.4 + 0.3
    la, lb = a / cell - ia - jx, b / cell - ib - jy
    r = np.sqrt(la**2 + lb**2)
    phi = np.arctan2(lb, la) + (h1 % 6.283)
    petal_edge = 0.16 + 0.14 * np.abs(np.cos(petals * phi / 2))
    out = np.broadcast_to(base, (*a.shape, 3)).copy()
    leaf = (np.abs(lb + 0.22) < 0.05) & (np.abs(la - 0.12) < 0.14)
    out[leaf] = leaf_colour
    out[r < petal_edge] = petal
    out[r < 0.07] = centre_colour
    return out


def _skin(rng: np.random.Generator) -> tuple[float, float, float]:
    tone = SKIN_TONES[rng.integers(0, len(SKIN_TONES))] * rng.uniform(0.9, 1.08)
    return tuple(float(c) for c in np.clip(tone, 0, 255))


def _draw_shirt(canvas, spec: GarmentSpec, style, scene, knobs: SceneKnobs, view: View, dark: bool):
    height, width = canvas.shape[:2]
    outline = shirt_outline(style)
    collar = collar_shape(spec.labels["collar"], style)
    contrast = style.uniform(*knobs.pattern_contrast)
    pattern_rng = np.random.default_rng(style.integers(0, 2**31))
    button_colour = (
        tuple(float(c) for c in style.uniform(180, 250, size=3)) if style.random() < 0.7 else (40.0, 40.0, 40.0)
    )
    undershirt = (235.0, 238.0, 240.0) if style.random() < 0.6 else None

    zoom, focus = (scene.uniform(1.9, 2.5), (0.0, 0.12)) if view == "detail" else (1.0, None)
    pose = _pose(scene, knobs, SHIRT_EXTENT, height, width, zoom, focus)
    u, v = pose.frame_grid(height, width)
    texture = _pattern_texture(spec.labels["pattern"], pose, u, v, pattern_rng, contrast)
    texture = _colourway(texture, spec.colourway)
    texture = texture * _fold_shading(u, v, scene, 0.12)[..., None]
    line_px = max(1, int(round(pose.scale * 0.006)))
    on_model = scene.random() < knobs.skin_distractor_p
    skin = _skin(scene)

    if on_model:  # neck and head behind the collar: the skin-coloured distractor the paper met
        neck = pose.apply(np.array([(-0.085, -0.35), (0.085, -0.35), (0.085, 0.05), (-0.085, 0.05)]))
        _paint(canvas, np.array(skin, np.float32), [neck])
        head_centre = pose.apply(np.array([(0.0, -0.52)]))[0]
        _disc(canvas, head_centre, pose.scale * 0.2, skin)

    body = pose.apply(outline)
    body_cover = _mask((height, width), [body])
    canvas += (texture - canvas) * body_cover[..., None]
    edge = tuple(float(c) for c in np.clip(texture.mean(axis=(0, 1)) * 0.55, 0, 255))
    _outline(canvas, body, edge, line_px)
    for side in (-1, 1):  # shoulder seam and cuff
        cv2.polylines(
            canvas,
            [_fixed(pose.apply(np.array([(side * 0.47, 0.07), (side * 0.44, 0.38)])))],
            False,
            edge,
            line_px,
            cv2.LINE_AA,
            _SUBPIXEL,
        )

    placket = pose.apply(np.array([(0.0, collar.placket_top), (0.0, 1.22)]))
    cv2.polylines(canvas, [_fixed(placket)], False, edge, line_px, cv2.LINE_AA, _SUBPIXEL)
    for y in np.arange(collar.placket_top + 0.12, 1.2, 0.16):
        _disc(canvas, pose.apply(np.array([(0.0, y)]))[0], pose.scale * 0.012, button_colour)

    if collar.opening is not None:
        fill = undershirt if undershirt is not None else skin
        _paint(canvas, np.array(fill, np.float32), [pose.apply(collar.opening)])

    collar_texture = texture * 1.05
    if dark and scene.random() < 0.6:  # a dark contrast collar, often on a dark background
        collar_texture = np.broadcast_to(np.array(scene.uniform(20, 55, size=3), np.float32), texture.shape)
    pieces = [pose.apply(piece) for piece in collar.pieces]
    shadow_offset = np.array([0.0, pose.scale * 0.012])
    for piece in pieces:
        _paint(canvas, np.zeros(3, np.float32), [piece + shadow_offset], alpha=0.32)
        _paint(canvas, collar_texture, [piece])
        _outline(canvas, piece, edge, line_px)
    for x, y, r in collar.buttons:
        centre = pose.apply(np.array([(x, y)]))[0]
        _disc(canvas, centre, pose.scale * r + 0.6, edge)
        _disc(canvas, centre, pose.scale * r, button_colour)

    if on_model and scene.random() < 0.6:  # a hand at a cuff
        side = scene.choice([-1, 1])
        hand = pose.apply(np.array([(side * 0.72, 1.0)]))[0]
        cv2.ellipse(
            canvas,
            tuple(int(c) for c in hand),
            (int(pose.scale * 0.07), int(pose.scale * 0.1)),
            float(np.rad2deg(pose.angle)),
            0,
            360,
            skin,
            -1,
            cv2.LINE_AA,
        )

    collar_cover = _mask((height, width), pieces)
    regions = [_region("shirt", np.maximum(body_cover, collar_cover)), _region("collar", collar_cover)]
    return canvas, tuple(r for r in regions if r is not None)


# --- jeans ----------------------------------------------------------------------------------


def _denim(shade: str, pose: Pose, height: int, width: int, rng: np.random.Generator, jitter: float) -> np.ndarray:
    depth = np.float32(rng.uniform(*DENIM_DEPTH[shade]))
    colour = DENIM_PALEST + (DENIM_DARKEST - DENIM_PALEST) * depth
    colour *= np.float32(1.0 + rng.uniform(-jitter, jitter))
    # Diagonal twill weave, fine warp threads and faint vertical streaks of uneven dye.
    weave = 0.07 * pose.wave(height, width, 260, 260) + 0.03 * pose.wave(height, width, 900, 0)
    weave += 0.03 * pose.wave(height, width, 90, 0)
    return colour[None, None, :] * (1.0 + weave)[..., None]


def _brushed_fading(pose: Pose, u, v, left_leg, right_leg, rng) -> np.ndarray:
    """How much each pixel fades toward white: worn thighs and knees, and whiskers at the hips."""
    fade = np.zeros_like(u)
    strength = rng.uniform(0.22, 0.5)
    for leg in (left_leg, right_leg):
        for index, spread in ((2, 0.16), (7, 0.13)):  # upper thigh and knee
            cx, cy = leg[index]
            fade += strength * np.exp(-(((u - cx) / (spread * 0.9)) ** 2 + ((v - cy) / (spread * 1.8)) ** 2))
    whiskers = np.zeros(u.shape, dtype=np.float32)
    thickness = max(1, int(round(pose.scale * 0.012)))
    for side in (-1, 1):
        for k in range(int(rng.integers(4, 7))):
            y = 0.48 + 0.05 * k
            line = np.array([(side * 0.06, y - 0.02), (side * rng.uniform(0.3, 0.42), y - rng.uniform(0.06, 0.12))])
            cv2.polylines(whiskers, [_fixed(pose.apply(line))], False, 1.0, thickness, cv2.LINE_AA, _SUBPIXEL)
    whiskers = cv2.GaussianBlur(whiskers, (0, 0), sigmaX=max(0.8, pose.scale * 0.006))
    return np.clip(fade + 0.55 * whiskers, 0, 0.85)


def _draw_rips(canvas, pose: Pose, legs, rng, base_colour) -> None:
    """Ripped knees and thighs: a dark gap crossed by pale horizontal threads, frayed edges."""
    thread = (232.0, 236.0, 240.0)
    gap = tuple(float(c) for c in np.clip(base_colour * 0.35, 0, 255))
    for _ in range(int(rng.integers(2, 5))):
        leg = legs[rng.integers(0, 2)]
        cx, cy = leg[int(rng.integers(1, 9))] + rng.normal(0, 0.02, size=2)
        half_w, half_h = rng.uniform(0.07, 0.13), rng.uniform(0.025, 0.05)
        hole = pose.apply(np.array([(cx - half_w, cy), (cx, cy - half_h), (cx + half_w, cy), (cx, cy + half_h)]))
        cv2.fillPoly(canvas, [_fixed(hole)], gap, cv2.LINE_AA, _SUBPIXEL)
        px = max(1, int(round(pose.scale * 0.006)))
        for y in np.linspace(cy - half_h * 0.8, cy + half_h * 0.8, int(rng.integers(3, 6))):
            line = pose.apply(np.array([(cx - half_w * 1.1, y), (cx + half_w * 1.1, y + rng.normal(0, 0.005))]))
            cv2.polylines(canvas, [_fixed(line)], False, thread, px, cv2.LINE_AA, _SUBPIXEL)
        for _ in range(6):  # frayed white fibres around the hole
            x = cx + rng.uniform(-half_w, half_w)
            fibre = pose.apply(
                np.array([(x, cy - half_h), (x + rng.normal(0, 0.01), cy - half_h - rng.uniform(0.01, 0.03))])
            )
            cv2.polylines(canvas, [_fixed(fibre)], False, thread, 1, cv2.LINE_AA, _SUBPIXEL)


def _draw_jeans(canvas, spec: GarmentSpec, style, scene, knobs: SceneKnobs, view: View):
    height, width = canvas.shape[:2]
    labels = spec.labels
    outline, left_leg, right_leg = jeans_outline(labels["fit"], style, knobs.geometry_jitter)
    stitch = (40.0, 150.0, 205.0) if style.random() < 0.7 else (200.0, 200.0, 200.0)
    denim_rng = np.random.default_rng(style.integers(0, 2**31))
    fade_rng = np.random.default_rng(style.integers(0, 2**31))
    rip_rng = np.random.default_rng(style.integers(0, 2**31))

    zoom, focus = (scene.uniform(1.5, 1.9), (0.0, 0.9)) if view == "detail" else (1.0, None)
    pose = _pose(scene, knobs, JEANS_EXTENT, height, width, zoom, focus)
    u, v = pose.frame_grid(height, width)
    texture = _denim(labels["color"], pose, height, width, denim_rng, knobs.geometry_jitter)
    base_colour = texture.mean(axis=(0, 1))
    if labels["washing"] == "brush":
        fade = _brushed_fading(pose, u, v, left_leg, right_leg, fade_rng)
    else:  # one-wash denim is even, but never perfectly: a faint, broad unevenness
        fade = np.float32(fade_rng.uniform(0.0, 0.08)) * (0.5 + 0.5 * pose.wave(height, width, 3.0, 2.0))
    texture = texture * (1 - fade[..., None]) + np.array([238.0, 232.0, 222.0], np.float32) * fade[..., None]
    texture = texture * _fold_shading(u, v, scene, 0.1)[..., None]

    body = pose.apply(outline)
    body_cover = _mask((height, width), [body])
    canvas += (texture - canvas) * body_cover[..., None]
    line_px = max(1, int(round(pose.scale * 0.006)))
    seam = tuple(float(c) for c in np.clip(base_colour * 0.6, 0, 255))
    _outline(canvas, body, seam, line_px)

    def stroke(points, colour, thickness=line_px):
        cv2.polylines(canvas, [_fixed(pose.apply(np.array(points)))], False, colour, thickness, cv2.LINE_AA, _SUBPIXEL)

    stroke([(-0.5, 0.07), (0.5, 0.07)], stitch)  # waistband
    stroke([(0.02, 0.07), (0.02, 0.3), (-0.03, 0.36)], stitch)  # fly
    for side in (-1, 1):
        stroke([(side * 0.2, 0.07), (side * 0.3, 0.2), (side * 0.5, 0.24)], stitch)  # front pocket
        for x in (0.22, 0.42):
            stroke([(side * x, -0.005), (side * x, 0.08)], seam, line_px + 1)  # belt loops
    _disc(canvas, pose.apply(np.array([(0.0, 0.035)]))[0], pose.scale * 0.022, (170.0, 175.0, 185.0))
    if labels["damage"] == "damage":
        _draw_rips(canvas, pose, (left_leg, right_leg), rip_rng, base_colour)

    if scene.random() < knobs.skin_distractor_p:  # hands in the pockets, or shoes at the hems
        skin = _skin(scene)
        if scene.random() < 0.5:
            for side in (-1, 1):
                hand = pose.apply(np.array([(side * 0.3, 0.2)]))[0]
                cv2.ellipse(
                    canvas,
                    tuple(int(c) for c in hand),
                    (int(pose.scale * 0.07), int(pose.scale * 0.09)),
                    float(np.rad2deg(pose.angle)),
                    0,
                    360,
                    skin,
                    -1,
                    cv2.LINE_AA,
                )
        else:
            shoe = tuple(float(c) for c in scene.uniform(10, 60, size=3))
            for leg in (left_leg, right_leg):
                x, y = leg[-1]
                centre = pose.apply(np.array([(x, y + 0.04)]))[0]
                cv2.ellipse(
                    canvas,
                    tuple(int(c) for c in centre),
                    (int(pose.scale * 0.16), int(pose.scale * 0.06)),
                    float(np.rad2deg(pose.angle)),
                    0,
                    360,
                    shoe,
                    -1,
                    cv2.LINE_AA,
                )

    region = _region("jeans", body_cover)
    return canvas, (region,) if region is not None else ()
