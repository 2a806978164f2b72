"""Data snapshots: what a week's data holds (images per source, labels per class and split),
written as a small git-tracked metric, and the weekly git tag that pins it with dvc.lock.

Stage: `python -m pipelines.snapshot` → reports/data/snapshot.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.manifest import iter_manifests, read_manifest

TAG_PREFIX = "data-"


def week_tag(day: date) -> str:
    """The weekly snapshot tag for a day: ISO year and week, e.g. data-2026-W48."""
    year, week, _ = day.isocalendar()
    return f"{TAG_PREFIX}{year}-W{week:02d}"


def source_counts(manifests_root: Path) -> dict[str, int]:
    """Images per source (manifest rows)."""
    return {path.parent.name: len(read_manifest(path).rows) for path in iter_manifests(manifests_root)}


def label_counts(labels_root: Path) -> dict[str, dict[str, dict[str, int]]]:
    """component → class → split → images, from the label stage's CSVs."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for path in sorted(labels_root.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            pairs = Counter((row["label"], row["split"]) for row in csv.DictReader(handle))
        per_class: dict[str, dict[str, int]] = {}
        for (label, split), n in sorted(pairs.items()):
            per_class.setdefault(label, {})[split] = n
        counts[path.stem] = per_class
    return counts


def snapshot_summary(manifests_root: Path, labels_root: Path) -> dict[str, Any]:
    return {"images": source_counts(manifests_root), "labels": label_counts(labels_root)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.snapshot", description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--out", type=Path, default=Path("reports/data/snapshot.json"))
    args = parser.parse_args(argv)
    summary = snapshot_summary(args.manifests, args.labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    total = sum(summary["images"].values())
    print(f"snapshot: {total} images from {len(summary['images'])} sources, {len(summary['labels'])} components labelled → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
