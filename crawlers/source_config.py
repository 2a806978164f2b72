"""Crawl sources: one YAML file per shop under `crawlers/sources/`, typed and checked before any
request is sent. `${VAR}` and `${VAR:-default}` in values are read from the environment."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlparse

from cssselect import SelectorError  # parsel's selector engine
from parsel import Selector
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.config import ParamsError, read_yaml_mapping, validation_lines

SOURCES_DIR = Path(__file__).resolve().parent / "sources"
Item = Literal["shirt", "jeans"]
Method = Literal["jsonld", "opengraph", "css", "xpath"]
# Lazy-loading attributes first, so a real `data-src` beats a placeholder `src`; `style` last
# (a CSS `background-image: url(...)`, as on cards whose photo is a div's background).
DEFAULT_IMAGE_ATTRIBUTES = ("data-src", "data-setbg", "data-bg", "data-lazy-src", "srcset", "src", "style")


class SourceError(ParamsError):
    """A source file that cannot be used; each line names one key path."""


def _compiles(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"{pattern!r} is not a valid regular expression ({error})") from None
    return patterns


Patterns = Annotated[tuple[str, ...], Field(strict=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LinkRules(_Section):
    """Regular expressions over absolute URLs: which links are listings to follow (pagination
    included) and which are product pages."""

    follow: Patterns = ()
    products: Patterns = ()  # may stay empty only when `cards:` are the products

    _check = field_validator("follow", "products")(_compiles)


class SelectorRules(_Section):
    """Where a product's fields are on the page, as CSS or XPath selectors.

    `image_elements` selects the elements carrying images; from each, the first attribute of
    `image_attributes` present wins, so lazy-loading `data-src` beats a placeholder `src`."""

    title: str | None = None
    breadcrumb: str | None = None
    price: str | None = None
    image_elements: str | None = None
    image_attributes: Annotated[tuple[str, ...], Field(strict=False, min_length=1)] = DEFAULT_IMAGE_ATTRIBUTES


class ExtractRules(_Section):
    """How to read a product page: methods tried in order, each field taken from the first
    method that finds it."""

    methods: Annotated[tuple[Method, ...], Field(strict=False, min_length=1)] = ("jsonld", "opengraph")
    css: SelectorRules | None = None
    xpath: SelectorRules | None = None

    @model_validator(mode="after")
    def _rules_for_methods(self) -> Self:
        for method in ("css", "xpath"):
            if method in self.methods and getattr(self, method) is None:
                raise ValueError(f"methods lists {method!r} but no `{method}:` selectors are given")
        return self


def _valid_css(query: str | None) -> str | None:
    """Compile a CSS selector now, so a typo stops at load time and not on the first page."""
    if query is not None:
        try:
            Selector(text="<html></html>").css(query)
        except (SelectorError, ValueError) as error:
            raise ValueError(f"{query!r} is not a valid CSS selector ({error})") from None
    return query


class CardRules(_Section):
    """Products shown as cards on listing pages. `selector` picks each card; the other
    selectors are CSS relative to the card, except `listing_breadcrumb`, read once from the
    listing page (its breadcrumb or heading) and given to each of its cards.

    A card whose `link` is a product page (it matches `links.products` and no other card on the
    page shares it) is followed, the page's fields winning over the card's; any other card is a
    product on its own, identified by its first image URL."""

    selector: str
    title: str | None = None
    price: str | None = None
    image_elements: str = "img"
    image_attributes: Annotated[tuple[str, ...], Field(strict=False, min_length=1)] = DEFAULT_IMAGE_ATTRIBUTES
    link: str | None = None
    listing_breadcrumb: str | None = None

    _check = field_validator("selector", "title", "price", "image_elements", "link", "listing_breadcrumb")(_valid_css)


class ItemHint(_Section):
    """Which pages are shirts and which jeans: any given matcher matching (case-insensitive) wins."""

    item: Item
    url: str | None = None  # regular expression over the product URL
    breadcrumb: Patterns = ()  # words, any of which in the breadcrumb
    title: Patterns = ()  # words, any of which in the title

    @model_validator(mode="after")
    def _has_matcher(self) -> Self:
        if self.url is None and not self.breadcrumb and not self.title:
            raise ValueError("an item hint needs at least one of url, breadcrumb, title")
        if self.url is not None:
            _compiles((self.url,))
        return self


class Politeness(_Section):
    """Overrides of params.yaml `crawl` for this shop; null keeps the params value."""

    concurrent_requests_per_domain: Annotated[int, Field(ge=1)] | None = None
    download_delay_s: Annotated[float, Field(ge=0.0)] | None = None
    autothrottle: bool | None = None


class Limits(_Section):
    max_pages: Annotated[int, Field(ge=1)] | None = None
    max_images: Annotated[int, Field(ge=1)] | None = None


class SourceConfig(_Section):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")]
    description: str = ""
    spider: Literal["listing", "sitemap", "shopify"]
    start_urls: Annotated[tuple[str, ...], Field(strict=False)] = ()
    sitemap_urls: Annotated[tuple[str, ...], Field(strict=False)] = ()
    allowed_domains: Annotated[tuple[str, ...], Field(strict=False, min_length=1)]
    links: LinkRules | None = None
    cards: CardRules | None = None
    extract: ExtractRules = ExtractRules()
    item_hints: Annotated[tuple[ItemHint, ...], Field(strict=False)] = ()
    politeness: Politeness = Politeness()
    limits: Limits = Limits()

    @field_validator("start_urls", "sitemap_urls")
    @classmethod
    def _absolute_http(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"{url!r} is not an absolute http(s) URL")
        return urls

    @model_validator(mode="after")
    def _fits_its_spider(self) -> Self:
        if self.spider == "listing" and not self.start_urls:
            raise ValueError("spider 'listing' needs start_urls")
        if self.spider == "listing" and self.cards is None and (self.links is None or not self.links.products):
            raise ValueError("spider 'listing' needs links.products (product pages) or cards (products on listings)")
        if self.cards is not None and self.spider != "listing":
            raise ValueError(f"cards: are read from listing pages; spider {self.spider!r} has none")
        if self.spider == "sitemap" and not self.sitemap_urls:
            raise ValueError("spider 'sitemap' needs sitemap_urls")
        if self.spider == "shopify" and not self.start_urls:
            raise ValueError("spider 'shopify' needs start_urls (the shop's base URL)")
        for url in (*self.start_urls, *self.sitemap_urls):
            host = urlparse(url).hostname or ""
            if not any(host == d or host.endswith("." + d) for d in self.allowed_domains):
                raise ValueError(f"{url!r} is outside allowed_domains ({', '.join(self.allowed_domains)})")
        return self


# --- loading --------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_environment(tree: Any, environ: dict[str, str], path: str = "") -> Any:
    """`${VAR}` / `${VAR:-default}` in every string value, from `environ`."""
    if isinstance(tree, dict):
        return {
            key: expand_environment(value, environ, f"{path}.{key}" if path else str(key))
            for key, value in tree.items()
        }
    if isinstance(tree, list):
        return [expand_environment(value, environ, f"{path}.{index}") for index, value in enumerate(tree)]
    if not isinstance(tree, str):
        return tree

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise SourceError(f"{path}: environment variable {name} is not set and has no default")

    return _VARIABLE.sub(substitute, tree)


def load_source(path: Path, environ: dict[str, str] | None = None) -> SourceConfig:
    """Read and validate one source file; raises SourceError with one line per problem."""
    try:
        tree = read_yaml_mapping(path, "source file")
    except ParamsError as error:
        raise SourceError(str(error)) from None
    try:
        tree = expand_environment(tree, dict(os.environ) if environ is None else environ)
    except SourceError as error:
        raise SourceError(f"{path}: {error}") from None
    try:
        source = SourceConfig.model_validate(tree)
    except ValidationError as error:
        raise SourceError("\n".join(f"{path}: {line}" for line in validation_lines(error))) from None
    if source.name != path.stem:
        raise SourceError(f"{path}: name: {source.name!r} must match the file name ({path.stem!r})")
    return source


def source_file(name: str, sources_dir: Path = SOURCES_DIR) -> Path:
    path = sources_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in sources_dir.glob("*.yaml"))) or "none"
        raise SourceError(f"unknown source {name!r} (no {path}; known: {known})")
    return path


def list_source_files(sources_dir: Path = SOURCES_DIR) -> list[Path]:
    return sorted(sources_dir.glob("*.yaml"))


def item_hint(hints: tuple[ItemHint, ...], url: str, title: str, breadcrumb: str) -> str | None:
    """The item type the first matching hint gives a product, or None."""
    for hint in hints:
        if hint.url is not None and re.search(hint.url, url, flags=re.IGNORECASE):
            return hint.item
        if any(_has_word(breadcrumb, word) for word in hint.breadcrumb):
            return hint.item
        if any(_has_word(title, word) for word in hint.title):
            return hint.item
    return None


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None
