"""The crop set in data/crops: every labelled image's crop for every component, kept
incrementally. Each component's folder holds its crops and its `index.csv`: one row per labelled
image (the file, or why there is none: `no_detection`, `no_annotation`, `corrupt_image`,
`missing_image`) with the recipe it was cut by. `train@<component>` depends on that folder alone,
so a week of new jeans leaves the shirt components up to date. `detections/<detector
version>.jsonl` caches the detector's answers. Detections are keyed by image hash and detector
version and crops by their recipe (mode, size, margin, pick, detector version, fallback), so next
week only new images meet the detector and only changed recipes are re-cut. The `crop` stage
(`pipelines.stages.crop`) runs it.
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import CropParams, Params
from pipelines.crop import (
    ITEM_TOP,
    MODES_NEEDING_DETECTOR,
    CropError,
    DetectionCache,
    Region,
    annotation_regions,
    crop_one,
    detected_region,
    item_top_region,
    write_png,
)
from pipelines.detect import DetectorError, chunks, detection_record, load_detector, read_rgb

INDEX_FILE = "index.csv"
PROGRESS_EVERY = 200

# Why an image/component pair has no crop from its region (recorded in index.csv).
NO_DETECTION = "no_detection"  # nothing of the region's category above the score threshold
NO_ANNOTATION = "no_annotation"  # annotation mode, and the image has no ground-truth region
CORRUPT_IMAGE = "corrupt_image"  # the image file does not decode
MISSING_IMAGE = "missing_image"  # the labelled image is not in the manifest or on disk


@dataclass(frozen=True)
class CropRow:
    component: str
    sha256: str
    split: str
    file: str  # relative to the crops folder; empty when skipped
    status: str  # cropped | full_image | item_top (the top of the item: no region found) | skipped
    reason: str  # empty, or one of the reasons above
    score: float | None  # the detection's score (bbox/mask modes)
    box: str  # x0 y0 x1 y1 in original pixels, empty when none
    recipe: str


def crop_recipe(crop: CropParams, detector_version: str | None) -> str:
    """What a crop file depends on besides the image: change any part and it is redone."""
    return f"{crop.mode}:{crop.size}:{crop.margin:g}:{crop.pick}:{detector_version or '-'}:{crop.on_no_detection}"


def read_labelled(labels: Path, components: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """component → [(sha256, split)] from the label stage's CSVs."""
    found: dict[str, list[tuple[str, str]]] = {}
    for component in components:
        path = labels / f"{component}.csv"
        if not path.is_file():
            raise CropError(f"{path}: no labels for component {component} (run the label stage first)")
        with path.open(newline="", encoding="utf-8") as handle:
            found[component] = [(row["sha256"], row["split"]) for row in csv.DictReader(handle)]
    return found


def image_paths(manifest: Path, images_root: Path) -> dict[str, Path]:
    """sha256 → image file, from the validated manifest (paths are relative to data/raw)."""
    import pandas as pd

    if not manifest.is_file():
        raise CropError(f"{manifest}: no validated manifest (run the validate stage first)")
    table = pd.read_parquet(manifest, columns=["sha256", "path"])
    return {sha: images_root / path for sha, path in zip(table["sha256"], table["path"])}


def index_path(crops: Path, component: str) -> Path:
    """Where a component's crop index is: in its own folder, beside its crops."""
    return crops / component / INDEX_FILE


def read_crop_set(crops: Path) -> dict[tuple[str, str], CropRow]:
    """Every component's index rows, keyed by (component, sha256); also reads the single
    `index.csv` a crop set written before per-component indexes has, so it stays incremental."""
    rows = read_index(crops / INDEX_FILE)
    for path in sorted(crops.glob(f"*/{INDEX_FILE}")):
        rows.update(read_index(path))
    return rows


def write_crop_set(crops: Path, rows: Sequence[CropRow], components: Iterable[str]) -> None:
    """One index per component (an empty one for a component with no crops this run, so its
    folder, a `train@<component>` dependency, always exists)."""
    by_component: dict[str, list[CropRow]] = {component: [] for component in components}
    for row in rows:
        by_component.setdefault(row.component, []).append(row)
    for component, own in by_component.items():
        index_path(crops, component).parent.mkdir(parents=True, exist_ok=True)
        write_index(index_path(crops, component), own)
    (crops / INDEX_FILE).unlink(missing_ok=True)


def read_index(path: Path) -> dict[tuple[str, str], CropRow]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            CropRow(**{**row, "score": float(row["score"]) if row["score"] else None}) for row in csv.DictReader(handle)
        ]
    return {(row.component, row.sha256): row for row in rows}


def write_index(path: Path, rows: Sequence[CropRow]) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CropRow.__dataclass_fields__))
        writer.writeheader()
        for row in rows:
            writer.writerow({**asdict(row), "score": "" if row.score is None else f"{row.score:.4f}"})
    os.replace(temporary, path)


def detect_missing(
    detector: Any,
    cache: DetectionCache,
    shas: Sequence[str],
    paths: Mapping[str, Path],
    read: Callable[[Path], np.ndarray | None],
    progress: Callable[[str], None],
) -> int:
    """Run the detector over the images the cache lacks; returns how many were processed."""
    missing = [sha for sha in shas if sha not in cache.records and sha in paths]
    started = time.perf_counter()
    done = 0
    for batch in chunks(missing, detector.params.batch_size * 4):
        images = {sha: read(paths[sha]) for sha in batch}
        decodable = [sha for sha in batch if images[sha] is not None]
        found = detector.detect([images[sha] for sha in decodable])
        records = [
            {"sha256": sha, "detections": [detection_record(d) for d in dets]} for sha, dets in zip(decodable, found)
        ]
        records += [{"sha256": sha, "error": CORRUPT_IMAGE} for sha in batch if images[sha] is None]
        cache.add(records)
        done += len(batch)
        if done % PROGRESS_EVERY < len(batch) or done == len(missing):
            rate = done / (time.perf_counter() - started)
            progress(f"crop: detected {done}/{len(missing)} new images ({rate:.1f} images/s)")
    return len(missing)


def crop_labelled(
    params: Params,
    labels: Path,
    manifest: Path,
    images_root: Path,
    detector_dir: Path,
    annotations: Path,
    out: Path,
    progress: Callable[[str], None] = print,
    detector: Any | None = None,
) -> dict[str, Any]:
    """Crop every labelled image for every component; returns the stage summary."""
    crop = params.crop
    started = time.perf_counter()
    labelled = read_labelled(labels, params.components)
    paths = image_paths(manifest, images_root)
    modes = {params.crop_for(name).mode for name in params.components}
    needs_detector = bool(modes & MODES_NEEDING_DETECTOR)
    if needs_detector and detector is None:
        try:
            detector = load_detector(detector_dir)
        except DetectorError as error:
            raise CropError(str(error)) from None
    version = detector.version if needs_detector else None
    recipes = {name: crop_recipe(params.crop_for(name), version) for name in params.components}
    out.mkdir(parents=True, exist_ok=True)
    previous = read_crop_set(out)

    wanted = [(c, sha, split) for c, rows in labelled.items() for sha, split in rows]
    todo = [(c, sha, split) for c, sha, split in wanted if not _reusable(previous.get((c, sha)), recipes[c], out)]
    todo_images = sorted({sha for _, sha, _ in todo})
    progress(
        f"crop: {len(wanted)} image/component pairs, {len(wanted) - len(todo)} up to date, "
        f"{len(todo)} to crop from {len(todo_images)} images (mode {'/'.join(sorted(modes))}, {crop.size} px)"
    )

    detected_now = 0
    detect_seconds = 0.0
    cache = None
    if needs_detector:
        cache = DetectionCache(out, version)
        detect_started = time.perf_counter()
        detected_now = detect_missing(detector, cache, todo_images, paths, read_rgb, progress)
        detect_seconds = time.perf_counter() - detect_started
    ground_truth = annotation_regions(annotations) if "annotation" in modes else {}

    rows = dict(previous)
    todo_by_image: dict[str, list[tuple[str, str]]] = {}
    for component, sha, split in todo:
        todo_by_image.setdefault(sha, []).append((component, split))
    for sha, pairs in todo_by_image.items():
        image = read_rgb(paths[sha]) if sha in paths else None
        for component, split in pairs:
            rows[(component, sha)] = _crop_pair(
                params, component, sha, split, image, paths, cache, ground_truth, recipes[component], out
            )

    wanted_keys = {(c, sha) for c, sha, _ in wanted}
    for key, row in list(rows.items()):
        if key not in wanted_keys:
            if row.file:
                (out / row.file).unlink(missing_ok=True)  # no longer labelled: its crop goes too
            del rows[key]
    split_of = {(c, sha): split for c, sha, split in wanted}
    final = [CropRow(**{**asdict(rows[key]), "split": split_of[key]}) for key in sorted(rows)]
    write_crop_set(out, final, [*params.components, *{component for component, _ in previous}])
    return summarise(final, len(todo), detected_now, detect_seconds, time.perf_counter() - started, recipes)


def _reusable(row: CropRow | None, recipe: str, out: Path) -> bool:
    return row is not None and row.recipe == recipe and (not row.file or (out / row.file).is_file())


def _crop_pair(
    params: Params,
    component: str,
    sha: str,
    split: str,
    image: np.ndarray | None,
    paths: Mapping[str, Path],
    cache: DetectionCache | None,
    ground_truth: Mapping[str, Mapping[str, Region]],
    recipe: str,
    out: Path,
) -> CropRow:
    crop = params.crop_for(component)
    category = params.components[component].crop_region

    def row(file: str, status: str, reason: str, region: Region | None = None) -> CropRow:
        box = " ".join(f"{v:.1f}" for v in region.box) if region else ""
        return CropRow(component, sha, split, file, status, reason, region.score if region else None, box, recipe)

    if sha not in paths or image is None:
        reason = MISSING_IMAGE if sha not in paths or not paths[sha].is_file() else CORRUPT_IMAGE
        return row("", "skipped", reason)
    region: Region | None = None
    reason, from_item = "", False
    if crop.mode in MODES_NEEDING_DETECTOR:
        record = cache.records.get(sha) if cache else None

        def found(name: str) -> Region | None:
            return detected_region(record, name, params.detector.score_threshold, crop.mode != "bbox", crop.pick)

        region = found(category)
        reason = "" if region else NO_DETECTION
        if region is None and crop.on_no_detection == ITEM_TOP:
            region = item_top_region(found(params.components[component].item))
            from_item = region is not None
    elif crop.mode == "annotation":
        region = ground_truth.get(sha, {}).get(category)
        reason = "" if region else NO_ANNOTATION
    pixels, status = crop_one(image, region, crop)
    if pixels is None:
        return row("", status, reason)
    file = f"{component}/{sha}.png"
    write_png(out / file, pixels)
    return row(file, ITEM_TOP if from_item else status, reason, region)


def summarise(
    rows: Sequence[CropRow],
    processed: int,
    detected_now: int,
    detect_seconds: float,
    seconds: float,
    recipes: Mapping[str, str],
) -> dict[str, Any]:
    per_component: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = per_component.setdefault(row.component, {})
        key = row.status if not row.reason or row.status == "cropped" else f"{row.status}:{row.reason}"
        counts[key] = counts.get(key, 0) + 1
    reasons = Counter(row.reason for row in rows if row.reason)
    return {
        "recipes": dict(sorted(recipes.items())),
        "pairs": len(rows),
        "processed_pairs": processed,
        "reused_pairs": len(rows) - processed,
        "detected_images": detected_now,
        "detect_seconds": round(detect_seconds, 2),
        "seconds": round(seconds, 2),
        "reasons": dict(sorted(reasons.items())),
        "per_component": per_component,
    }
