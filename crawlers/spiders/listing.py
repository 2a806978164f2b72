"""Listing spider: start pages → listing and pagination links → product pages, and the product
cards listings show (a product on its own when it has no page)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy.http import Request, Response

from crawlers.extract import ProductFields, classify_links, page_links, read_cards
from crawlers.source_config import LinkRules
from crawlers.source_spider import SourceSpider


class ListingSpider(SourceSpider):
    name = "listing"

    async def start(self) -> AsyncIterator[Any]:
        for url in self.source.start_urls:
            request = self.page_request(url, self.parse)
            if request is not None:
                yield request

    def parse(self, response: Response) -> Iterator[Any]:
        """Route a listing page: its cards (followed to their own page, or products themselves),
        product links to parse_product, other listings back here.

        @demo_url /
        @returns requests 2
        """
        self.count_page()
        links = self.source.links or LinkRules()
        yield from self.cards(response, links)
        products, follow = classify_links(page_links(response.selector, response.url), links)
        for url, callback in [*((u, self.parse_product) for u in products), *((u, self.parse) for u in follow)]:
            request: Request | None = self.page_request(url, callback)
            if request is not None:
                yield request

    def cards(self, response: Response, links: LinkRules) -> Iterator[Any]:
        """Each card first, so a card's own page is requested with the card's fields (the plain
        product link to the same page is then already scheduled)."""
        if self.source.cards is None:
            return
        for card in read_cards(response.selector, response.url, self.source.cards, links.products):
            if card.link is None:
                product_url = card.product_url(response.url)
                if product_url in self.cards_seen:  # one card on several listings ("new", "shirts")
                    continue
                self.cards_seen.add(product_url)
                yield self.product_item(product_url, card.fields, found_as="card", hint_url=response.url)
                continue
            request = self.page_request(card.link, self.parse_product, {"card": card.fields})
            if request is not None:
                yield request

    def parse_product(self, response: Response, card: ProductFields | None = None) -> Iterator[Any]:
        self.count_page()
        yield self.product_from_page(response, card)
