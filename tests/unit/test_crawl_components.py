"""The crawl's Scrapy components on their own, built from a Crawler that is never started: the
backoff retry middleware's retry path, and the sitemap spider's routing by the source's patterns."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from scrapy import Spider
from scrapy.crawler import Crawler
from scrapy.http import Request, Response, XmlResponse
from scrapy.settings import Settings
from scrapy.statscollectors import MemoryStatsCollector
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost

from crawlers.middlewares import BACKOFF_META, BackoffRetryMiddleware
from crawlers.spiders.sitemap import SourceSitemapSpider

SHOP = "https://www.shop.example"


class OneShopSpider(Spider):
    name = "one_shop"


def unstarted_crawler(spider_class: type[Spider], overrides: dict[str, Any]) -> Crawler:
    """The project's settings plus `overrides`, and stats: what a component reads when built."""
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    settings.setdict(overrides, priority="cmdline")
    crawler = Crawler(spider_class, settings)
    crawler.stats = MemoryStatsCollector(crawler)
    return crawler


@pytest.fixture
def retries() -> BackoffRetryMiddleware:
    crawler = unstarted_crawler(OneShopSpider, {"RETRY_TIMES": 3, "BACKOFF_BASE_S": 0.5, "BACKOFF_MAX_S": 1.5})
    crawler.spider = OneShopSpider.from_crawler(crawler)
    return BackoffRetryMiddleware.from_crawler(crawler)


def test_each_retry_of_a_failing_page_waits_longer_until_retries_run_out(retries: BackoffRetryMiddleware) -> None:
    request = Request(f"{SHOP}/p/1.html")
    waits = []
    for _ in range(3):
        retry = retries.process_response(request, Response(request.url, status=503))
        assert isinstance(retry, Request) and retry is not request
        waits.append(retry.meta[BACKOFF_META])
        request = retry
    assert waits == [0.5, 1.0, 1.5]  # doubling, capped at BACKOFF_MAX_S
    last = Response(request.url, status=503)
    assert retries.process_response(request, last) is last  # given up: the 503 goes on to the spider
    stats = retries.crawler.stats
    assert stats.get_value("retry/count") == 3 and stats.get_value("retry/max_reached") == 1


def test_a_connection_error_is_retried_after_a_wait_and_a_bug_is_not(retries: BackoffRetryMiddleware) -> None:
    request = Request(f"{SHOP}/")
    retry = retries.process_exception(request, ConnectionLost())
    assert isinstance(retry, Request)
    assert retry.meta["retry_times"] == 1 and retry.meta[BACKOFF_META] == 0.5
    assert retries.process_exception(request, ValueError("a bug in a callback")) is None


@pytest.mark.parametrize(
    ("status", "meta"),
    [(200, {}), (404, {}), (503, {"dont_retry": True})],
    ids=["ok", "not-retryable", "dont_retry"],
)
def test_responses_not_to_retry_pass_through_untouched(
    retries: BackoffRetryMiddleware, status: int, meta: dict[str, Any]
) -> None:
    request = Request(f"{SHOP}/", meta=meta)
    response = Response(request.url, status=status)
    assert retries.process_response(request, response) is response
    assert BACKOFF_META not in request.meta


def test_a_retry_waits_its_backoff_before_going_out(retries: BackoffRetryMiddleware) -> None:
    request = Request(f"{SHOP}/", meta={BACKOFF_META: 0.05})
    wait = retries.process_request(request)
    # A coroutine: Scrapy deprecates Deferreds returned from downloader middlewares.
    assert inspect.isawaitable(wait) and not isinstance(wait, Deferred)
    assert BACKOFF_META not in request.meta  # taken: the same request never waits twice
    started = time.monotonic()
    asyncio.run(wait)
    assert time.monotonic() - started >= 0.05
    assert retries.process_request(Request(f"{SHOP}/")) is None  # a first try goes out at once


SITEMAP_SOURCE = {
    "name": "mapped_shop",
    "spider": "sitemap",
    "sitemap_urls": [f"{SHOP}/sitemap.xml"],
    "allowed_domains": ["shop.example"],
    "links": {"products": [r"/p/[^/?#]+\.html$"]},
    "extract": {"methods": ["jsonld"]},
}


def sitemap_spider(sources_dir: Path, params_path: Path, **arguments: Any) -> SourceSitemapSpider:
    (sources_dir / "mapped_shop.yaml").write_text(yaml.safe_dump(SITEMAP_SOURCE))
    crawler = unstarted_crawler(SourceSitemapSpider, {})
    return SourceSitemapSpider.from_crawler(
        crawler, source="mapped_shop", sources_dir=str(sources_dir), params=str(params_path), **arguments
    )


def sitemap(kind: str, paths: list[str]) -> bytes:
    """A `urlset` or `sitemapindex` document listing `paths` of the shop."""
    entry = "url" if kind == "urlset" else "sitemap"
    entries = "".join(f"<{entry}><loc>{SHOP}{path}</loc></{entry}>" for path in paths)
    return (
        f'<?xml version="1.0"?><{kind} xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</{kind}>'.encode()
    )


def start_requests(spider: Spider) -> list[Request]:
    async def collect() -> list[Request]:
        return [request async for request in spider.start()]

    return asyncio.run(collect())


def test_sitemap_spider_sends_product_pages_to_parse_product_and_skips_the_rest(
    tmp_path: Path, shipped_params_path: Path
) -> None:
    spider = sitemap_spider(tmp_path, shipped_params_path)
    [start] = start_requests(spider)
    assert start.url == f"{SHOP}/sitemap.xml"
    listed = sitemap("urlset", ["/p/shirt-1.html", "/c/shirts.html", "/p/jeans-2.html", "/about.html"])
    routed = [(request.url, request.callback) for request in start.callback(XmlResponse(start.url, body=listed))]
    assert routed == [
        (f"{SHOP}/p/shirt-1.html", spider.parse_product),
        (f"{SHOP}/p/jeans-2.html", spider.parse_product),
    ]


def test_sitemap_spider_follows_nested_sitemaps_and_stops_at_the_page_limit(
    tmp_path: Path, shipped_params_path: Path
) -> None:
    spider = sitemap_spider(tmp_path, shipped_params_path, max_pages=2)
    [start] = start_requests(spider)
    [nested] = start.callback(XmlResponse(start.url, body=sitemap("sitemapindex", ["/sitemap-products.xml"])))
    assert nested.url == f"{SHOP}/sitemap-products.xml"
    listed = sitemap("urlset", ["/p/1.html", "/p/2.html", "/p/3.html"])
    assert [request.url for request in nested.callback(XmlResponse(nested.url, body=listed))] == [
        f"{SHOP}/p/1.html",
        f"{SHOP}/p/2.html",
    ]
