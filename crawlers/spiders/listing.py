"""Listing spider: start pages → listing and pagination links → product pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from scrapy.http import Request, Response

from crawlers.extract import classify_links, page_links
from crawlers.source_spider import SourceSpider


class ListingSpider(SourceSpider):
    name = "listing"

    async def start(self) -> AsyncIterator[Any]:
        for url in self.source.start_urls:
            request = self.page_request(url, self.parse)
            if request is not None:
                yield request

    def parse(self, response: Response) -> Iterator[Any]:
        """Route a listing page: product links to parse_product, other listings back here.

        @demo_url /
        @returns requests 2
        """
        self.count_page()
        assert self.source.links is not None  # guaranteed for listing sources
        products, follow = classify_links(page_links(response.selector, response.url), self.source.links)
        for url, callback in [*((u, self.parse_product) for u in products), *((u, self.parse) for u in follow)]:
            request: Request | None = self.page_request(url, callback)
            if request is not None:
                yield request

    def parse_product(self, response: Response) -> Iterator[Any]:
        self.count_page()
        yield self.product_from_page(response)
