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
    """The square box centred on `box` whose side is its longer side plus `margin` on each side
    (a negative margin, above -0.5, shrinks it about the centre)."""
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


def crop_for_mode(
    image: np.ndarray, mode: str, size: int, box: Box | None = None, mask: np.ndarray | None = None, margin: float = 0.0
) -> np.ndarray:
    """The classifier's input in one of the paper's preprocessing modes, square and never stretched:

    - `bbox` / `annotation`: the (detected / ground-truth) box, padded to a square;
    - `mask`: the box with everything outside the mask blacked out;
    - `mask_alpha`: the box as RGBA, transparent outside the mask (and in the padding);
    - `none`: the whole image, padded to a square.
    `mask` is an (H, W) array in [0, 1] or bool, the size of `image`; `margin` widens the box's
    square by that fraction of its side on each side.
    """
    height, width = image.shape[:2]
    if mode == "none":
        return crop_square(image, (0, 0, width, height), size)
    if box is None:
        raise ValueError(f"crop mode {mode!r} needs a box")
    if mode in ("bbox", "annotation"):
        return crop_square(image, box, size, margin)
    if mask is None or mask.shape[:2] != (height, width):
        raise ValueError(f"crop mode {mode!r} needs a mask the size of the image")
    coverage = mask.astype(np.float32)
    if mode == "mask":
        blacked = (image.astype(np.float32) * (coverage[..., None] if image.ndim == 3 else coverage)).round()
        return crop_square(blacked.astype(image.dtype), box, size, margin)
    if mode == "mask_alpha":
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        alpha = (coverage * 255).round().astype(np.uint8)
        return crop_square(np.dstack([rgb, alpha]), box, size, margin, fill=0)
    raise ValueError(f"unknown crop mode {mode!r} (expected bbox, mask, mask_alpha, annotation or none)")


def on_checkerboard(rgba: np.ndarray, cell: int = 8) -> np.ndarray:
    """An RGBA crop composited over a grey checkerboard, so transparency shows on a sheet."""
    height, width = rgba.shape[:2]
    ys, xs = np.indices((height, width))
    board = np.where(((ys // cell + xs // cell) % 2)[..., None] == 0, 200, 150).astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3] * alpha + board * (1.0 - alpha)).round().astype(np.uint8)


def contact_sheet(
    rows: list[list[np.ndarray | None]], row_labels: list[str], column_labels: list[str], tile: int = 128
) -> np.ndarray:
    """RGB tiles in a labelled grid (a missing tile stays white): crops side by side to look at."""
    label_width, header = 180, 24
    sheet = np.full((header + tile * len(rows), label_width + tile * len(column_labels), 3), 255, np.uint8)
    for column, name in enumerate(column_labels):
        cv2.putText(
            sheet,
            name,
            (label_width + column * tile + 4, 16),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    for r, (tiles, name) in enumerate(zip(rows, row_labels, strict=True)):
        y = header + r * tile
        cv2.putText(sheet, name[:26], (4, y + tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for column, pixels in enumerate(tiles):
            if pixels is None:
                continue
            rgb = on_checkerboard(pixels) if pixels.shape[2] == 4 else pixels
            sheet[y : y + tile, label_width + column * tile : label_width + (column + 1) * tile] = cv2.resize(
                rgb, (tile, tile), interpolation=cv2.INTER_AREA
            )
    return sheet
