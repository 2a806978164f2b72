"""Item pipelines (not `pipelines.py`: run from this folder, that name would shadow the
`pipelines` package): drop products with nothing to learn from, store images once by content, and
append new images to the source's manifest."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, IgnoreRequest
from scrapy.http import Request, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.pipelines.images import ImagesPipeline
from twisted.python.failure import Failure

from crawlers.items import ProductItem
from pipelines.manifest import (
    EXTENSIONS,
    ImageRejected,
    ManifestRow,
    append_rows,
    inspect_image,
    iter_manifests,
    manifest_path,
    read_manifest,
)

logger = logging.getLogger(__name__)


class RequireProductFieldsPipeline:
    """A product without a title or an image URL teaches nothing: drop it, counted by reason."""

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RequireProductFieldsPipeline:
        return cls(crawler)

    def process_item(self, item: ProductItem, spider: Any = None) -> ProductItem:
        reason = "no_images" if not item.image_urls else "no_title" if not item.title else None
        if reason:
            self.stats.inc_value(f"seamline/products/dropped/{reason}")
            raise DropItem(f"{reason}: {item.product_url}")
        return item


class ContentAddressedImagesPipeline(ImagesPipeline):
    """Scrapy's ImagesPipeline, storing the original bytes at `<source>/images/<sha256>.<ext>`.

    The path depends on the bytes, so nothing can be looked up before downloading: instead,
    image URLs the manifest already holds are not requested at all (next week's crawl fetches
    only what is new). Every rejected image is counted under its reason.
    """

    def __init__(self, store_uri: str, *, crawler: Crawler) -> None:
        super().__init__(store_uri, crawler=crawler)
        settings = crawler.settings
        self.stats = crawler.stats
        self.min_side = settings.getint("SEAMLINE_MIN_IMAGE_SIDE", 64)
        self.max_pixels = settings.getint("SEAMLINE_MAX_IMAGE_PIXELS", 40_000_000)
        self.data_root = Path(store_uri)
        self.max_images = settings.getint("SEAMLINE_MAX_IMAGES", 0) or None
        assert crawler.spider is not None  # the spider is made before its pipelines
        self.source = crawler.spider.source.name
        self.known_urls = {row.image_url for row in read_manifest(manifest_path(self.data_root, self.source)).rows}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ContentAddressedImagesPipeline:
        # IMAGES_STORE is the local data root, written by `_check_and_store`: none of Scrapy's
        # remote stores (S3, GCS, FTP) is ever used, so there are no credentials to hand them.
        return cls(crawler.settings["IMAGES_STORE"], crawler=crawler)

    def get_media_requests(self, item: ProductItem, info: Any) -> list[Request]:
        requests = []
        for url in item.image_urls:
            if url in self.known_urls:
                self.stats.inc_value("seamline/images/known_url")
                continue
            if self.max_images is not None and self.stats.get_value("seamline/images/requested", 0) >= self.max_images:
                self.stats.inc_value("seamline/images/over_limit")
                continue
            self.stats.inc_value("seamline/images/requested")
            # Images bypass the HTTP cache: their bytes live in the image store already.
            requests.append(Request(url, callback=NO_CALLBACK, meta={"dont_cache": True, "seamline_image": True}))
        item.requested = [request.url for request in requests]  # results come back in this order
        return requests

    def media_to_download(self, request: Request, info: Any, *, item: Any = None) -> None:
        return None  # always download: a content address can't be checked before the content

    async def media_downloaded(
        self, response: Response, request: Request, info: Any, *, item: Any = None
    ) -> dict[str, Any]:
        # A rejection is an expected outcome, not an error: it comes back as a result, so
        # Scrapy's media pipeline does not log it as a failure with a traceback.
        if response.status != 200:
            return {"url": request.url, "rejected": f"http_{response.status}", "detail": ""}
        # Inline, not in a worker thread: measured slower on two cores (bench/crawl_throughput.py).
        return {"url": request.url, **self._check_and_store(response.body)}

    def _check_and_store(self, body: bytes) -> dict[str, Any]:
        try:
            facts = inspect_image(body, min_side=self.min_side, max_pixels=self.max_pixels)
        except ImageRejected as rejection:
            return {"rejected": rejection.reason, "detail": str(rejection)}
        digest = hashlib.sha256(body).hexdigest()
        path = f"{self.source}/images/{digest}.{EXTENSIONS[facts.format]}"
        target = self.data_root / path
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(body)
            partial.replace(target)  # a reader never sees half an image
        return {
            "path": path,
            "checksum": digest,
            "status": "downloaded",
            "width": facts.width,
            "height": facts.height,
            "format": facts.format,
            "phash": facts.phash,
            "bytes": len(body),
        }

    def media_failed(self, failure: Failure, request: Request, info: Any) -> None:
        if isinstance(failure.value, IgnoreRequest):
            # Scrapy's own handling of a filtered request (offsite, robots.txt): it raises, and
            # item_completed counts it as "filtered" (Scrapy 2.18+ also logs it without a traceback).
            super().media_failed(failure, request, info)
        raise ImageRejected(f"network_{type(failure.value).__name__}", str(failure.value))

    def item_completed(self, results: list[tuple[bool, Any]], item: ProductItem, info: Any) -> ProductItem:
        urls = item.requested
        for url, (ok, result) in zip(urls, results):
            if ok and "rejected" not in result:
                item.images.append(result)
                continue
            if ok:
                reason = result["rejected"]
            else:
                error = result.value if isinstance(result, Failure) else result
                reason = error.reason if isinstance(error, ImageRejected) else "filtered"
            item.rejected.append({"url": url, "reason": reason})
            self.stats.inc_value(f"seamline/images/rejected/{reason}")
            logger.warning("image rejected (%s): %s on %s", reason, url, item.product_url)
        return item


class ManifestPipeline:
    """Append one manifest row per image seen for the first time, across every source."""

    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats
        self.data_root = Path(crawler.settings["SEAMLINE_DATA_ROOT"])
        assert crawler.spider is not None
        self.source = crawler.spider.source.name
        self.path = manifest_path(self.data_root, self.source)
        self.known_hashes: set[str] = set()
        for manifest in iter_manifests(self.data_root):
            read = read_manifest(manifest)
            if read.skipped_lines:
                logger.warning(
                    "%s: skipped unreadable lines %s (torn by an interrupted crawl?)", manifest, read.skipped_lines
                )
            self.known_hashes.update(row.sha256 for row in read.rows)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ManifestPipeline:
        return cls(crawler)

    def process_item(self, item: ProductItem, spider: Any = None) -> ProductItem:
        rows = []
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for image in item.images:
            if image["checksum"] in self.known_hashes:
                self.stats.inc_value("seamline/images/duplicate")
                continue
            self.known_hashes.add(image["checksum"])
            rows.append(
                ManifestRow(
                    sha256=image["checksum"],
                    path=image["path"],
                    source=self.source,
                    image_url=image["url"],
                    product_url=item.product_url,
                    title=item.title,
                    breadcrumb=item.breadcrumb,
                    item_hint=item.item_hint,
                    price=item.price,
                    width=image["width"],
                    height=image["height"],
                    format=image["format"],
                    bytes=image["bytes"],
                    phash=image["phash"],
                    crawled_at=now,
                )
            )
        written = append_rows(self.path, rows)
        self.stats.inc_value("seamline/images/new", written)
        return item
