"""The `label` stage: weak labels (keyword rules over titles and breadcrumbs, hand labels first)
and leak-free splits per component (`pipelines.labels`).

    python -m pipelines.stages.label --params params.yaml --manifest data/validated/manifest.parquet --out data/labels

Writes data/labels/<component>.csv (sha256, label, split, label_source) and <component>.json, the
component's gate: its label counts, and why it is skipped this run when a class is short of
validation.min_examples_per_class (the others still train).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipelines.config import ParamsError, load_params
from pipelines.labels import (
    assign_splits,
    gate_component,
    label_component,
    leaked_pairs,
    load_fingerprints,
    load_manifest_rows,
    read_hand_labels,
    split_groups,
    unique_images,
    write_gate,
    write_labels,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.stages.label", description="Weak labels and leak-free splits per component."
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default=None)
    parser.add_argument(
        "--manifest",
        type=Path,
        default=Path("data/validated/manifest.parquet"),
        help="the validated manifest (parquet), or a folder of <source>/manifest.jsonl files",
    )
    parser.add_argument("--out", type=Path, default=Path("data/labels"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        hand = read_hand_labels(Path(params.labels.hand_labels), params.components)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.manifest.exists():
        print(f"error: {args.manifest} does not exist; run the validate stage first", file=sys.stderr)
        return 1
    images = unique_images(load_manifest_rows(args.manifest))
    if not images:
        print(f"error: no manifest rows in {args.manifest}", file=sys.stderr)
        return 1
    distance, rule = params.validation.near_duplicate_hamming, params.validation.same_photo
    phashes = [image.phash for image in images]
    prints = load_fingerprints(args.manifest, [image.sha256 for image in images])
    groups = split_groups([image.product_url for image in images], phashes, prints, distance, rule)
    split_list = assign_splits([image.sha256 for image in images], groups, params.labels.split, params.labels.seed)
    leaks = leaked_pairs(phashes, prints, split_list, distance, rule)
    if leaks:
        test, train = leaks[0]
        print(
            f"error: {len(leaks)} test images have a near duplicate in train (e.g. {images[test].sha256[:12]} ~ "
            f"{images[train].sha256[:12]}); splits would leak",
            file=sys.stderr,
        )
        return 1
    splits = {image.sha256: split for image, split in zip(images, split_list)}
    largest = max(Counter(groups).values())
    print(
        f"{len(images)} images in {len(set(groups))} groups (one product, or one photo), the largest "
        f"{largest} images; leakage check passed"
    )
    minimum = params.validation.min_examples_per_class
    for name, component in params.components.items():
        labelled = label_component(name, component, images, params.labels, hand, splits)
        write_labels(args.out / f"{name}.csv", labelled)
        gate = gate_component(labelled, component.classes, minimum)
        write_gate(args.out, gate)
        coverage = gate.labelled / gate.candidates if gate.candidates else 0.0
        split = gate.per_split
        print(
            f"{name:<14} {gate.labelled:>6} labelled of {gate.candidates:>6} ({coverage:.0%}); "
            f"{gate.conflicts} conflicts; train/val/test {split['train']}/{split['val']}/{split['test']}"
            + (f"; skipped this run: {gate.skipped}" if gate.skipped else "")
        )
    # A component short of labels is skipped (its gate file says why) and keeps its champion; the
    # others go on. Only a problem of the whole data set (above) stops the run here.
    return 0


if __name__ == "__main__":
    sys.exit(main())
