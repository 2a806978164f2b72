"""Downloader middlewares: retries that back off exponentially instead of hammering a shop."""

from __future__ import annotations

from typing import Any

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request
from scrapy.settings import BaseSettings
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

BACKOFF_META = "seamline_backoff_s"


def backoff_delay(retry_number: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before retry `retry_number` (1-based): base · 2^(n-1), capped."""
    return min(max_s, base_s * 2 ** max(retry_number - 1, 0))


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retry rules, plus a growing wait before each retry goes out."""

    def __init__(self, settings: BaseSettings):
        super().__init__(settings)
        self.base_s = settings.getfloat("BACKOFF_BASE_S", 0.5)
        self.max_s = settings.getfloat("BACKOFF_MAX_S", 30.0)

    def _retry(self, request: Request, reason: Any) -> Request | None:
        retry = super()._retry(request, reason)
        if retry is not None:
            retry.meta[BACKOFF_META] = backoff_delay(retry.meta.get("retry_times", 1), self.base_s, self.max_s)
        return retry

    def process_request(self, request: Request, spider: Any = None) -> Deferred[None] | None:
        # Plain (not async) so the common no-wait path costs no task per request.
        delay = request.meta.pop(BACKOFF_META, 0.0)
        if delay:
            from twisted.internet import reactor

            return deferLater(reactor, delay, lambda: None)
        return None
