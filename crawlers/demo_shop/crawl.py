"""Serve a built demo shop and crawl it, each in its own process, as `make demo` does: for the
benchmarks and experiments that need a crawled shop of their own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path


def serve(shop: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start `seamline demo-shop serve` on a free port, logging requests to `log`; (process, origin)."""
    seamline = str(Path(sys.executable).with_name("seamline"))
    process = subprocess.Popen(
        [seamline, "demo-shop", "serve", str(shop), "--port", "0", "--verbose"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the demo shop did not start: {line!r}")
    return process, match.group(0)


def crawl(origin: str, data_root: Path, source: str = "demo") -> dict:
    """Crawl `source` of the shop at `origin` into `data_root`; returns the crawl summary."""
    env = {**os.environ, "SEAMLINE_DEMO_SHOP_URL": origin}
    reports = data_root.with_name(data_root.name + "-reports")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "crawlers.run",
            "crawl",
            source,
            "--data-root",
            str(data_root),
            "--reports-root",
            str(reports),
            "--log-level",
            "ERROR",
        ],
        env=env,
        check=True,
    )
    return json.loads((reports / source / "crawl_summary.json").read_text())
