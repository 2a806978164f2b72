"""Crawl summary: what a crawl did, written as JSON beside the manifest when the spider closes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.spiders import Spider

SUMMARY_NAME = "crawl_summary.json"
HISTORY_NAME = "crawls.jsonl"


def summarise(stats: dict[str, Any], source: str, duration_s: float) -> dict[str, Any]:
    """The data engineer's view of Scrapy's stats: counts by outcome and errors by type."""

    def grouped(prefix: str) -> dict[str, int]:
        return {key[len(prefix) :]: int(value) for key, value in sorted(stats.items()) if key.startswith(prefix)}

    errors = grouped("downloader/exception_type_count/")
    # A shop without robots.txt answers its request with a 404: allowed, and not an error.
    robots = grouped("robotstxt/response_status_count/")
    errors.update(
        {
            f"http_{code}": n - robots.get(code, 0)
            for code, n in grouped("downloader/response_status_count/").items()
            if not code.startswith(("2", "3")) and n > robots.get(code, 0)
        }
    )
    errors.update({f"spider_{name}": n for name, n in grouped("spider_exceptions/").items()})
    if stats.get("robotstxt/forbidden"):
        errors["robots_disallowed"] = int(stats["robotstxt/forbidden"])
    if stats.get("offsite/filtered"):
        errors["offsite_filtered"] = int(stats["offsite/filtered"])
    return {
        "source": source,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "finish_reason": stats.get("finish_reason", "unknown"),
        "duration_s": round(duration_s, 2),
        "pages": int(stats.get("seamline/pages", 0)),
        "products": int(stats.get("seamline/products", 0)),
        "products_dropped": grouped("seamline/products/dropped/"),
        # page: a product page; card: a listing card, a product on its own; card+page: a card followed to its page
        "products_found_as": grouped("seamline/found_as/"),
        "images": {
            "new": int(stats.get("seamline/images/new", 0)),
            "duplicate": int(stats.get("seamline/images/duplicate", 0)),
            "known_url": int(stats.get("seamline/images/known_url", 0)),
            "over_limit": int(stats.get("seamline/images/over_limit", 0)),
            "rejected": grouped("seamline/images/rejected/"),
        },
        "requests": int(stats.get("downloader/request_count", 0)),
        "bytes": int(stats.get("downloader/response_bytes", 0)),
        "http_cache_hits": int(stats.get("httpcache/hit", 0)),
        "errors": errors,
    }


def stores_images(settings: Any) -> bool:
    """Whether this crawl writes to the data root (`scrapy check` turns item pipelines off)."""
    return "crawlers.item_pipelines.ManifestPipeline" in settings.getdict("ITEM_PIPELINES")


class CrawlSummary:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.started = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CrawlSummary:
        extension = cls(crawler)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self, spider: Spider) -> None:
        self.started = time.monotonic()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        settings = self.crawler.settings
        if not settings["SEAMLINE_SUMMARY_DIR"] and not stores_images(settings):
            return  # `scrapy check` and other runs that store nothing leave no summary either
        source = getattr(getattr(spider, "source", None), "name", spider.name)
        stats = dict(self.crawler.stats.get_stats())
        stats["finish_reason"] = reason
        summary = summarise(stats, source, time.monotonic() - self.started)
        # Beside the data, not inside it: an unchanged crawl must leave data/raw/<source> (a DVC
        # output) unchanged, so the stages after it stay up to date.
        out = Path(settings["SEAMLINE_SUMMARY_DIR"] or Path(settings["SEAMLINE_REPORTS_ROOT"]) / source)
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if not settings.getbool("SEAMLINE_DRY_RUN"):
            with (out / HISTORY_NAME).open("a", encoding="utf-8") as history:
                history.write(json.dumps(summary, sort_keys=True) + "\n")
