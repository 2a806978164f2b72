"""Product extraction from saved pages: JSON-LD, OpenGraph, CSS/XPath, lazy images, Shopify."""

from __future__ import annotations

import pytest
from parsel import Selector

from crawlers.extract import (
    ProductFields,
    background_image,
    classify_links,
    extract_product,
    from_jsonld,
    from_opengraph,
    from_selectors,
    largest_from_srcset,
    parse_price,
    products_from_shopify,
    read_cards,
)
from crawlers.source_config import CardRules, ExtractRules, LinkRules, SelectorRules

BASE = "https://shop.example/p/oxford-shirt.html"

JSONLD_PAGE = """<html><head>
<script type="application/ld+json">{"@context": "https://schema.org", "@graph": [
  {"@type": "BreadcrumbList", "itemListElement": [
     {"@type": "ListItem", "position": 2, "name": "Shirts"},
     {"@type": "ListItem", "position": 1, "name": "Home"}]},
  {"@type": ["Product"], "name": "  Band Collar   Oxford Shirt ",
   "image": ["/img/1.jpg", {"@type": "ImageObject", "url": "https://cdn.example/2.jpg"}],
   "offers": [{"@type": "Offer", "price": "49.90", "priceCurrency": "EUR"}]}]}</script>
<script type="application/ld+json">{ this is not json </script>
</head><body><h1>ignored</h1></body></html>"""

OPENGRAPH_PAGE = """<html><head>
<meta property="og:title" content="Skinny Jeans">
<meta property="og:image" content="https://shop.example/img/main.jpg">
<meta property="product:price:amount" content="59">
</head><body></body></html>"""

PLAIN_PAGE = """<html><body>
<nav class="breadcrumb"><a href="/">Home</a> › <a href="/jeans/">Jeans</a> › <span>Wide Leg</span></nav>
<h1 class="product-title">Wide Leg
  Jeans</h1><p class="price">€1.299,00</p>
<div class="gallery">
  <img class="lazy" src="/static/placeholder.gif" data-src="/img/a.jpg">
  <img srcset="/img/b-small.jpg 180w, /img/b-large.jpg 720w, /img/b.jpg 360w" src="/img/b-small.jpg">
  <div data-setbg="/img/c.webp"></div>
  <img src="data:image/gif;base64,R0lGOD">
</div></body></html>"""

CSS_RULES = SelectorRules(
    title="h1.product-title::text",
    breadcrumb="nav.breadcrumb ::text",
    price="p.price::text",
    image_elements=".gallery img, .gallery [data-setbg]",
)


def test_jsonld_with_graph_breadcrumb_and_image_objects() -> None:
    fields = from_jsonld(Selector(text=JSONLD_PAGE), BASE)
    assert fields == ProductFields(
        title="Band Collar Oxford Shirt",
        breadcrumb=("Home", "Shirts"),
        price=49.9,
        image_urls=("https://shop.example/img/1.jpg", "https://cdn.example/2.jpg"),
    )


def test_opengraph_gives_title_price_and_main_image() -> None:
    fields = from_opengraph(Selector(text=OPENGRAPH_PAGE), BASE)
    assert (fields.title, fields.price, fields.image_urls) == (
        "Skinny Jeans",
        59.0,
        ("https://shop.example/img/main.jpg",),
    )


def test_css_prefers_lazy_attributes_and_the_largest_srcset_candidate() -> None:
    fields = from_selectors(Selector(text=PLAIN_PAGE), CSS_RULES, "css", BASE)
    assert fields.title == "Wide Leg Jeans"
    assert fields.breadcrumb == ("Home", "Jeans", "Wide Leg")
    assert fields.price == 1299.0
    assert fields.image_urls == (
        "https://shop.example/img/a.jpg",
        "https://shop.example/img/b-large.jpg",
        "https://shop.example/img/c.webp",
    )


def test_xpath_rules_work_like_css() -> None:
    rules = SelectorRules(
        title="//h1/text()", price="//p[@class='price']/text()", image_elements="//div[@class='gallery']/img"
    )
    fields = from_selectors(Selector(text=PLAIN_PAGE), rules, "xpath", BASE)
    assert fields.title == "Wide Leg Jeans" and fields.price == 1299.0
    assert fields.image_urls[0] == "https://shop.example/img/a.jpg"


def test_methods_fill_each_field_in_order_and_pool_images() -> None:
    page = OPENGRAPH_PAGE.replace("</body>", PLAIN_PAGE.split("<body>")[1])
    fields = extract_product(Selector(text=page), BASE, ExtractRules(methods=("opengraph", "css"), css=CSS_RULES))
    assert fields.title == "Skinny Jeans"  # OpenGraph came first
    assert fields.breadcrumb == ("Home", "Jeans", "Wide Leg")  # only CSS had it
    assert fields.image_urls[0] == "https://shop.example/img/main.jpg" and len(fields.image_urls) == 4


def test_a_page_without_product_data_gives_empty_fields() -> None:
    assert extract_product(Selector(text="<html></html>"), BASE, ExtractRules()) == ProductFields()


@pytest.mark.parametrize(
    ("text", "price"),
    [
        ("€49.99", 49.99),
        ("1.299,00 €", 1299.0),
        ("$1,299.00", 1299.0),
        ("1,299", 1299.0),
        ("12,50", 12.5),
        ("49", 49.0),
        (19, 19.0),
        ("Sold out", None),
        (None, None),
    ],
)
def test_parse_price(text, price) -> None:
    assert parse_price(text) == price


def test_largest_from_srcset_handles_density_descriptors() -> None:
    assert largest_from_srcset("a.jpg 1x, b.jpg 2x") == "b.jpg"
    assert largest_from_srcset("only.jpg") == "only.jpg"


def test_classify_links_separates_products_from_listings() -> None:
    rules = LinkRules(follow=(r"/jeans/(page-\d+\.html)?$",), products=(r"/p/[^/]+\.html$",))
    urls = [
        "https://s/jeans/",
        "https://s/p/a.html",
        "https://s/jeans/page-2.html",
        "https://s/cart/",
        "https://s/p/a.html",
    ]
    assert classify_links(urls, rules) == (["https://s/p/a.html"], ["https://s/jeans/", "https://s/jeans/page-2.html"])


def test_shopify_products_json() -> None:
    data = {
        "products": [
            {
                "title": "Mid Wash Bootcut Jeans",
                "handle": "mid-wash-bootcut",
                "product_type": "Jeans",
                "tags": ["Women"],
                "variants": [{"price": "79.00"}],
                "images": [{"src": "https://cdn.example/x.jpg"}],
            },
            {"title": "no handle is skipped"},
        ]
    }
    ((url, fields),) = products_from_shopify(data, "https://s.example/")
    assert url == "https://s.example/products/mid-wash-bootcut"
    assert fields == ProductFields("Mid Wash Bootcut Jeans", ("Jeans", "Women"), 79.0, ("https://cdn.example/x.jpg",))


LISTING = "https://shop.example/shop.html"

CARDS_PAGE = """<html><body><h2 class="category">Shirts</h2>
<div class="card"><div class="pic set-bg" data-setbg="img/1.jpg"></div>
  <h6><a href="shop-details.html">Band Collar Shirt</a></h6><h5>$49.90</h5></div>
<div class="card"><div class="pic" style="color: red; background-image: url('img/2.jpg')"></div>
  <h6><a href="shop-details.html">Check Shirt</a></h6><h5>$39</h5></div>
<div class="card"><a href="/p/dot-blouse.html"><img src="/thumbs/3.jpg"></a>
  <h6>Dot Blouse</h6><h5>€29,00</h5></div>
<div class="card"><div data-bg="//cdn.example/4.jpg"></div><h6><a href="#">Stripe Shirt</a></h6></div>
<div class="card"><h6>No Photo Shirt</h6></div>
</body></html>"""

CARD_RULES = CardRules(
    selector=".card",
    title="h6 ::text",
    price="h5::text",
    image_elements="[data-setbg], [data-bg], [style], img",
    link="a::attr(href)",
    listing_breadcrumb="h2.category::text",
)


def test_cards_read_images_from_setbg_style_bg_and_img() -> None:
    cards = read_cards(Selector(text=CARDS_PAGE), LISTING, CARD_RULES, ["/p/", "shop-details"])
    assert [card.fields.title for card in cards] == [
        "Band Collar Shirt",
        "Check Shirt",
        "Dot Blouse",
        "Stripe Shirt",
        "No Photo Shirt",
    ]
    assert [card.fields.image_urls for card in cards] == [
        ("https://shop.example/img/1.jpg",),
        ("https://shop.example/img/2.jpg",),
        ("https://shop.example/thumbs/3.jpg",),
        ("https://cdn.example/4.jpg",),
        (),
    ]
    assert [card.fields.price for card in cards] == [49.9, 39.0, 29.0, None, None]
    assert all(card.fields.breadcrumb == ("Shirts",) for card in cards)


def test_only_a_card_s_own_product_page_is_followed() -> None:
    cards = read_cards(Selector(text=CARDS_PAGE), LISTING, CARD_RULES, ["/p/", "shop-details"])
    # Two cards share shop-details.html (a template's one demo page) and one links to "#":
    # neither is the card's own page, so those cards are products on their own.
    assert [card.link for card in cards] == [None, None, "https://shop.example/p/dot-blouse.html", None, None]
    assert cards[0].product_url(LISTING) == "https://shop.example/img/1.jpg"
    assert cards[4].product_url(LISTING).startswith(LISTING + "#card-")
    again = read_cards(Selector(text=CARDS_PAGE), "https://shop.example/shop-2.html", CARD_RULES, ["/p/"])
    assert again[0].product_url("https://shop.example/shop-2.html") == cards[0].product_url(LISTING)


def test_a_product_page_wins_over_its_card() -> None:
    card = ProductFields("Card Title", ("Shirts",), 10.0, ("https://shop.example/thumb.jpg",))
    page = ProductFields("Page Title", (), None, ("https://shop.example/big.jpg",))
    assert page.over(card) == ProductFields("Page Title", ("Shirts",), 10.0, ("https://shop.example/big.jpg",))
    assert ProductFields().over(card) == card


@pytest.mark.parametrize(
    ("style", "url"),
    [
        ("background-image: url(img/a.jpg)", "img/a.jpg"),
        ('background: #fff url("img/b.jpg") no-repeat', "img/b.jpg"),
        ("BACKGROUND-IMAGE:url( 'c.png' );", "c.png"),
        ("color: red", None),
        ("background-image: url()", None),
    ],
)
def test_background_image(style: str, url: str | None) -> None:
    assert background_image(style) == url
