"""A shop of real photos: the CC0 photos of `shared/real-photos/` sold as products with copy
written the way real shops write it — some titles name an attribute, others say nothing, a few
name the wrong one — on the demo shop's page templates, so the same server and sources read it.

Each photo is one product (the photos come with no product grouping). Its category comes from
the photo's folder and, for trousers, from the hand labels (jeans or other trousers); its
title's attribute words from the hand labels settled in `eval/real-photos/` — the truth only tests
and benchmarks read, written beside the site as `ground_truth.jsonl` like the demo shop's.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

from crawlers.demo_shop.catalogue import FABRICS, SYNONYMS, Product, slugify, title_phrase
from crawlers.demo_shop.garments import GarmentSpec
from crawlers.demo_shop.site import ROBOTS, ImageFile, ShopBuildError, _page, _write, listing_pages, product_page
from crawlers.demo_shop.site import sitemap as sitemap_xml

REAL_SHOP_FORMAT = 1
# Where each folder's photos are sold, and as what. Tops all carry the shirt components (a
# t-shirt has a pattern; its collar answer is `none`).
CATEGORY = {"shirt": ("Shirts", "Shirt"), "longsleeve": ("Tops", "Long Sleeve Top"), "t-shirt": ("T-Shirts", "T-Shirt")}
LISTING = {
    "Shirts": "/shirts/",
    "Tops": "/tops/",
    "T-Shirts": "/t-shirts/",
    "Jeans": "/jeans/",
    "Trousers": "/trousers/",
}
# Real copy names attributes less often than the demo shop's: a photo's title says its pattern
# or fit about half the time.
MENTION_P = {"collar": 0.5, "pattern": 0.6, "fit": 0.6, "color": 0.55, "washing": 0.35, "damage": 0.5}


@dataclass(frozen=True)
class RealPhoto:
    sha256: str
    path: str  # under the real-photos folder
    folder: str  # shirt | longsleeve | t-shirt | pants


def read_photos(photos_csv: Path) -> list[RealPhoto]:
    with photos_csv.open(newline="", encoding="utf-8") as handle:
        return [RealPhoto(row["sha256"], row["path"], row["folder"]) for row in csv.DictReader(handle)]


def read_settled(answers: Sequence[Path]) -> dict[str, dict[str, str]]:
    """sha256 → question → settled answer, from `seamline hand-labels settle`'s answers files."""
    settled: dict[str, dict[str, str]] = {}
    for path in answers:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["settled"] != "-":
                    settled.setdefault(row["sha256"], {})[row["question"]] = row["settled"]
    return settled


def _mention(rng: np.random.Generator, attribute: str, label: str | None) -> str | None:
    """The demo shop's title phrase for a settled class at this shop's rates; nothing for an
    answer that is no class (`unclear`, `none`, `other`)."""
    if label is None or label not in SYNONYMS[attribute]:
        return None
    return title_phrase(rng, attribute, label, MENTION_P)


def real_title(rng: np.random.Generator, folder: str, category: str, answers: Mapping[str, str]) -> str:
    if category in ("Jeans", "Trousers"):
        noun = "Jeans" if category == "Jeans" else str(rng.choice(("Trousers", "Chinos", "Pants")))
        words = [_mention(rng, a, answers.get(a)) for a in ("damage", "color", "washing", "fit")]
        return " ".join(w for w in (*words, noun) if w)
    pattern, collar = _mention(rng, "pattern", answers.get("pattern")), _mention(rng, "collar", answers.get("collar"))
    fabric = str(rng.choice(FABRICS)) if folder == "shirt" else str(rng.choice(("Cotton", "Jersey", "Organic")))
    words = [pattern, fabric, CATEGORY[folder][1]]
    return " ".join(w for w in words if w) + (f" with {collar}" if collar else "")


def category_of(photo: RealPhoto, answers: Mapping[str, str]) -> str:
    if photo.folder == "pants":
        return "Jeans" if answers.get("jeans") == "yes" else "Trousers"
    return CATEGORY[photo.folder][0]


def build_real_shop(
    photos: Sequence[RealPhoto], settled: Mapping[str, Mapping[str, str]], root: Path, out: Path, seed: int
) -> int:
    """Write the shop to `out` (site/, ground_truth.jsonl, shop.json), replacing an earlier real
    shop there; returns the number of products. Same inputs → the same files."""
    if out.exists() and any(out.iterdir()) and not (out / "shop.json").is_file():
        raise ShopBuildError(f"{out} exists and is not a shop; choose an empty or new --out")
    missing = [photo.path for photo in photos if not (root / photo.path).is_file()]
    if missing:
        raise ShopBuildError(f"{len(missing)} photos not under {root}, e.g. {missing[0]}")
    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    site = staging / "site"
    listed: dict[str, list[tuple[Product, str]]] = {name: [] for name in LISTING}
    truth: list[str] = []
    for index, photo in enumerate(sorted(photos, key=lambda p: p.sha256)):
        rng = np.random.default_rng([seed, index])
        answers = settled.get(photo.sha256, {})
        category = category_of(photo, answers)
        title = real_title(rng, photo.folder, category, answers)
        product_id = f"RP{index + 1:05d}"
        item = {"Jeans": "jeans", "Trousers": "trousers"}.get(category, "shirt")
        product = Product(
            id=product_id,
            slug=f"{slugify(title)}-{product_id.lower()}",
            title=title,
            price=float(rng.integers(15, 120)) + 0.95,
            breadcrumb=("Home", category),
            description="Photographed at home by its owner.",
            garment=GarmentSpec(item, dict(answers), 0),  # type: ignore[arg-type]
            views=("front",),
            template=str(rng.choice(("jsonld", "jsonld", "opengraph", "plain"))),  # type: ignore[arg-type]
        )
        data = (root / photo.path).read_bytes()  # served unchanged: a crawl stores the same bytes
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        url = f"/img/{product_id}/1.jpg"
        _write(site, url, data)
        if product.template == "plain":  # its srcset names a small candidate; the largest is the same photo
            _write(site, f"/img/{product_id}/1-180w.jpg", data)
        _write(
            site,
            product.path,
            product_page(product, product.path, [ImageFile(url, "front", "jpeg", b"", [], width, height)]),
        )
        listed[category].append((product, product.path))
        record = {"id": product_id, "url": product.path, "sha256": photo.sha256, "photo": photo.path}
        truth.append(
            json.dumps({**record, "item": item, "category": category, "labels": dict(answers), "title": title})
        )
    pages: dict[str, str] = {}
    for name, base in LISTING.items():
        pages.update(listing_pages(name, base, listed[name]))
    menu = " · ".join(f'<a href="{base}">{escape(name)}</a>' for name, base in LISTING.items())
    pages["/"] = _page("Home", f"<h1>Real photos, real copy</h1>\n<p>{menu}</p>")
    for path, html in pages.items():
        _write(site, path, html)
    _write(site, "/robots.txt", ROBOTS)
    _write(site, "/sitemap.xml", sitemap_xml([*pages, *(p.path for ps in listed.values() for p, _ in ps)]))
    (staging / "ground_truth.jsonl").write_text("\n".join(truth) + "\n", encoding="utf-8")
    info = {"format": REAL_SHOP_FORMAT, "kind": "real photos", "products": len(truth), "seed": seed}
    (staging / "shop.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return len(truth)
