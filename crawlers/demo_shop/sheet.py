"""Contact sheets of a built shop: per component, one row per class of ground-truth crops, so a
person can check that every class is recognisable."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from crawlers.demo_shop.garments import ATTRIBUTES, REGION_OF_ATTRIBUTE

LABEL_WIDTH = 130


def _letterbox_crop(image: np.ndarray, points: np.ndarray, tile: int) -> np.ndarray:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    side = max(x1 - x0, y1 - y0) * 1.15
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    matrix = np.array([[tile / side, 0, tile / 2 - cx * tile / side], [0, tile / side, tile / 2 - cy * tile / side]])
    return cv2.warpAffine(image, matrix, (tile, tile), flags=cv2.INTER_AREA, borderValue=(255, 255, 255))


def _examples(shop: Path, item: str, attribute: str) -> dict[str, list[tuple[Path, np.ndarray]]]:
    """(image path, region points) of the clean front photos of each class, in product order."""
    region = REGION_OF_ATTRIBUTE[attribute]
    found: dict[str, list[tuple[Path, np.ndarray]]] = {label: [] for label in ATTRIBUTES[item][attribute]}
    for line in (shop / "ground_truth.jsonl").read_text(encoding="utf-8").splitlines():
        product = json.loads(line)
        if product["item"] != item:
            continue
        image = next((i for i in product["images"] if i["view"] == "front" and not i["fault"]), None)
        if image is None:
            continue
        stem = image["url"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        annotation = json.loads((shop / "annotations" / f"{product['id']}-{stem}.json").read_text(encoding="utf-8"))
        shapes = [s for s in annotation["shapes"] if s["label"] == region]
        if shapes:
            found[product["labels"][attribute]].append(
                (shop / "site" / image["url"].lstrip("/"), np.array(shapes[0]["points"]))
            )
    return found


def contact_sheet(shop: Path, item: str, attribute: str, per_class: int = 8, tile: int = 96) -> np.ndarray:
    rows = []
    for label, examples in _examples(shop, item, attribute).items():
        row = np.full((tile, LABEL_WIDTH + per_class * tile, 3), 255, dtype=np.uint8)
        cv2.putText(row, label, (6, tile // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(
            row, f"n={len(examples)}", (6, tile // 2 + 25), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA
        )
        for column, (path, points) in enumerate(examples[:per_class]):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            x = LABEL_WIDTH + column * tile
            row[:, x : x + tile] = _letterbox_crop(image, points, tile)
        rows.append(row)
    return np.vstack(rows)


def write_contact_sheets(shop: Path, out: Path, per_class: int = 8, tile: int = 96) -> list[Path]:
    """One PNG per component (`shirt-collar.png`, ...) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for item, attributes in ATTRIBUTES.items():
        for attribute in attributes:
            path = out / f"{item}-{attribute}.png"
            cv2.imwrite(str(path), contact_sheet(shop, item, attribute, per_class, tile))
            written.append(path)
    return written
