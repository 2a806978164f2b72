"""The demo shop's products: garments with titles, prices and breadcrumbs written the way real
shops write them — synonyms, varied word order, and some titles that say nothing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from crawlers.demo_shop.garments import ATTRIBUTES, Difficulty, GarmentSpec, Item, sample_garment
from crawlers.demo_shop.render import View

Template = Literal["jsonld", "opengraph", "plain"]

# How shops name each class. Several words per class, as real titles vary.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "collar": {
        "band": ("Band Collar", "Mandarin Collar", "Grandad Collar", "Stand Collar"),
        "button_down": ("Button-Down", "Button Down Collar", "Button-Down Collar"),
        "notched": ("Notch Lapel", "Notched Collar", "Notched Lapel"),
        "regular": ("Point Collar", "Classic Collar", "Regular Collar", "Spread Collar"),
    },
    "pattern": {
        "check": ("Check", "Checked", "Gingham", "Plaid"),
        "dot": ("Polka Dot", "Dotted", "Spotted"),
        "floral": ("Floral", "Flower Print", "Floral Print"),
        "solid": ("Plain", "Solid", "Solid Colour"),
        "stripe": ("Striped", "Stripe", "Pinstripe", "Bengal Stripe"),
    },
    "fit": {
        "bootcut": ("Bootcut", "Boot Cut", "Boot-Cut"),
        "regular": ("Regular Fit", "Straight Leg", "Straight", "Classic Fit"),
        "skinny": ("Skinny", "Super Skinny", "Skinny Fit"),
        "wide": ("Wide Leg", "Wide-Leg", "Loose Wide"),
    },
    "color": {
        "light": ("Light Wash", "Light Blue", "Bleached"),
        "middle": ("Mid Wash", "Medium Wash", "Mid Blue"),
        "deep": ("Dark Wash", "Indigo", "Deep Blue"),
    },
    "washing": {
        "one": ("One Wash", "Rinse Wash", "Even Wash"),
        "brush": ("Faded", "Whiskered", "Vintage Fade", "Brushed"),
    },
    "damage": {
        "damage": ("Ripped", "Distressed", "Destroyed"),
        "non_damage": ("Non-Distressed", "No Rips", "Clean Finish"),
    },
}
# How often a title mentions each attribute (the rest of the time it says nothing about it).
MENTION_P = {"collar": 0.8, "pattern": 0.85, "fit": 0.85, "color": 0.8, "washing": 0.6, "damage": 0.65}
SILENT_TITLE_P = 0.06  # titles like "Everyday Oxford Shirt": no attribute at all
MISLABEL_P = 0.03  # a title naming the wrong class, as real shops' copy sometimes does
FABRICS = ("Oxford", "Poplin", "Cotton", "Linen", "Twill", "Chambray", "Flannel")
JEANS_NAMES = ("Jeans", "Denim Jeans", "5-Pocket Jeans")
GENERIC_SHIRTS = ("Everyday {fabric} Shirt", "The {fabric} Shirt", "Weekend {fabric} Shirt")
GENERIC_JEANS = ("Everyday Jeans", "Signature Denim", "The Original Jeans")
AUDIENCES = ("Men", "Women")
FIT_CATEGORY_P = 0.4  # jeans listed under a fit category, as many shops do
COLOURWAYS = 3  # packshot shops: consecutive products are one design in this many colourways


@dataclass(frozen=True)
class Product:
    """One product page's content and the garment its photos show."""

    id: str
    slug: str
    title: str
    price: float
    breadcrumb: tuple[str, ...]
    description: str
    garment: GarmentSpec
    views: tuple[View, ...]
    template: Template

    @property
    def path(self) -> str:
        return f"/p/{self.slug}.html"


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def title_phrase(
    rng: np.random.Generator, attribute: str, label: str, mention_p: Mapping[str, float] = MENTION_P
) -> str | None:
    """How a title names `label`: one of its synonyms, now and then another class's (real copy
    is sometimes wrong), or nothing (with probability 1 − `mention_p[attribute]`)."""
    if rng.random() >= mention_p[attribute]:
        return None
    if rng.random() < MISLABEL_P:
        label = str(rng.choice([other for other in SYNONYMS[attribute] if other != label]))
    return str(rng.choice(SYNONYMS[attribute][label]))


def shirt_title(rng: np.random.Generator, labels: dict[str, str]) -> str:
    fabric = str(rng.choice(FABRICS))
    if rng.random() < SILENT_TITLE_P:
        return str(rng.choice(GENERIC_SHIRTS)).format(fabric=fabric)
    collar, pattern = title_phrase(rng, "collar", labels["collar"]), title_phrase(rng, "pattern", labels["pattern"])
    form = rng.integers(0, 3)
    if form == 0 or collar is None:
        words = [w for w in (collar, pattern, fabric, "Shirt") if w]
        return " ".join(words)
    if form == 1:
        return " ".join(w for w in (pattern, fabric, "Shirt with", collar) if w)
    return f"{fabric} Shirt — " + ", ".join(w for w in (pattern, collar) if w)


def jeans_title(rng: np.random.Generator, labels: dict[str, str]) -> str:
    name = str(rng.choice(JEANS_NAMES))
    if rng.random() < SILENT_TITLE_P:
        return str(rng.choice(GENERIC_JEANS))
    fit = title_phrase(rng, "fit", labels["fit"])
    color = title_phrase(rng, "color", labels["color"])
    washing = title_phrase(rng, "washing", labels["washing"])
    damage = title_phrase(rng, "damage", labels["damage"])
    form = rng.integers(0, 3)
    if form == 0:
        head = " ".join(w for w in (color, fit, name) if w)
        return f"{head} — {damage}" if damage else head
    if form == 1:
        head = " ".join(w for w in (fit, washing, name) if w)
        tail = " ".join(w for w in (f"in {color}" if color else None, f"({damage})" if damage else None) if w)
        return f"{head} {tail}".strip()
    return " ".join(w for w in (damage, color, washing, fit, name) if w)


def breadcrumb(rng: np.random.Generator, garment: GarmentSpec) -> tuple[str, ...]:
    audience = str(rng.choice(AUDIENCES))
    if garment.item == "shirt":
        return ("Home", audience, "Shirts")
    if rng.random() < FIT_CATEGORY_P:
        fit_name = SYNONYMS["fit"][garment.labels["fit"]][0]
        return ("Home", audience, "Jeans", f"{fit_name} Jeans")
    return ("Home", audience, "Jeans")


def description(item: Item, rng: np.random.Generator) -> str:
    care = str(rng.choice(("Machine wash at 30°C.", "Wash inside out.", "Do not tumble dry.")))
    fibre = str(rng.choice(("100% cotton.", "98% cotton, 2% elastane.", "Organic cotton.")))
    what = "A wardrobe staple" if item == "shirt" else "Five-pocket styling, zip fly"
    return f"{what}. {fibre} {care}"


def packshot_garment(index: int, seed: int) -> GarmentSpec:
    """Product `index` of a packshot shop: colourway `index % COLOURWAYS` of design
    `index // COLOURWAYS`. A shirt's colourways turn its fabric's hues; jeans come in each wash
    (so their colour class differs, as a shop's light, mid and dark wash of one cut do)."""
    design, colourway = divmod(index, COLOURWAYS)
    design_rng = np.random.default_rng([seed, 1, design])
    item: Item = "shirt" if design_rng.random() < 0.5 else "jeans"
    garment = sample_garment(design_rng, item)
    if item == "jeans":
        washes = ATTRIBUTES["jeans"]["color"]
        first = washes.index(garment.labels["color"])
        return replace(garment, labels={**garment.labels, "color": washes[(first + colourway) % len(washes)]})
    return replace(garment, colourway=colourway)


def make_product(index: int, seed: int, difficulty: Difficulty = "medium") -> Product:
    """Product number `index` of the shop built with `seed`; independent of every other product,
    so products can be made in any order or in parallel."""
    rng = np.random.default_rng([seed, index])
    item: Item = "shirt" if rng.random() < 0.5 else "jeans"
    garment = sample_garment(rng, item)
    if difficulty == "packshot":
        garment = packshot_garment(index, seed)
        item = garment.item
    title = shirt_title(rng, garment.labels) if item == "shirt" else jeans_title(rng, garment.labels)
    low, high = (19, 89) if item == "shirt" else (29, 129)
    price = float(rng.integers(low, high)) + 0.99
    views: tuple[View, ...] = ("front", "alt", "detail") if rng.random() < 0.35 else ("front", "alt")
    if difficulty == "packshot":  # the studio's front shot and a close-up, never a second scene
        views = ("front", "detail")
    template: Template = str(rng.choice(("jsonld", "jsonld", "opengraph", "plain")))  # type: ignore[assignment]
    product_id = f"SL{index + 1:05d}"
    return Product(
        id=product_id,
        slug=f"{slugify(title)}-{product_id.lower()}",
        title=title,
        price=price,
        breadcrumb=breadcrumb(rng, garment),
        description=description(item, rng),
        garment=garment,
        views=views,
        template=template,
    )
