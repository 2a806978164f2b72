"""Source files: the shipped ones load; every mistake is named by key path before any request."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crawlers.source_config import (
    ItemHint,
    SourceError,
    expand_environment,
    item_hint,
    list_source_files,
    load_source,
    source_file,
)

VALID = {
    "name": "shop",
    "spider": "listing",
    "start_urls": ["https://www.shop.example/"],
    "allowed_domains": ["shop.example"],
    "links": {"follow": ["/c/"], "products": ["/p/"]},
    "extract": {"methods": ["jsonld", "css"], "css": {"title": "h1::text"}},
}


def write(tmp_path: Path, tree: dict, name: str = "shop") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_shipped_sources_load() -> None:
    names = {load_source(path, environ={}).name for path in list_source_files()}
    assert {"demo", "demo_css", "demo_sitemap", "demo_shopify"} <= names


def test_valid_source_and_subdomains_of_allowed_domains(tmp_path: Path) -> None:
    source = load_source(write(tmp_path, VALID), environ={})
    assert source.extract.methods == ("jsonld", "css") and source.links is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extrct": {}}, "extrct: unknown key"),
        ({"spider": "crawly"}, "spider: Input should be 'listing', 'sitemap' or 'shopify'"),
        ({"links": {"products": ["/p/("]}}, "links.products: '/p/(' is not a valid regular expression"),
        ({"links": None}, "spider 'listing' needs links.products (product pages) or cards"),
        ({"cards": {"selector": "div.card["}}, "cards.selector: 'div.card[' is not a valid CSS selector"),
        ({"cards": {"selector": ".card", "title": "h6::nope"}}, "cards.title: 'h6::nope' is not a valid CSS"),
        (
            {"spider": "sitemap", "sitemap_urls": ["https://www.shop.example/s.xml"], "cards": {"selector": ".c"}},
            "cards: are read from listing pages; spider 'sitemap' has none",
        ),
        ({"start_urls": ["ftp://shop.example/"]}, "start_urls: 'ftp://shop.example/' is not an absolute http(s) URL"),
        ({"start_urls": ["https://elsewhere.example/"]}, "is outside allowed_domains"),
        ({"extract": {"methods": ["xpath"]}}, "extract: methods lists 'xpath' but no `xpath:` selectors"),
        ({"item_hints": [{"item": "shirt"}]}, "item_hints.0: an item hint needs at least one of"),
        ({"politeness": {"download_delay_s": -1}}, "politeness.download_delay_s"),
        ({"name": "other"}, "name: 'other' must match the file name ('shop')"),
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(SourceError) as raised:
        load_source(write(tmp_path, {**VALID, **change}), environ={})
    assert message in str(raised.value)
    assert str(raised.value).startswith(str(tmp_path / "shop.yaml"))


def test_cards_alone_are_enough_for_a_listing_source(tmp_path: Path) -> None:
    tree = {**VALID, "links": {"follow": ["/shop-\\d+\\.html$"]}, "cards": {"selector": ".product__item"}}
    source = load_source(write(tmp_path, tree), environ={})
    assert source.cards is not None and source.cards.image_elements == "img"
    assert "style" in source.cards.image_attributes and "data-bg" in source.cards.image_attributes


def test_malformed_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text("name: shop\nstart_urls: [https://x\n")
    with pytest.raises(SourceError, match=r"shop\.yaml:\d+:\d+: malformed YAML"):
        load_source(path)


def test_environment_variables_with_defaults() -> None:
    tree = {"start_urls": ["${SHOP:-http://127.0.0.1:8765}/", "${HOST}/x"], "n": 3}
    assert expand_environment(tree, {"HOST": "https://h"}) == {
        "start_urls": ["http://127.0.0.1:8765/", "https://h/x"],
        "n": 3,
    }
    with pytest.raises(SourceError, match=r"start_urls\.1: environment variable HOST is not set"):
        expand_environment(tree, {})


def test_unknown_source_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    with pytest.raises(SourceError, match=r"unknown source 'nope'.*known: shop"):
        source_file("nope", tmp_path)


def test_item_hints_first_match_wins() -> None:
    hints = (ItemHint(item="jeans", url="/denim/"), ItemHint(item="shirt", breadcrumb=("Shirts",), title=("blouse",)))
    assert item_hint(hints, "https://s/denim/1", "Oxford Shirt", "Home > Shirts") == "jeans"
    assert item_hint(hints, "https://s/p/1", "Silk Blouse", "") == "shirt"
    assert item_hint(hints, "https://s/p/1", "Hat", "Home > Hats") is None
    assert item_hint(hints, "https://s/p/1", "Overshirts", "") is None  # whole words only
