"""What spiders yield: one product page's extracted fields; the images pipeline fills in results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProductItem:
    source: str
    product_url: str
    title: str
    breadcrumb: str
    price: float | None
    item_hint: str | None
    image_urls: list[str]
    found_as: str = "page"  # page | card (a listing card, a product on its own) | card+page
    images: list[dict[str, Any]] = field(default_factory=list)  # stored image facts, per URL
    rejected: list[dict[str, str]] = field(default_factory=list)  # {"url", "reason"}
    requested: list[str] = field(default_factory=list)  # image URLs requested, in request order
