"""The `crop` stage: for every labelled image and component, the region that component needs
(`components.<c>.crop_region`), cut in the configured mode and padded to a square.

    python -m pipelines.crop_stage --params params.yaml --labels data/labels \
        --manifest data/validated/manifest.parquet --images data/raw --detector models/detector \
        --annotations data/annotations --out data/crops --summary reports/crop_summary.json

Outputs in `--out`: `<component>/<sha256>.png`, `index.csv` (one row per labelled image and
component: the file, or why there is none) and `detections/<detector version>.jsonl`, the
detection cache. Detections are keyed by image hash + detector version and crops by a recipe
(mode, size, detector version, fallback), so next week only new images meet the detector.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import DEFAULT_PARAMS_PATH, CropParams, Params, ParamsError, load_params
from pipelines.crop import crop_for_mode

INDEX_FILE = "index.csv"
DETECTIONS_DIR = "detections"
MODES_NEEDING_DETECTOR = {"bbox", "mask", "mask_alpha"}
PROGRESS_EVERY = 200

# Why an image/component pair has no crop from its region (recorded in index.csv).
NO_DETECTION = "no_detection"  # nothing of the region's category above the score threshold
NO_ANNOTATION = "no_annotation"  # annotation mode, and the image has no ground-truth region
CORRUPT_IMAGE = "corrupt_image"  # the image file does not decode
MISSING_IMAGE = "missing_image"  # the labelled image is not in the manifest or on disk


class CropStageError(RuntimeError):
    """A problem that stops the stage (bad inputs, not one bad image), with the reason."""


@dataclass(frozen=True)
class CropRow:
    component: str
    sha256: str
    split: str
    file: str  # relative to the crops folder; empty when skipped
    status: str  # cropped | full_image | skipped
    reason: str  # empty, or one of the reasons above
    score: float | None  # the detection's score (bbox/mask modes)
    box: str  # x0 y0 x1 y1 in original pixels, empty when none
    recipe: str


@dataclass(frozen=True)
class Region:
    """A garment region in an image: from the detector or from the annotations."""

    box: tuple[float, float, float, float]
    mask: np.ndarray | None
    score: float | None


def crop_recipe(crop: CropParams, detector_version: str | None) -> str:
    """What a crop file depends on besides the image: change any part and it is redone."""
    return f"{crop.mode}:{crop.size}:{crop.margin:g}:{crop.pick}:{detector_version or '-'}:{crop.on_no_detection}"


def read_labelled(labels: Path, components: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """component → [(sha256, split)] from the label stage's CSVs."""
    found: dict[str, list[tuple[str, str]]] = {}
    for component in components:
        path = labels / f"{component}.csv"
        if not path.is_file():
            raise CropStageError(f"{path}: no labels for component {component} (run the label stage first)")
        with path.open(newline="", encoding="utf-8") as handle:
            found[component] = [(row["sha256"], row["split"]) for row in csv.DictReader(handle)]
    return found


def image_paths(manifest: Path, images_root: Path) -> dict[str, Path]:
    """sha256 → image file, from the validated manifest (paths are relative to data/raw)."""
    import pandas as pd

    if not manifest.is_file():
        raise CropStageError(f"{manifest}: no validated manifest (run the validate stage first)")
    table = pd.read_parquet(manifest, columns=["sha256", "path"])
    return {sha: images_root / path for sha, path in zip(table["sha256"], table["path"])}


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


def detect_missing(
    detector: Any,
    cache: DetectionCache,
    shas: Sequence[str],
    paths: Mapping[str, Path],
    read: Callable[[Path], np.ndarray | None],
    progress: Callable[[str], None],
) -> int:
    """Run the detector over the images the cache lacks; returns how many were processed."""
    from pipelines.detect import chunks, detection_record

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


def detected_region(
    record: Mapping[str, Any] | None, category: str, threshold: float, with_mask: bool, pick: str = "largest"
) -> Region | None:
    """The largest (or most confident) detection of `category` at or above `threshold` in a
    cached record."""
    from pipelines.detect import decode_mask

    if not record or "detections" not in record:
        return None
    candidates = [d for d in record["detections"] if d["category"] == category and d["score"] >= threshold]
    if not candidates:
        return None
    if pick == "largest":
        best = max(candidates, key=lambda d: max(d["box"][2] - d["box"][0], 0) * max(d["box"][3] - d["box"][1], 0))
    else:
        best = max(candidates, key=lambda d: d["score"])
    return Region(tuple(best["box"]), decode_mask(best["mask"]) if with_mask else None, float(best["score"]))


def write_png(path: Path, pixels: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    code = cv2.COLOR_RGBA2BGRA if pixels.ndim == 3 and pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
    if not cv2.imwrite(str(path), cv2.cvtColor(pixels, code)):
        raise CropStageError(f"{path}: could not be written")


def crop_one(image: np.ndarray, region: Region | None, crop: CropParams) -> tuple[np.ndarray | None, str]:
    """(pixels, status) for one image: the region in the configured mode, else the fallback."""
    if crop.mode == "none":
        return crop_for_mode(image, "none", crop.size), "cropped"
    if region is not None:
        mode = "bbox" if crop.mode == "annotation" else crop.mode
        return crop_for_mode(image, mode, crop.size, region.box, region.mask, crop.margin), "cropped"
    if crop.on_no_detection == "full_image":
        return crop_for_mode(image, "none", crop.size), "full_image"
    return None, "skipped"


def check_regions(params: Params) -> None:
    categories = set(params.detector.categories)
    for name, component in params.components.items():
        if component.crop_region not in categories:
            raise CropStageError(
                f"components.{name}.crop_region: {component.crop_region!r} is not one of detector.categories {sorted(categories)}"
            )


def run_crop_stage(
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
    from pipelines.detect import read_rgb

    check_regions(params)
    crop = params.crop
    started = time.perf_counter()
    labelled = read_labelled(labels, params.components)
    paths = image_paths(manifest, images_root)
    modes = {params.crop_for(name).mode for name in params.components}
    needs_detector = bool(modes & MODES_NEEDING_DETECTOR)
    if needs_detector and detector is None:
        from pipelines.detect import DetectorError, load_detector

        try:
            detector = load_detector(detector_dir)
        except DetectorError as error:
            raise CropStageError(str(error)) from None
    version = detector.version if needs_detector else None
    recipes = {name: crop_recipe(params.crop_for(name), version) for name in params.components}
    out.mkdir(parents=True, exist_ok=True)
    previous = read_index(out / INDEX_FILE)

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
    write_index(out / INDEX_FILE, final)
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
    reason = ""
    if crop.mode in MODES_NEEDING_DETECTOR:
        region = detected_region(
            cache.records.get(sha) if cache else None,
            category,
            params.detector.score_threshold,
            crop.mode != "bbox",
            crop.pick,
        )
        reason = "" if region else NO_DETECTION
    elif crop.mode == "annotation":
        region = ground_truth.get(sha, {}).get(category)
        reason = "" if region else NO_ANNOTATION
    pixels, status = crop_one(image, region, crop)
    if pixels is None:
        return row("", status, reason)
    file = f"{component}/{sha}.png"
    write_png(out / file, pixels)
    return row(file, status, reason, region)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.crop_stage", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--manifest", type=Path, default=Path("data/validated/manifest.parquet"))
    parser.add_argument("--images", type=Path, default=Path("data/raw"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--annotations", type=Path, default=Path("data/annotations"))
    parser.add_argument("--out", type=Path, default=Path("data/crops"))
    parser.add_argument("--summary", type=Path, default=Path("reports/crop_summary.json"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        summary = run_crop_stage(
            params,
            args.labels,
            args.manifest,
            args.images,
            args.detector,
            args.annotations,
            args.out,
            progress=lambda line: print(line, flush=True),
        )
    except (ParamsError, CropStageError) as error:
        print(f"crop: {error}", file=sys.stderr)
        return 2
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"crop: {summary['pairs']} pairs ({summary['processed_pairs']} processed, {summary['reused_pairs']} reused); "
        f"{summary['detected_images']} images through the detector; reasons {summary['reasons'] or 'none'} → {args.summary}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
