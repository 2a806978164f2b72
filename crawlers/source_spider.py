"""What every Seamline spider shares: the source YAML, its settings, page limits, and turning
a page's extracted fields into a ProductItem. Spiders themselves only route."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import Crawler
from scrapy.http import Request, Response

from crawlers.extensions import stores_images
from crawlers.extract import ProductFields, extract_product
from crawlers.items import ProductItem
from crawlers.source_config import SOURCES_DIR, SourceConfig, item_hint, list_source_files, load_source, source_file
from pipelines.config import load_params

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def apply_source_settings(crawler: Crawler, source: SourceConfig, params_path: Path, profile: str | None) -> int:
    """Set the crawl's settings from params.yaml `crawl` and the source's overrides; returns the
    page limit. Runs before Scrapy freezes the settings."""
    crawl = load_params(params_path, profile).crawl
    settings = crawler.settings
    politeness = source.politeness

    def choose(override: Any, default: Any) -> Any:
        return default if override is None else override

    settings.set("USER_AGENT", crawl.user_agent, priority="spider")
    settings.set("ROBOTSTXT_OBEY", crawl.obey_robots, priority="spider")
    settings.set("RETRY_TIMES", crawl.retry_times, priority="spider")
    settings.set(
        "CONCURRENT_REQUESTS_PER_DOMAIN",
        choose(politeness.concurrent_requests_per_domain, crawl.concurrent_requests_per_domain),
        priority="spider",
    )
    settings.set("DOWNLOAD_DELAY", choose(politeness.download_delay_s, crawl.download_delay_s), priority="spider")
    settings.set("AUTOTHROTTLE_ENABLED", choose(politeness.autothrottle, crawl.autothrottle), priority="spider")
    settings.set("SEAMLINE_MIN_IMAGE_SIDE", crawl.min_image_side_px, priority="spider")
    settings.set("SEAMLINE_MAX_IMAGE_PIXELS", crawl.max_image_pixels, priority="spider")
    data_root = Path(settings.get("SEAMLINE_DATA_ROOT"))
    if not data_root.is_absolute():
        data_root = PROJECT_ROOT / data_root
    settings.set("SEAMLINE_DATA_ROOT", str(data_root), priority="spider")
    settings.set("IMAGES_STORE", str(data_root), priority="spider")
    reports_root = Path(settings.get("SEAMLINE_REPORTS_ROOT"))
    settings.set(
        "SEAMLINE_REPORTS_ROOT",
        str(reports_root if reports_root.is_absolute() else PROJECT_ROOT / reports_root),
        priority="spider",
    )
    cache_root = Path(settings.get("SEAMLINE_CACHE_ROOT"))
    settings.set(
        "HTTPCACHE_DIR",
        str((cache_root if cache_root.is_absolute() else PROJECT_ROOT / cache_root) / source.name),
        priority="spider",
    )
    settings.set("SEAMLINE_MAX_IMAGES", source.limits.max_images or crawl.max_images, priority="spider")
    if not stores_images(settings):
        settings.set("HTTPCACHE_ENABLED", False, priority="cmdline")  # a dry run leaves no cache behind
    return source.limits.max_pages or crawl.max_pages


def default_source(spider: str, scheduled: tuple[str, ...], sources_dir: Path) -> SourceConfig:
    """For `scrapy crawl SPIDER` / `scrapy check` without `-a source=`: the first weekly source
    for this spider, else the first source file for it."""
    candidates = [source_file(name, sources_dir) for name in scheduled] + list_source_files(sources_dir)
    for path in candidates:
        source = load_source(path)
        if source.spider == spider:
            return source
    raise ValueError(f"no source in {sources_dir} uses the {spider!r} spider; pass -a source=NAME")


class SourceSpider(scrapy.Spider):
    """Base of the generic spiders: `-a source=NAME` picks crawlers/sources/NAME.yaml (default:
    see `default_source`), `-a max_pages=N` caps the pages fetched."""

    source: SourceConfig
    max_pages: int

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SourceSpider:
        params_path = Path(
            kwargs.pop("params", None) or crawler.settings.get("SEAMLINE_PARAMS") or PROJECT_ROOT / "params.yaml"
        )
        profile = kwargs.pop("profile", None)
        sources_dir = Path(kwargs.pop("sources_dir", None) or SOURCES_DIR)
        name = kwargs.pop("source", None)
        source = (
            load_source(source_file(name, sources_dir))
            if name
            else default_source(cls.name, load_params(params_path, profile).crawl.sources, sources_dir)
        )
        if source.spider != cls.name:
            raise ValueError(f"source {name!r} is for spider {source.spider!r}, not {cls.name!r}")
        page_limit = apply_source_settings(crawler, source, params_path, profile)
        max_pages = int(kwargs.pop("max_pages", None) or page_limit)
        # As spider arguments, so each spider's __init__ already has its source (the sitemap
        # spider's rules come from it).
        spider = super().from_crawler(crawler, *args, **kwargs, source=source, max_pages=max_pages)
        spider.allowed_domains = list(source.allowed_domains)
        spider.scheduled_pages: set[str] = set()
        spider.cards_seen: set[str] = set()
        return spider

    def page_request(
        self, url: str, callback: Callable[..., Any], cb_kwargs: dict[str, Any] | None = None
    ) -> Request | None:
        """A request for a page not yet scheduled, or None once the page or image limit is reached."""
        if url in self.scheduled_pages or len(self.scheduled_pages) >= self.max_pages:
            return None
        if self.crawler.stats.get_value("seamline/images/over_limit"):
            return None
        self.scheduled_pages.add(url)
        return Request(url, callback=callback, cb_kwargs=cb_kwargs)

    def count_page(self) -> None:
        self.crawler.stats.inc_value("seamline/pages")

    def product_item(
        self, url: str, fields: ProductFields, *, found_as: str = "page", hint_url: str | None = None
    ) -> ProductItem:
        """`hint_url` is the URL the item hints' `url` pattern reads: a card's listing page, whose
        path names the category, rather than its image URL."""
        self.crawler.stats.inc_value("seamline/products")
        self.crawler.stats.inc_value(f"seamline/found_as/{found_as}")
        breadcrumb = " > ".join(fields.breadcrumb)
        return ProductItem(
            source=self.source.name,
            product_url=url,
            title=fields.title,
            breadcrumb=breadcrumb,
            price=fields.price,
            item_hint=item_hint(self.source.item_hints, hint_url or url, fields.title, breadcrumb),
            image_urls=list(fields.image_urls),
            found_as=found_as,
        )

    def product_from_page(self, response: Response, card: ProductFields | None = None) -> ProductItem:
        """The product a page shows; `card` is what its listing card said, under the page's fields."""
        fields = extract_product(response.selector, response.url, self.source.extract)
        if card is None:
            return self.product_item(response.url, fields)
        return self.product_item(response.url, fields.over(card), found_as="card+page")
