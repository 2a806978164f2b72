"""Sitemap spider: product pages straight from the shop's sitemap(s), filtered by the source's
product link patterns."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from scrapy.http import Response
from scrapy.spiders import SitemapSpider

from crawlers.source_config import SourceConfig
from crawlers.source_spider import SourceSpider


class SourceSitemapSpider(SourceSpider, SitemapSpider):
    name = "sitemap"

    def __init__(self, *args: Any, source: SourceConfig, **kwargs: Any) -> None:
        # SitemapSpider reads sitemap_rules once, in its __init__: set from the source before it runs.
        patterns = source.links.products if source.links else ("",)
        self.sitemap_urls = list(source.sitemap_urls)
        self.sitemap_rules = [(pattern, "parse_product") for pattern in patterns]
        self.product_patterns = [re.compile(pattern) for pattern in patterns]
        super().__init__(*args, source=source, **kwargs)

    def sitemap_filter(self, entries: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Nested sitemaps, and product pages up to the page limit."""
        for entry in entries:
            url = entry.get("loc", "")
            if url.endswith((".xml", ".xml.gz")) or (
                any(pattern.search(url) for pattern in self.product_patterns)
                and self.page_request(url, self.parse_product)
            ):
                yield entry

    def parse_product(self, response: Response) -> Iterator[Any]:
        self.count_page()
        yield self.product_from_page(response)
