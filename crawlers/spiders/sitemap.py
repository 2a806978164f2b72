"""Sitemap spider: product pages straight from the shop's sitemap(s), filtered by the source's
product link patterns."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.spiders import SitemapSpider
from scrapy.spiders.sitemap import regex

from crawlers.source_spider import SourceSpider


class SourceSitemapSpider(SourceSpider, SitemapSpider):
    name = "sitemap"

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SourceSitemapSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.sitemap_urls = list(spider.source.sitemap_urls)
        patterns = spider.source.links.products if spider.source.links else ("",)
        spider._cbs = [(regex(pattern), spider.parse_product) for pattern in patterns]
        return spider

    def sitemap_filter(self, entries: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Nested sitemaps, and product pages up to the page limit."""
        for entry in entries:
            url = entry.get("loc", "")
            if url.endswith((".xml", ".xml.gz")) or (
                any(pattern.search(url) for pattern, _ in self._cbs) and self.page_request(url, self.parse_product)
            ):
                yield entry

    def parse_product(self, response: Response) -> Iterator[Any]:
        self.count_page()
        yield self.product_from_page(response)
