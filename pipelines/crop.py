"""Crop a garment region to the square the classifiers take: padded, never stretched.

The crop stage (Mask R-CNN boxes) and everything that scores crops share these pure functions.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


def box_of_points(points: np.ndarray) -> Box:
    """The axis-aligned box around polygon points (N, 2) given as (x, y)."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def square_around(box: Box, margin: float = 0.0) -> Box:
    """The square box centred on `box` whose side is its longer side plus `margin` on each side."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def crop_square(image: np.ndarray, box: Box, size: int, margin: float = 0.0, fill: int = 0) -> np.ndarray:
    """`box` widened to a square (plus margin), cut from `image`, padded with `fill` where the
    square leaves the image, and resized to `size`×`size`. Aspect ratio is never changed."""
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    x0, y0, x1, y1 = (int(round(v)) for v in square_around(box, margin))
    side = max(x1 - x0, 1)
    height, width = image.shape[:2]
    canvas = np.full((side, side, *image.shape[2:]), fill, dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if sx0 < sx1 and sy0 < sy1:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def largest_box(boxes: np.ndarray) -> int | None:
    """Index of the largest-area box among (N, 4) x0, y0, x1, y1 boxes, None if there are none
    (the paper keeps the largest detection)."""
    if len(boxes) == 0:
        return None
    areas = (boxes[:, 2] - boxes[:, 0]).clip(min=0) * (boxes[:, 3] - boxes[:, 1]).clip(min=0)
    return int(np.argmax(areas))


def crop_for_mode(image: np.ndarray, mode: str, size: int, box: Box | None = None, mask: np.ndarray | None = None) -> np.ndarray:
    """The classifier's input in one of the paper's preprocessing modes, square and never stretched:

    - `bbox` / `annotation`: the (detected / ground-truth) box, padded to a square;
    - `mask`: the box with everything outside the mask blacked out;
    - `mask_alpha`: the box as RGBA, transparent outside the mask (and in the padding);
    - `none`: the whole image, padded to a square.
    `mask` is an (H, W) array in [0, 1] or bool, the size of `image`.
    """
    height, width = image.shape[:2]
    if mode == "none":
        return crop_square(image, (0, 0, width, height), size)
    if box is None:
        raise ValueError(f"crop mode {mode!r} needs a box")
    if mode in ("bbox", "annotation"):
        return crop_square(image, box, size)
    if mask is None or mask.shape[:2] != (height, width):
        raise ValueError(f"crop mode {mode!r} needs a mask the size of the image")
    coverage = mask.astype(np.float32)
    if mode == "mask":
        blacked = (image.astype(np.float32) * (coverage[..., None] if image.ndim == 3 else coverage)).round()
        return crop_square(blacked.astype(image.dtype), box, size)
    if mode == "mask_alpha":
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        alpha = (coverage * 255).round().astype(np.uint8)
        return crop_square(np.dstack([rgb, alpha]), box, size, fill=0)
    raise ValueError(f"unknown crop mode {mode!r} (expected bbox, mask, mask_alpha, annotation or none)")
