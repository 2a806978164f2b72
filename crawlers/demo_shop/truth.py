"""A built demo shop's ground truth, read for the tests, benchmarks and experiments that score what
the pipeline got. Only they read it: nothing in the pipeline may (the shop stands in for a real
one, whose truth nobody has)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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


def products(shop: Path) -> list[dict[str, Any]]:
    """Every product the shop was built with, as ground_truth.jsonl records it."""
    return [json.loads(line) for line in (shop / "ground_truth.jsonl").read_text().splitlines()]


def clean_image_count(shop: Path) -> int:
    """Product photos without a planted fault: what a complete crawl stores."""
    return sum(1 for product in products(shop) for image in product["images"] if not image["fault"])


def product_labels(shop: Path) -> dict[str, dict[str, str]]:
    """URL path of every product page (and its copies) → its true labels and item."""
    truth: dict[str, dict[str, str]] = {}
    for product in products(shop):
        for path in (product["url"], *product["also_at"]):
            truth[path] = {**product["labels"], "item": product["item"]}
    return truth


def image_views(shop: Path) -> dict[str, str]:
    """URL path of every product photo → the view the renderer drew (front, alt, detail)."""
    return {image["url"]: image["view"] for product in products(shop) for image in product["images"]}


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
