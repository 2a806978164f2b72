"""Weak-label quality on a crawled demo shop: per component, coverage (labelled share of the
item's images) and precision (share of weak labels that match the shop's ground truth), and the
split leakage check. Ground truth is read here, never by the pipeline.

Usage: python bench/weak_labels.py SHOP_DIR [--manifests data/raw] [--labels data/labels]
(run `python -m pipelines.label` first; SHOP_DIR is what `seamline demo-shop build` wrote)
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

from pipelines.manifest import iter_manifests, read_manifest

# component -> ground-truth attribute in the demo shop
ATTRIBUTE = {"shirt-collar": "collar", "shirt-pattern": "pattern", "jeans-fit": "fit",
             "jeans-color": "color", "jeans-washing": "washing", "jeans-damage": "damage"}


def product_labels(shop: Path) -> dict[str, dict[str, str]]:
    """URL path of every product page (and its copies) → its true labels and item."""
    truth: dict[str, dict[str, str]] = {}
    for line in (shop / "ground_truth.jsonl").read_text().splitlines():
        product = json.loads(line)
        for path in (product["url"], *product["also_at"]):
            truth[path] = {**product["labels"], "item": product["item"]}
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop", type=Path)
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    args = parser.parse_args()

    truth = product_labels(args.shop)
    image_truth = {}
    for manifest in iter_manifests(args.manifests):
        for row in read_manifest(manifest).rows:
            image_truth[row.sha256] = truth[re.sub(r"^https?://[^/]+", "", row.product_url)]
    print(f"{'component':<14} {'images':>7} {'labelled':>9} {'coverage':>9} {'precision':>10}")
    for component, attribute in ATTRIBUTE.items():
        item = component.split("-")[0]
        candidates = sum(1 for t in image_truth.values() if t["item"] == item)
        with (args.labels / f"{component}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        correct = sum(1 for r in rows if image_truth[r["sha256"]].get(attribute) == r["label"])
        precision = correct / len(rows) if rows else float("nan")
        print(f"{component:<14} {candidates:>7} {len(rows):>9} {len(rows) / candidates:>9.1%} {precision:>10.1%}")


if __name__ == "__main__":
    main()
