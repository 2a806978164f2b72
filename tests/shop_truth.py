"""Reading a built demo shop's ground truth: for tests that score what the pipeline got."""

from __future__ import annotations

import json
from pathlib import Path


def products(shop: Path) -> list[dict]:
    return [json.loads(line) for line in (shop / "ground_truth.jsonl").read_text().splitlines()]


def clean_image_count(shop: Path) -> int:
    return sum(1 for product in products(shop) for image in product["images"] if not image["fault"])
