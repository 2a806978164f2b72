"""Reading products out of pages: pure functions over a parsel Selector (what Scrapy responses
carry) or decoded JSON, so each is unit-tested on saved pages without a crawl."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from parsel import Selector

from crawlers.source_config import CardRules, ExtractRules, LinkRules, SelectorRules

_SEPARATORS = {"›", ">", "/", "|", "»", "→", "•", "·"}


@dataclass(frozen=True)
class ProductFields:
    """What a product page says about the product; empty values mean "not found"."""

    title: str = ""
    breadcrumb: tuple[str, ...] = ()
    price: float | None = None
    image_urls: tuple[str, ...] = field(default_factory=tuple)

    def merged_with(self, other: ProductFields) -> ProductFields:
        """Each field from self, or from `other` where self has nothing; images from both,
        since one method may see only the main image (OpenGraph) and another the gallery."""
        return ProductFields(
            self.title or other.title,
            self.breadcrumb or other.breadcrumb,
            self.price if self.price is not None else other.price,
            self.image_urls + tuple(url for url in other.image_urls if url not in self.image_urls),
        )

    def over(self, card: ProductFields) -> ProductFields:
        """A product page's fields over its listing card's: each field from the page where it
        has one; images from the page alone when it has any (the card's are usually a thumbnail
        of the same photo)."""
        return ProductFields(
            self.title or card.title,
            self.breadcrumb or card.breadcrumb,
            self.price if self.price is not None else card.price,
            self.image_urls or card.image_urls,
        )


# --- small parsers --------------------------------------------------------------------------


def clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_price(text: str | float | int | None) -> float | None:
    """A price from text like "€1.299,00", "$49.99" or "49"; None when there is no number."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return float(text)
    match = re.search(r"\d[\d.,\s]*", text)
    if not match:
        return None
    number = re.sub(r"\s", "", match.group(0)).rstrip(".,")
    if "," in number and "." in number:
        # The later separator is the decimal one: 1.299,00 or 1,299.00.
        decimal = "," if number.rfind(",") > number.rfind(".") else "."
        number = number.replace("." if decimal == "," else ",", "").replace(decimal, ".")
    elif "," in number:
        head, _, tail = number.rpartition(",")
        number = f"{head.replace(',', '')}.{tail}" if len(tail) != 3 else number.replace(",", "")
    try:
        return float(number)
    except ValueError:
        return None


def first_price(texts: Iterable[str]) -> float | None:
    """The first text with a price in it: a sale price often follows an old price's element, so
    the first text node can be blank (`<del>$50</del>$40` gives "", then "$40")."""
    return next((price for text in texts if (price := parse_price(text)) is not None), None)


def largest_from_srcset(srcset: str) -> str | None:
    """The candidate with the largest width (`480w`) or density (`2x`) descriptor."""
    best, best_size = None, -1.0
    for candidate in srcset.split(","):
        parts = candidate.strip().split()
        if not parts:
            continue
        size = 1.0
        if len(parts) > 1 and re.fullmatch(r"\d+(\.\d+)?[wx]", parts[1]):
            size = float(parts[1][:-1])
        if size > best_size:
            best, best_size = parts[0], size
    return best


def absolute_image_urls(values: Iterable[str], base_url: str) -> tuple[str, ...]:
    """Absolute http(s) URLs, in order, without repeats or inline `data:` images."""
    urls: list[str] = []
    for value in values:
        value = value.strip()
        if not value or value.startswith("data:"):
            continue
        url = urljoin(base_url, value)
        if url.startswith(("http://", "https://")) and url not in urls:
            urls.append(url)
    return tuple(urls)


_CSS_URL = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)""")


def background_image(style: str) -> str | None:
    """The URL in an inline style's `background-image: url(...)` (or `background: ... url(...)`)."""
    for declaration in style.split(";"):
        name, _, value = declaration.partition(":")
        if name.strip().lower() in ("background-image", "background"):
            match = _CSS_URL.search(value)
            if match and match.group(2).strip():
                return match.group(2).strip()
    return None


def element_image(attributes: dict[str, str], wanted: Iterable[str]) -> str | None:
    """The image an element carries: the first of the `wanted` attributes present (the largest
    `srcset` candidate; the URL of a `style` background), or None."""
    for attribute in wanted:
        value = attributes.get(attribute)
        if not value:
            continue
        if attribute.endswith("srcset"):
            return largest_from_srcset(value)
        if attribute == "style":
            found = background_image(value)
            if found:
                return found
            continue  # a style without a background image says nothing; try nothing else after it
        return value
    return None


def breadcrumb_parts(texts: Iterable[str]) -> tuple[str, ...]:
    parts = [clean_text(text) for text in texts]
    return tuple(part for part in parts if part and part not in _SEPARATORS)


# --- per method -----------------------------------------------------------------------------


def _jsonld_blocks(selector: Selector) -> Iterator[dict[str, Any]]:
    for text in selector.xpath('//script[@type="application/ld+json"]/text()').getall():
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue  # a broken block on a real page must not lose the rest of the page
        stack = data if isinstance(data, list) else [data]
        while stack:
            node = stack.pop(0)
            if isinstance(node, dict):
                if "@graph" in node and isinstance(node["@graph"], list):
                    stack.extend(node["@graph"])
                yield node


def _types(node: dict[str, Any]) -> set[str]:
    kind = node.get("@type", [])
    return set(kind if isinstance(kind, list) else [kind])


def from_jsonld(selector: Selector, base_url: str) -> ProductFields:
    """schema.org Product (and BreadcrumbList) from JSON-LD blocks."""
    blocks = list(_jsonld_blocks(selector))
    product = next((b for b in blocks if "Product" in _types(b)), None)
    crumbs = next((b for b in blocks if "BreadcrumbList" in _types(b)), None)
    breadcrumb: tuple[str, ...] = ()
    if crumbs:
        elements = sorted(
            crumbs.get("itemListElement", []), key=lambda e: e.get("position", 0) if isinstance(e, dict) else 0
        )
        breadcrumb = breadcrumb_parts(
            str(e.get("name") or (e.get("item") or {}).get("name", "")) for e in elements if isinstance(e, dict)
        )
    if product is None:
        return ProductFields(breadcrumb=breadcrumb)
    images = product.get("image", [])
    images = [images] if isinstance(images, (str, dict)) else images
    image_values = [i.get("url", "") if isinstance(i, dict) else str(i) for i in images]
    offers = product.get("offers", {})
    offer = offers[0] if isinstance(offers, list) and offers else offers
    price = parse_price(offer.get("price")) if isinstance(offer, dict) else None
    if not breadcrumb and isinstance(product.get("category"), str):
        breadcrumb = breadcrumb_parts(re.split(r"\s*[>/›]\s*", product["category"]))
    return ProductFields(
        title=clean_text(str(product.get("name", ""))),
        breadcrumb=breadcrumb,
        price=price,
        image_urls=absolute_image_urls(image_values, base_url),
    )


def from_opengraph(selector: Selector, base_url: str) -> ProductFields:
    def meta(prop: str) -> list[str]:
        return selector.xpath(f'//meta[@property="{prop}" or @name="{prop}"]/@content').getall()

    title = clean_text((meta("og:title") or [""])[0])
    price = parse_price((meta("product:price:amount") or meta("og:price:amount") or [None])[0])
    return ProductFields(title=title, price=price, image_urls=absolute_image_urls(meta("og:image"), base_url))


def _select(selector: Selector, query: str | None, kind: str) -> list[str]:
    if not query:
        return []
    found = selector.css(query) if kind == "css" else selector.xpath(query)
    return list(found.getall())


def from_selectors(selector: Selector, rules: SelectorRules, kind: str, base_url: str) -> ProductFields:
    """Fields from CSS (`kind='css'`) or XPath selectors; images from element attributes."""
    title = clean_text(" ".join(_select(selector, rules.title, kind)))
    price_texts = _select(selector, rules.price, kind)
    values: list[str] = []
    if rules.image_elements:
        elements = selector.css(rules.image_elements) if kind == "css" else selector.xpath(rules.image_elements)
        values = [value for element in elements if (value := element_image(element.attrib, rules.image_attributes))]
    return ProductFields(
        title=title,
        breadcrumb=breadcrumb_parts(_select(selector, rules.breadcrumb, kind)),
        price=first_price(price_texts),
        image_urls=absolute_image_urls(values, base_url),
    )


def extract_product(selector: Selector, base_url: str, rules: ExtractRules) -> ProductFields:
    """Each field from the first method in `rules.methods` that finds it."""
    fields = ProductFields()
    for method in rules.methods:
        if method == "jsonld":
            found = from_jsonld(selector, base_url)
        elif method == "opengraph":
            found = from_opengraph(selector, base_url)
        else:
            selector_rules = rules.css if method == "css" else rules.xpath
            assert selector_rules is not None  # guaranteed by ExtractRules validation
            found = from_selectors(selector, selector_rules, method, base_url)
        fields = fields.merged_with(found)
    return fields


# --- listing cards --------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """One product card on a listing page: its fields, and its own product page if it has one."""

    fields: ProductFields
    link: str | None
    text_key: str  # a stable hash of the card's text, its id when it shows no image

    def product_url(self, listing_url: str) -> str:
        """The id of a card without a page of its own: its first image URL, which stays the same
        when the card moves to another listing page; else the listing URL and the card's hash."""
        return self.fields.image_urls[0] if self.fields.image_urls else f"{listing_url}#card-{self.text_key}"


def read_cards(selector: Selector, base_url: str, rules: CardRules, product_patterns: Iterable[str]) -> list[Card]:
    """The product cards of a listing page, in page order.

    A card's link counts as its own product page only when it matches a product pattern and no
    other card on the page shares it: templates often point every card at one demo detail page."""
    patterns = tuple(product_patterns)
    listing_breadcrumb = breadcrumb_parts(_select(selector, rules.listing_breadcrumb, "css"))
    found: list[tuple[ProductFields, str | None, str]] = []
    for card in selector.css(rules.selector):
        images = [
            value for e in card.css(rules.image_elements) if (value := element_image(e.attrib, rules.image_attributes))
        ]
        price_texts = _select(card, rules.price, "css")
        fields = ProductFields(
            title=clean_text(" ".join(_select(card, rules.title, "css"))),
            breadcrumb=listing_breadcrumb,
            price=first_price(price_texts),
            image_urls=absolute_image_urls(images, base_url),
        )
        hrefs = [href.strip() for href in _select(card, rules.link, "css") if href.strip()]
        link = urljoin(base_url, hrefs[0]).split("#", 1)[0] if hrefs else None
        text = clean_text(" ".join(card.css("::text").getall()))
        found.append((fields, link, hashlib.sha256(f"{text}|{fields.image_urls}".encode()).hexdigest()[:16]))
    shared = Counter(link for _, link, _ in found if link)
    return [
        Card(
            fields,
            link if link and _own_page(link, base_url, shared, patterns) else None,
            key,
        )
        for fields, link, key in found
    ]


def _own_page(link: str, listing_url: str, shared: Counter[str], patterns: tuple[str, ...]) -> bool:
    return (
        shared[link] == 1
        and link != listing_url.split("#", 1)[0]  # `href="#"`: the listing itself
        and any(re.search(pattern, link) for pattern in patterns)
    )


# --- links and platforms --------------------------------------------------------------------


def classify_links(urls: Iterable[str], rules: LinkRules) -> tuple[list[str], list[str]]:
    """(product page URLs, listing URLs to follow), each without repeats, in page order."""
    products: list[str] = []
    follow: list[str] = []
    for url in urls:
        if any(re.search(p, url) for p in rules.products):
            if url not in products:
                products.append(url)
        elif any(re.search(p, url) for p in rules.follow) and url not in follow:
            follow.append(url)
    return products, follow


def page_links(selector: Selector, base_url: str) -> list[str]:
    """Absolute URLs of the page's links, fragment removed."""
    return [urljoin(base_url, href).split("#", 1)[0] for href in selector.css("a::attr(href)").getall()]


def products_from_shopify(data: dict[str, Any], shop_url: str) -> list[tuple[str, ProductFields]]:
    """Products from a Shopify `/products.json` page: (product URL, fields)."""
    found = []
    for product in data.get("products", []) or []:
        if not isinstance(product, dict) or not product.get("handle"):
            continue
        variants = product.get("variants") or [{}]
        breadcrumb = breadcrumb_parts([str(product.get("product_type") or ""), *map(str, product.get("tags") or [])])
        fields = ProductFields(
            title=clean_text(str(product.get("title", ""))),
            breadcrumb=breadcrumb,
            price=parse_price(variants[0].get("price") if isinstance(variants[0], dict) else None),
            image_urls=absolute_image_urls(
                (i.get("src", "") for i in product.get("images", []) if isinstance(i, dict)), shop_url
            ),
        )
        found.append((urljoin(shop_url, f"/products/{product['handle']}"), fields))
    return found
