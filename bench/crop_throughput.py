"""Crop stage throughput against the detector's bare batched inference, and the incremental
re-run against the full run, side by side in one process on the same images.

(a) bare: preprocessed batches straight through the trained Mask R-CNN (the model-bound ceiling);
(b) stage: `crop_labelled` on the same images from scratch (decode, detect, cache, crop, write);
(c) incremental: the stage again after 5% new images arrive, against (b).

Needs a trained detector and labelled data: run `make demo` (or `dvc repro crop`) first.

Usage: python bench/crop_throughput.py [--images 160] [--profile demo]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.config import load_params
from pipelines.crop_set import crop_labelled, image_paths, read_labelled
from pipelines.detect import DetectorError, chunks, load_detector, read_rgb


def subset_inputs(labels: Path, manifest: Path, shas: set[str], components: list[str], out: Path) -> tuple[Path, Path]:
    """Label CSVs and a manifest restricted to `shas`, written under `out`."""
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for component in components:
        with (
            (labels / f"{component}.csv").open(newline="") as source,
            (out / "labels" / f"{component}.csv").open("w", newline="") as target,
        ):
            reader = csv.DictReader(source)
            writer = csv.DictWriter(target, fieldnames=reader.fieldnames)
            writer.writeheader()
            writer.writerows(row for row in reader if row["sha256"] in shas)
    table = pd.read_parquet(manifest)
    table[table["sha256"].isin(shas)].to_parquet(out / "manifest.parquet")
    return out / "labels", out / "manifest.parquet"


def bare_inference_seconds(detector, images: list[np.ndarray]) -> float:
    """Model forward passes only, on inputs preprocessed beforehand (padded to full batches)."""
    size = detector.params.batch_size
    prepared = [detector.preprocess(image) for image in images]
    batches = []
    for chunk in chunks(prepared, size):
        inputs = [p[0] for p in chunk] + [tf.zeros_like(chunk[0][0])] * (size - len(chunk))
        infos = np.stack([p[1] for p in chunk] + [chunk[0][1]] * (size - len(chunk)))
        batches.append((tf.stack(inputs), tf.constant(infos[:, 1, :], tf.float32)))
    detector.raw_forward(*batches[0])  # warm: the trace is not throughput
    started = time.perf_counter()
    for batch, shape in batches:
        detector.raw_forward(batch, shape)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--manifest", type=Path, default=Path("data/validated/manifest.parquet"))
    parser.add_argument("--images-root", type=Path, default=Path("data/raw"))
    args = parser.parse_args()
    params = load_params(args.params, args.profile)
    try:
        detector = load_detector(args.detector)
    except DetectorError as error:
        print(f"crop bench: {error} (run `make demo` first)", file=sys.stderr)
        return 2
    if not args.manifest.is_file():
        print(f"crop bench: {args.manifest} missing (run `make demo` first)", file=sys.stderr)
        return 2
    components = list(params.components)
    labelled = read_labelled(args.labels, components)
    paths = image_paths(args.manifest, args.images_root)
    shas = sorted({sha for rows in labelled.values() for sha, _ in rows if sha in paths})
    new_count = max(1, round(args.images * 0.05))
    first, added = shas[: args.images], shas[args.images : args.images + new_count]
    images = [read_rgb(paths[sha]) for sha in first]
    print(
        f"crop bench: {len(first)} images (+{len(added)} new), detector {detector.version}, "
        f"batch {detector.params.batch_size} at {detector.params.image_size} px, crop mode {params.crop.mode}"
    )

    bare = bare_inference_seconds(detector, [image for image in images if image is not None])
    quiet = lambda line: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="seamline-crop-bench-") as work:
        work_dir = Path(work)
        labels, manifest = subset_inputs(args.labels, args.manifest, set(first), components, work_dir / "week1")
        full = crop_labelled(
            params,
            labels,
            manifest,
            args.images_root,
            args.detector,
            Path("data/annotations"),
            work_dir / "crops",
            progress=quiet,
            detector=detector,
        )
        labels, manifest = subset_inputs(
            args.labels, args.manifest, set(first) | set(added), components, work_dir / "week2"
        )
        started = time.perf_counter()
        incremental = crop_labelled(
            params,
            labels,
            manifest,
            args.images_root,
            args.detector,
            Path("data/annotations"),
            work_dir / "crops",
            progress=quiet,
            detector=detector,
        )
        incremental_seconds = time.perf_counter() - started

    bare_rate = len(first) / bare
    stage_rate = len(first) / full["seconds"]
    print(f"{'':34}{'images/s':>10}{'crops/s':>10}{'seconds':>10}")
    print(f"{'bare batched Mask R-CNN forward':34}{bare_rate:>10.2f}{'':>10}{bare:>10.1f}")
    crops_rate = full["pairs"] / full["seconds"]
    print(f"{'crop stage, full run':34}{stage_rate:>10.2f}{crops_rate:>10.2f}{full['seconds']:>10.1f}")
    print(
        f"{'crop stage, +5% new images':34}{'':>10}{'':>10}{incremental_seconds:>10.1f}"
        f"   ({incremental['detected_images']} images detected, {incremental['processed_pairs']} pairs cropped)"
    )
    print(
        f"ratio stage/bare images/s: {stage_rate / bare_rate:.2f}   "
        f"ratio incremental/full time: {incremental_seconds / full['seconds']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
