"""Shopify spider: products from the platform's public `/products.json` pages, no HTML."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin

from scrapy.http import Request, Response

from crawlers.extract import products_from_shopify
from crawlers.source_spider import SourceSpider

PAGE_SIZE = 250  # Shopify's largest page


class ShopifySpider(SourceSpider):
    name = "shopify"

    def _page(self, shop_url: str, number: int) -> Request | None:
        url = urljoin(shop_url, f"/products.json?limit={PAGE_SIZE}&page={number}")
        request = self.page_request(url, self.parse)
        if request is not None:
            request.cb_kwargs.update(shop_url=shop_url, number=number)
        return request

    async def start(self) -> AsyncIterator[Any]:
        for shop_url in self.source.start_urls:
            request = self._page(shop_url, 1)
            if request is not None:
                yield request

    def parse(self, response: Response, shop_url: str = "", number: int = 1) -> Iterator[Any]:
        """Route one products.json page: its products as items, then the next page.

        @demo_url /products.json?limit=250&page=1
        @returns items 1
        @returns requests 1 1
        @scrapes title product_url image_urls
        """
        self.count_page()
        products = products_from_shopify(json.loads(response.text), shop_url or response.url)
        for url, fields in products:
            yield self.product_item(url, fields)
        if products:
            request = self._page(shop_url or response.url, number + 1)
            if request is not None:
                yield request
