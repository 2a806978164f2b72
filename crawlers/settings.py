"""Scrapy settings shared by every source. Per-source values (politeness, limits, storage) come
from the source YAML and params.yaml, applied by `SourceSpider.from_crawler`."""

BOT_NAME = "seamline"
SPIDER_MODULES = ["crawlers.spiders"]
NEWSPIDER_MODULE = "crawlers.spiders"

USER_AGENT = "SeamlineBot/0.1 (+https://github.com/seamline/seamline)"
ROBOTSTXT_OBEY = True

CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.25
DOWNLOAD_TIMEOUT = 30
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.25
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0

RETRY_ENABLED = True
RETRY_TIMES = 3
BACKOFF_BASE_S = 0.5  # retry n waits BACKOFF_BASE_S * 2**(n-1) before going out again
BACKOFF_MAX_S = 30.0

# Pages are revalidated (If-Modified-Since) instead of re-downloaded; images skip the cache and
# are skipped altogether when the manifest already holds their URL.
HTTPCACHE_ENABLED = True
HTTPCACHE_POLICY = "scrapy.extensions.httpcache.RFC2616Policy"
HTTPCACHE_STORAGE = "scrapy.extensions.httpcache.DbmCacheStorage"  # one file, not five per page
HTTPCACHE_IGNORE_HTTP_CODES = [500, 502, 503, 504, 408, 429]

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawlers.middlewares.BackoffRetryMiddleware": 550,
}
ITEM_PIPELINES = {
    "crawlers.item_pipelines.RequireProductFieldsPipeline": 100,
    "crawlers.item_pipelines.ContentAddressedImagesPipeline": 200,
    "crawlers.item_pipelines.ManifestPipeline": 300,
}
EXTENSIONS = {
    "crawlers.extensions.CrawlSummary": 500,
}

# Where crawls write: <SEAMLINE_DATA_ROOT>/<source>/{images/,manifest.jsonl,...}
SEAMLINE_DATA_ROOT = "data/raw"
SEAMLINE_CACHE_ROOT = "data/cache"
SEAMLINE_MIN_IMAGE_SIDE = 64
SEAMLINE_MAX_IMAGE_PIXELS = 40_000_000
SEAMLINE_DRY_RUN = False  # `sources check`: extract and report, store nothing

LOG_LEVEL = "INFO"
TELNETCONSOLE_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
SEAMLINE_REPORTS_ROOT = "reports/crawl"  # crawl summaries: <root>/<source>/{crawl_summary.json,crawls.jsonl}
SEAMLINE_SUMMARY_DIR = ""  # overrides <SEAMLINE_REPORTS_ROOT>/<source> (used by `sources check`)

# `scrapy check`: callbacks carry `@demo_url PATH` contracts run against the served demo shop.
SPIDER_CONTRACTS = {"crawlers.contracts.DemoShopUrlContract": 10}
