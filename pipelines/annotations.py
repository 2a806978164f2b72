"""Garment annotations: Labelme polygon files (the paper's annotation tool) → one COCO instances
file, with masks, areas and boxes from pycocotools. Bad files are reported by name and skipped.

`seamline annotations import DIR` → data/annotations/{instances.json, images/, import_report.csv}
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

EDGE_TOLERANCE_PX = 0.5  # Labelme stores clicks on the border as x = width


class AnnotationProblem(ValueError):
    """Why one Labelme file cannot be used."""


@dataclass(frozen=True)
class Instance:
    category: str
    polygon: list[float]  # x0, y0, x1, y1, ... in pixels


@dataclass(frozen=True)
class AnnotatedImage:
    source: Path  # the Labelme file
    image: Path
    width: int
    height: int
    instances: list[Instance]


def read_labelme(path: Path, categories: Sequence[str]) -> AnnotatedImage:
    """One Labelme file, checked: readable JSON, an existing image, known labels, polygons of at
    least 3 points inside the image. Raises AnnotationProblem with the reason."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationProblem(f"not a readable JSON file ({error})") from None
    if not isinstance(document, dict):
        raise AnnotationProblem("not a Labelme document (top level is not an object)")
    try:
        width, height = int(document["imageWidth"]), int(document["imageHeight"])
        image = (path.parent / str(document["imagePath"])).resolve()
        shapes = document["shapes"]
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationProblem(f"missing or invalid Labelme field {error}") from None
    if not image.is_file():
        raise AnnotationProblem(f"image {document['imagePath']} not found")
    if not shapes:
        raise AnnotationProblem("no shapes: nothing is annotated")
    instances = []
    for number, shape in enumerate(shapes, start=1):
        label = shape.get("label")
        if label not in categories:
            raise AnnotationProblem(
                f"shape {number}: unknown label {label!r} (expected one of: {', '.join(categories)})"
            )
        if shape.get("shape_type", "polygon") != "polygon":
            raise AnnotationProblem(f"shape {number}: {shape.get('shape_type')!r} is not a polygon")
        points = np.asarray(shape.get("points") or [], dtype=np.float64).reshape(-1, 2)
        if len(points) < 3:
            raise AnnotationProblem(f"shape {number} ({label}): {len(points)} points, a polygon needs at least 3")
        outside = (
            (points < -EDGE_TOLERANCE_PX).any()
            or (points[:, 0] > width + EDGE_TOLERANCE_PX).any()
            or (points[:, 1] > height + EDGE_TOLERANCE_PX).any()
        )
        if outside:
            raise AnnotationProblem(f"shape {number} ({label}): points outside the {width}x{height} image")
        instances.append(Instance(label, points.flatten().tolist()))
    return AnnotatedImage(path, image, width, height, instances)


def instance_record(instance: Instance, width: int, height: int) -> dict[str, Any]:
    """Area and box of a polygon from its RLE mask, as COCO evaluation computes them."""
    rle = coco_mask.merge(coco_mask.frPyObjects([instance.polygon], height, width))
    return {
        "segmentation": [instance.polygon],
        "area": float(coco_mask.area(rle)),
        "bbox": [float(v) for v in coco_mask.toBbox(rle)],
        "iscrowd": 0,
    }


@dataclass
class ImportResult:
    coco: dict[str, Any]
    imported: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


def build_coco(
    annotated: Sequence[AnnotatedImage], categories: Sequence[str], file_names: Sequence[str]
) -> dict[str, Any]:
    """A COCO instances document; category ids start at 1 (0 is the background)."""
    category_ids = {name: index for index, name in enumerate(categories, start=1)}
    images, annotations = [], []
    for image_id, (item, file_name) in enumerate(zip(annotated, file_names), start=1):
        images.append({"id": image_id, "file_name": file_name, "width": item.width, "height": item.height})
        for instance in item.instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[instance.category],
                    **instance_record(instance, item.width, item.height),
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "garment"} for name, i in category_ids.items()],
    }


def import_labelme_dir(folder: Path, out: Path, categories: Sequence[str]) -> ImportResult:
    """Every Labelme file under `folder` into `out`: images copied by content hash, one COCO file,
    and a report with one line per file (imported, or skipped and why)."""
    annotated: list[AnnotatedImage] = []
    result = ImportResult(coco={})
    for path in sorted(folder.rglob("*.json")):
        try:
            annotated.append(read_labelme(path, categories))
        except AnnotationProblem as problem:
            result.problems.append((path, str(problem)))
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    file_names = []
    for item in annotated:
        digest = hashlib.sha256(item.image.read_bytes()).hexdigest()
        name = f"{digest}{item.image.suffix.lower()}"
        if not (images_dir / name).exists():
            shutil.copyfile(item.image, images_dir / name)
        file_names.append(f"images/{name}")
        result.imported.append(item.source)
    result.coco = build_coco(annotated, categories, file_names)
    (out / "instances.json").write_text(json.dumps(result.coco) + "\n", encoding="utf-8")
    with (out / "import_report.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "status", "reason"])
        writer.writerows([str(p), "imported", ""] for p in result.imported)
        writer.writerows([str(p), "skipped", reason] for p, reason in result.problems)
    return result
