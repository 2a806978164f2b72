"""Crop a garment region to the square the classifiers take: padded, never stretched, in one of
the paper's modes. The crop stage, `seamline predict`, `seamline detect` and the catalogue all cut
crops here, so a served photo is cropped exactly as the training photos were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipelines.config import ComponentParams, CropParams
from pipelines.detect import best_of_category, decode_mask, detection_from_record

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
    x0, y0, x1, _ = (int(round(v)) for v in square_around(box, margin))
    side = max(x1 - x0, 1)
    height, width = image.shape[:2]
    canvas = np.full((side, side, *image.shape[2:]), fill, dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if sx0 < sx1 and sy0 < sy1:
        canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


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


# --- regions: where in a photo a component's crop comes from ---------------------------------

CROP_MODES = ("bbox", "mask", "mask_alpha", "annotation", "none")
MODES_NEEDING_DETECTOR = frozenset({"bbox", "mask", "mask_alpha"})
NO_ITEM = "no_item"
DETECTIONS_DIR = "detections"


class CropError(RuntimeError):
    """A crop that cannot be made or stored, or crop inputs that cannot be read, with the reason."""


@dataclass(frozen=True)
class Region:
    """A garment region in an image: from the detector or from the annotations."""

    box: tuple[float, float, float, float]
    mask: np.ndarray | None
    score: float | None


def annotation_regions(annotations: Path) -> dict[str, dict[str, Region]]:
    """sha256 → category → the largest ground-truth region, from the COCO instances file."""
    from pycocotools import mask as mask_util

    path = annotations / "instances.json"
    if not path.is_file():
        return {}
    dataset = json.loads(path.read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    images = {i["id"]: i for i in dataset["images"]}
    regions: dict[str, dict[str, Region]] = {}
    for ann in sorted(dataset["annotations"], key=lambda a: a["area"]):
        image = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        rles = mask_util.frPyObjects(ann["segmentation"], image["height"], image["width"])
        mask = mask_util.decode(mask_util.merge(rles) if isinstance(rles, list) else rles).astype(bool)
        # Sorted by area, so the largest instance of a category is the one that stays.
        regions.setdefault(Path(image["file_name"]).stem, {})[names[ann["category_id"]]] = Region(
            (x, y, x + w, y + h), mask, None
        )
    return regions


def detected_region(
    record: Mapping[str, Any] | None, category: str, threshold: float, with_mask: bool, pick: str = "largest"
) -> Region | None:
    """The region a cached detection record gives `category`: the detection `pick` chooses
    (`detect.best_of_category`, the one pick rule), its mask decoded only when asked for."""
    if not record or "detections" not in record:
        return None
    candidates = [detection_from_record(found, with_mask=False) for found in record["detections"]]
    best = best_of_category(candidates, category, threshold, pick)
    if best is None:
        return None
    mask = decode_mask(record["detections"][candidates.index(best)]["mask"]) if with_mask else None
    return Region(best.box, mask, best.score)


# The part of an item's box `on_no_detection: item_top` cuts: its top 30%, less a quarter of its
# width each side. On the hand-labelled real tops the demo detector found a shirt on 96% of photos
# and a collar on 17% (docs/real-photos.md); a shirt laid flat or hung has its collar there.
ITEM_TOP_HEIGHT = 0.3
ITEM_TOP_SIDE = 0.25
ITEM_TOP = "item_top"


def item_top_region(item: Region | None) -> Region | None:
    """The top centre of an item's box (the item's mask kept, for the mask modes), or None."""
    if item is None:
        return None
    x0, y0, x1, y1 = item.box
    width, height = x1 - x0, y1 - y0
    box = (x0 + ITEM_TOP_SIDE * width, y0, x1 - ITEM_TOP_SIDE * width, y0 + ITEM_TOP_HEIGHT * height)
    return Region(box, item.mask, item.score)


def crop_one(image: np.ndarray, region: Region | None, crop: CropParams) -> tuple[np.ndarray | None, str]:
    """(pixels, status) for one image: the region in the recipe's mode, else its fallback
    (`on_no_detection`): the whole photo (`full_image`) or nothing (`skipped`)."""
    if crop.mode == "none":
        return crop_for_mode(image, "none", crop.size), "cropped"
    if region is not None:
        mode = "bbox" if crop.mode == "annotation" else crop.mode
        return crop_for_mode(image, mode, crop.size, region.box, region.mask, crop.margin), "cropped"
    if crop.on_no_detection == "full_image":
        return crop_for_mode(image, "none", crop.size), "full_image"
    return None, "skipped"


def write_png(path: Path, pixels: np.ndarray) -> None:
    """An RGB or RGBA crop as a PNG file (its folder made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = cv2.COLOR_RGBA2BGRA if pixels.ndim == 3 and pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    if not cv2.imwrite(str(path), cv2.cvtColor(pixels, code)):
        raise CropError(f"{path}: could not be written")


class DetectionCache:
    """Detections per image for one detector version, appended as images are processed so a
    killed run keeps what it did."""

    def __init__(self, folder: Path, version: str) -> None:
        self.path = folder / DETECTIONS_DIR / f"{version}.jsonl"
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a killed run: that image is simply detected again
                self.records[record["sha256"]] = record

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        for record in records:
            self.records[record["sha256"]] = record


@dataclass(frozen=True)
class ComponentCrop:
    """What one photo gives one component: its crop and the region it came from, and why the
    region is missing where it is ("no shirt found", "no collar found")."""

    pixels: np.ndarray | None
    region: Region | None
    status: str  # cropped | full_image | skipped | no_item (the component's garment is not in the photo)
    reason: str = ""


def component_crop(
    image: np.ndarray,
    detections: Sequence[Any],
    component: ComponentParams,
    crop: CropParams,
    threshold: float,
    categories: Sequence[str],
    require_item: bool = True,
    ground_truth: Mapping[str, Region] | None = None,
) -> ComponentCrop:
    """A component's crop of one photo, cut as the pipeline cuts it everywhere: nothing when the
    component's item is a detector category and none was found (jeans components on a shirt
    photo; `require_item=False` crops anyway); else the region of `crop_region` that `crop.pick`
    chooses among `detections` (the photo's own ground truth in `annotation` mode) in `crop.mode`,
    or the recipe's fallback."""
    if (
        require_item
        and component.item in categories
        and best_of_category(detections, component.item, threshold) is None
    ):
        return ComponentCrop(None, None, NO_ITEM, f"no {component.item} found")
    if crop.mode == "annotation" and ground_truth is not None:
        region = ground_truth.get(component.crop_region)
    else:
        region = _region_of(best_of_category(detections, component.crop_region, threshold, crop.pick))
    if region is None and crop.on_no_detection == ITEM_TOP and crop.mode in MODES_NEEDING_DETECTOR:
        region = item_top_region(_region_of(best_of_category(detections, component.item, threshold, crop.pick)))
        if region is not None:
            pixels, _ = crop_one(image, region, crop)
            return ComponentCrop(
                pixels, region, ITEM_TOP, f"no {component.crop_region} found: the top of the {component.item}"
            )
    pixels, status = crop_one(image, region, crop)
    missing = region is None and crop.mode != "none"
    return ComponentCrop(pixels, region, status, f"no {component.crop_region} found" if missing else "")


def _region_of(detection: Any) -> Region | None:
    return Region(detection.box, detection.mask, detection.score) if detection is not None else None
