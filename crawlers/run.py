"""Run one crawl in this process: `python -m crawlers.run crawl NAME` or `... check NAME`.

Twisted's reactor cannot restart within a process, so the CLI and Prefect tasks call this as a
child process. Exit status: 0 done, 1 nothing could be fetched, 2 bad source or params, 3 another
crawl of the source is running (data/.locks/crawl-<source>.lock names it; `--wait` waits for it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawlers.extensions import SUMMARY_NAME
from crawlers.source_config import SOURCES_DIR, SourceConfig, SourceError, load_source, source_file
from crawlers.source_spider import PROJECT_ROOT
from crawlers.spiders.listing import ListingSpider
from crawlers.spiders.shopify import ShopifySpider
from crawlers.spiders.sitemap import SourceSitemapSpider
from pipelines.config import ParamsError, load_params
from pipelines.locks import LockHeld, exclusive, locks_dir

SPIDERS = {"listing": ListingSpider, "sitemap": SourceSitemapSpider, "shopify": ShopifySpider}


def project_settings(overrides: dict[str, object]) -> Settings:
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    settings.setdict(overrides, priority="cmdline")
    return settings


# Progress lines worth showing even when only warnings are asked for.
_PROGRESS_LOGGERS = frozenset({"scrapy.extensions.logstats"})


def _log_to_stderr(level: str) -> None:
    """Our own stderr handler instead of Scrapy's (LOG_ENABLED is off): warnings and errors as
    one line each, no tracebacks (a refused connection is an outcome to report, not a crash;
    `--log-level DEBUG` keeps them), plus the periodic progress line."""
    threshold = logging.getLevelName(level)

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno < threshold and not (record.name in _PROGRESS_LOGGERS and record.levelno >= logging.INFO):
            return False
        if threshold > logging.DEBUG:
            record.exc_info = None
            record.exc_text = None
        return True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(keep)
    logging.getLogger().addHandler(handler)


LOCKED = 3


def run(args: argparse.Namespace) -> int:
    try:
        load_params(Path(args.params), args.profile)  # fail on bad params before any request
        source = load_source(source_file(args.source, Path(args.sources_dir)))
    except (SourceError, ParamsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "check":  # stores nothing: no lock to take
        return crawl(args, source)
    lock = locks_dir(Path(args.data_root)) / f"crawl-{source.name}.lock"
    try:
        # Two crawls of one source append to one manifest: each adds every image the other has
        # not written yet (duplicate rows), and their appends can interleave (a torn line).
        with exclusive(lock, f"the crawl of {source.name}", wait=args.wait, progress=_stderr):
            return crawl(args, source)
    except LockHeld as error:
        print(f"error: {error}", file=sys.stderr)
        return LOCKED


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def crawl(args: argparse.Namespace, source: SourceConfig) -> int:
    """One crawl (or check) of a loaded source in this process; its exit status."""
    params_path = Path(args.params)
    data_root = Path(args.data_root).resolve()
    overrides: dict[str, object] = {
        "SEAMLINE_DATA_ROOT": str(data_root),
        "SEAMLINE_CACHE_ROOT": str(Path(args.cache_root).resolve() if args.cache_root else data_root.parent / "cache"),
        "SEAMLINE_REPORTS_ROOT": str(Path(args.reports_root).resolve()),
        "LOG_LEVEL": "DEBUG" if args.log_level == "DEBUG" else "INFO",
        "LOG_ENABLED": False,
        "LOGSTATS_INTERVAL": 10.0,
    }
    if args.command == "check":
        summary_dir = Path(args.out).resolve().parent
        overrides.update(
            SEAMLINE_DRY_RUN=True,
            SEAMLINE_SUMMARY_DIR=str(summary_dir),
            ITEM_PIPELINES={},
            HTTPCACHE_ENABLED=False,
            CLOSESPIDER_ITEMCOUNT=args.products,
            FEEDS={str(Path(args.out).resolve()): {"format": "jsonlines", "overwrite": True}},
        )
        max_pages = args.products * 4 + 4
    else:
        summary_dir = Path(args.reports_root).resolve() / source.name
        max_pages = args.max_pages
    process = CrawlerProcess(project_settings(overrides))
    _log_to_stderr(args.log_level)
    process.crawl(
        SPIDERS[source.spider],
        source=source.name,
        sources_dir=args.sources_dir,
        params=str(params_path),
        profile=args.profile,
        max_pages=max_pages,
    )
    process.start()
    summary_path = summary_dir / SUMMARY_NAME
    if not summary_path.exists():
        print(f"error: the crawl of {source.name} ended before it started (see the log above)", file=sys.stderr)
        return 1
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    if summary["pages"] == 0:
        errors = ", ".join(f"{kind} {n}" for kind, n in summary["errors"].items()) or "no response"
        print(f"error: no page of {source.name} could be fetched ({errors}); is the shop reachable?", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m crawlers.run", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("crawl", "crawl a source into data/raw/<source>/"),
        ("check", "extract a few products; store nothing"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("source", help="source name: crawlers/sources/<source>.yaml")
        command.add_argument("--params", default=str(PROJECT_ROOT / "params.yaml"))
        command.add_argument("--profile", default=None)
        command.add_argument("--sources-dir", default=str(SOURCES_DIR))
        command.add_argument("--data-root", default=str(PROJECT_ROOT / "data" / "raw"))
        command.add_argument("--cache-root", default=None, help="HTTP cache folder (default: beside the data root)")
        command.add_argument(
            "--reports-root",
            default=str(PROJECT_ROOT / "reports" / "crawl"),
            help="crawl summaries go to REPORTS_ROOT/<source>/",
        )
        command.add_argument("--log-level", default="WARNING")
        if name == "crawl":
            command.add_argument("--max-pages", type=int, default=None)
            command.add_argument("--wait", action="store_true", help="wait for another crawl of the source to end")
        else:
            command.add_argument("--products", type=int, default=5)
            command.add_argument("--out", required=True, help="JSON lines file for the extracted products")
    return main


if __name__ == "__main__":
    sys.exit(run(parser().parse_args()))
