"""Retry back-off and the crawl summary built from Scrapy's stats."""

from crawlers.extensions import summarise
from crawlers.middlewares import backoff_delay


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n, 0.5, 3.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_summary_groups_outcomes_and_errors() -> None:
    stats = {
        "seamline/pages": 10,
        "seamline/products": 8,
        "seamline/images/new": 12,
        "seamline/images/duplicate": 1,
        "seamline/images/rejected/http_404": 2,
        "seamline/images/rejected/truncated": 1,
        "seamline/products/dropped/no_images": 1,
        "downloader/response_status_count/200": 30,
        "downloader/response_status_count/404": 2,
        "downloader/exception_type_count/twisted.internet.error.ConnectionRefusedError": 1,
        "robotstxt/forbidden": 3,
        "offsite/filtered": 2,
        "downloader/request_count": 33,
        "finish_reason": "finished",
    }
    summary = summarise(stats, "demo", 1.234)
    assert summary["images"] == {
        "new": 12,
        "duplicate": 1,
        "known_url": 0,
        "over_limit": 0,
        "rejected": {"http_404": 2, "truncated": 1},
    }
    assert summary["products_dropped"] == {"no_images": 1}
    assert summary["errors"] == {
        "twisted.internet.error.ConnectionRefusedError": 1,
        "http_404": 2,
        "robots_disallowed": 3,
        "offsite_filtered": 2,
    }
    assert (summary["pages"], summary["requests"], summary["duration_s"]) == (10, 33, 1.23)
