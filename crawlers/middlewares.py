"""Downloader middlewares: retries that back off exponentially instead of hammering a shop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from scrapy import Spider
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings

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

    # `spider` only keeps Scrapy's signatures: being optional, Scrapy (2.14+) does not pass it,
    # and it is not forwarded, since RetryMiddleware warns when given one.
    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Request | Response:
        outcome = super().process_response(request, response)
        return self.delayed(outcome) if isinstance(outcome, Request) else outcome

    def process_exception(
        self, request: Request, exception: Exception, spider: Spider | None = None
    ) -> Request | Response | None:
        outcome = super().process_exception(request, exception)
        return self.delayed(outcome) if isinstance(outcome, Request) else outcome

    def delayed(self, retry: Request) -> Request:
        """Scrapy's retry rules return a Request only to retry: it waits before going out, longer
        with each retry of the same page."""
        retry.meta[BACKOFF_META] = backoff_delay(retry.meta.get("retry_times", 1), self.base_s, self.max_s)
        return retry

    def process_request(self, request: Request, spider: Spider | None = None) -> Coroutine[Any, Any, None] | None:
        # Plain (not async) so the common no-wait path costs no coroutine per request. The wait is a
        # coroutine, not a Twisted Deferred (deprecated from middlewares since Scrapy 2.14); Scrapy
        # runs on its default asyncio reactor here, so asyncio.sleep waits without blocking it.
        delay = request.meta.pop(BACKOFF_META, 0.0)
        return asyncio.sleep(delay) if delay else None
