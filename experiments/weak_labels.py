"""Weak-label quality on a crawled demo shop: per component, coverage (labelled share of the
item's images) and precision (share of weak labels that match the shop's ground truth), and the
split leakage check. Ground truth is read here, never by the pipeline.

Usage: python experiments/weak_labels.py [SHOP_DIR --manifests data/raw --labels data/labels]
With SHOP_DIR, scores labels already made from a crawl of that shop (`seamline demo-shop build`,
`seamline crawl demo`, `python -m pipelines.stages.label`). Without, builds a 300-product shop, serves
it, crawls it and labels it first, all in a scratch folder.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from crawlers.demo_shop.truth import ATTRIBUTE, image_labels


def crawl_and_label(scratch: Path, products: int) -> tuple[Path, Path, Path]:
    """A fresh shop, crawled and labelled: (shop, manifests, labels)."""
    from crawlers.demo_shop.crawl import crawl, serve
    from crawlers.demo_shop.site import build_shop

    shop, raw, labels = scratch / "shop", scratch / "raw", scratch / "labels"
    build_shop(shop, products, seed=21, difficulty="medium")
    server, origin = serve(shop, scratch / "server.log")
    try:
        crawl(origin, raw)
    finally:
        server.terminate()
        server.wait()
    subprocess.run(
        [sys.executable, "-m", "pipelines.stages.label", "--manifest", str(raw), "--out", str(labels)], check=True
    )
    return shop, raw, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop", type=Path, nargs="?", help="a built demo shop already crawled and labelled")
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--products", type=int, default=300, help="shop size when none is given")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="weak-labels-") as scratch:
        if args.shop is None:
            args.shop, args.manifests, args.labels = crawl_and_label(Path(scratch), args.products)
        report(args.shop, args.manifests, args.labels)


def report(shop: Path, manifests: Path, labels: Path) -> None:
    image_truth = image_labels(shop, manifests)
    print(f"{'component':<14} {'images':>7} {'labelled':>9} {'coverage':>9} {'precision':>10}")
    for component, attribute in ATTRIBUTE.items():
        item = component.split("-")[0]
        candidates = sum(1 for t in image_truth.values() if t["item"] == item)
        with (labels / f"{component}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        correct = sum(1 for r in rows if image_truth[r["sha256"]].get(attribute) == r["label"])
        precision = correct / len(rows) if rows else float("nan")
        print(f"{component:<14} {candidates:>7} {len(rows):>9} {len(rows) / candidates:>9.1%} {precision:>10.1%}")


if __name__ == "__main__":
    main()
