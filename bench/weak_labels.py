"""Weak-label quality on a crawled demo shop: per component, coverage (labelled share of the
item's images) and precision (share of weak labels that match the shop's ground truth), and the
split leakage check. Ground truth is read here, never by the pipeline.

Usage: python bench/weak_labels.py [SHOP_DIR --manifests data/raw --labels data/labels]
With SHOP_DIR, scores labels already made from a crawl of that shop (`seamline demo-shop build`,
`seamline crawl demo`, `python -m pipelines.label`). Without, builds a 300-product shop, serves
it, crawls it and labels it first, all in a scratch folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.manifest import iter_manifests, read_manifest

# component -> ground-truth attribute in the demo shop
ATTRIBUTE = {
    "shirt-collar": "collar",
    "shirt-pattern": "pattern",
    "jeans-fit": "fit",
    "jeans-color": "color",
    "jeans-washing": "washing",
    "jeans-damage": "damage",
}


def product_labels(shop: Path) -> dict[str, dict[str, str]]:
    """URL path of every product page (and its copies) → its true labels and item."""
    truth: dict[str, dict[str, str]] = {}
    for line in (shop / "ground_truth.jsonl").read_text().splitlines():
        product = json.loads(line)
        for path in (product["url"], *product["also_at"]):
            truth[path] = {**product["labels"], "item": product["item"]}
    return truth


def crawl_and_label(scratch: Path, products: int) -> tuple[Path, Path, Path]:
    """A fresh shop, crawled and labelled: (shop, manifests, labels)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _demo_crawl import crawl, serve

    from crawlers.demo_shop.site import build_shop

    shop, raw, labels = scratch / "shop", scratch / "raw", scratch / "labels"
    build_shop(shop, products, seed=21, difficulty="medium")
    server, origin = serve(shop, scratch / "server.log")
    try:
        crawl(origin, raw)
    finally:
        server.terminate()
        server.wait()
    subprocess.run([sys.executable, "-m", "pipelines.label", "--manifest", str(raw), "--out", str(labels)], check=True)
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


def image_views(shop: Path) -> dict[str, str]:
    """URL path of every product photo → the view the renderer drew (front, alt, detail)."""
    views: dict[str, str] = {}
    for line in (shop / "ground_truth.jsonl").read_text().splitlines():
        for image in json.loads(line)["images"]:
            views[image["url"]] = image["view"]
    return views


def image_labels(shop: Path, manifests: Path) -> dict[str, dict[str, str]]:
    """sha256 of every crawled image → the true labels and item of the product it shows, and
    the photo's view."""
    truth, views = product_labels(shop), image_views(shop)
    image_truth = {}
    for manifest in iter_manifests(manifests):
        for row in read_manifest(manifest).rows:
            view = views.get(_url_path(row.image_url), "unknown")
            image_truth[row.sha256] = {**truth[_url_path(row.product_url)], "view": view}
    return image_truth


def _url_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


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
