"""Crawl throughput: Seamline's `demo` crawl (extraction, image checks, content-addressed store,
manifest) against a bare Scrapy spider that only downloads the same pages and images, side by
side on one demo shop served on 127.0.0.1. Prints pages/s, images/s and the ratio (goal ≥ 0.8).

Usage: python bench/crawl_throughput.py [--products 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from crawlers.demo_shop.crawl import crawl, serve
from crawlers.demo_shop.site import build_shop

BARE_SPIDER = textwrap.dedent(
    """
    import json, sys, time
    import scrapy
    from scrapy.crawler import CrawlerProcess

    urls = [line.strip() for line in open(sys.argv[1]) if line.strip()]

    class Bare(scrapy.Spider):
        name = "bare"
        async def start(self):
            for url in urls:
                yield scrapy.Request(url, callback=self.parse, dont_filter=True)
        def parse(self, response):
            return None

    settings = {"LOG_LEVEL": "ERROR", "ROBOTSTXT_OBEY": False, "CONCURRENT_REQUESTS_PER_DOMAIN": int(sys.argv[2]),
                "DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "HTTPERROR_ALLOW_ALL": True,
                "TELNETCONSOLE_ENABLED": False}
    process = CrawlerProcess(settings)
    crawler = process.create_crawler(Bare)
    process.crawl(crawler)
    process.start()
    stats = crawler.stats.get_stats()
    print(json.dumps({"duration_s": (stats["finish_time"] - stats["start_time"]).total_seconds(),
                      "responses": stats.get("response_received_count", 0)}))
    """
)


def requested_urls(log: Path, origin: str) -> list[str]:
    paths = re.findall(r'"GET (\S+) HTTP', log.read_text())
    return [origin + path for path in paths if path != "/robots.txt"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200, help="demo shop size")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each crawler; the best is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="crawl-bench-") as scratch:
        root = Path(scratch)
        build_shop(root / "shop", args.products, seed=3, difficulty="medium")
        best_ours: dict | None = None
        best_bare: dict | None = None
        for attempt in range(args.repeats):
            log = root / f"server-{attempt}.log"
            server, origin = serve(root / "shop", log)
            try:
                ours = crawl(origin, root / f"raw-{attempt}")
                server.terminate()
                server.wait()
                urls = requested_urls(log, origin)
                url_file = root / "urls.txt"
                url_file.write_text("\n".join(urls))
                server, origin2 = serve(root / "shop", root / "bare.log")
                url_file.write_text("\n".join(u.replace(origin, origin2) for u in urls))
                out = subprocess.run(
                    [sys.executable, "-c", BARE_SPIDER, str(url_file), "8"], capture_output=True, text=True, check=True
                ).stdout
                bare = json.loads(out.strip().splitlines()[-1])
            finally:
                server.terminate()
                server.wait()
            images = ours["images"]["new"] + ours["images"]["duplicate"] + sum(ours["images"]["rejected"].values())
            ours_rate = {
                "pages": ours["pages"] / ours["duration_s"],
                "images": images / ours["duration_s"],
                "s": ours["duration_s"],
            }
            bare_rate = {
                "pages": ours["pages"] / bare["duration_s"],
                "images": images / bare["duration_s"],
                "s": bare["duration_s"],
            }
            print(
                f"run {attempt + 1}: seamline {ours['duration_s']:.2f}s, bare {bare['duration_s']:.2f}s "
                f"({len(urls)} requests, {bare['responses']} responses)",
                file=sys.stderr,
            )
            if best_ours is None or ours_rate["s"] < best_ours["s"]:
                best_ours = ours_rate
            if best_bare is None or bare_rate["s"] < best_bare["s"]:
                best_bare = bare_rate

    assert best_ours and best_bare
    print(
        f"crawl throughput, demo shop of {args.products} products, 127.0.0.1, {os.cpu_count()} CPUs (best of "
        f"{args.repeats})"
    )
    print(f"{'crawler':<22} {'seconds':>8} {'pages/s':>9} {'images/s':>9}")
    for name, rate in (("seamline demo source", best_ours), ("bare scrapy download", best_bare)):
        print(f"{name:<22} {rate['s']:>8.2f} {rate['pages']:>9.1f} {rate['images']:>9.1f}")
    print(f"ratio seamline / bare: {best_bare['s'] / best_ours['s']:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
