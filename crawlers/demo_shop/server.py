"""Serve a built demo shop on 127.0.0.1, filling in its own origin in absolute URLs.

Loopback only: the shop exists for crawls and tests on this machine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from crawlers.demo_shop.site import ORIGIN

HOST = "127.0.0.1"
_TEXT_TYPES = (".html", ".xml", ".txt", ".json")
_EMPTY_SHOPIFY_PAGE = b'{"products": []}'


class ShopRequestHandler(SimpleHTTPRequestHandler):
    """Static files, with `{{ORIGIN}}` in text files replaced by this server's origin."""

    server: ShopServer

    def send_head(self):  # type: ignore[override]
        self.server.requested.append(self.path)
        self.path = shopify_route(self.path)
        path = Path(self.translate_path(self.path))
        if self.path.startswith("/products/") and self.path.endswith(".json") and not path.is_file():
            return self._send_bytes(_EMPTY_SHOPIFY_PAGE, "application/json")  # past the last page
        if path.is_dir():
            path = path / "index.html"
        if path.suffix not in _TEXT_TYPES or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(ORIGIN.encode(), self.server.origin.encode())
        return self._send_bytes(body, self.guess_type(str(path)), path.stat().st_mtime)

    def _send_bytes(self, body: bytes, content_type: str, mtime: float | None = None) -> BytesIO | None:
        if mtime is not None:
            since = self.headers.get("If-Modified-Since")
            if since and _not_modified(since, mtime):
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.end_headers()
                return None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if mtime is not None:
            self.send_header("Last-Modified", self.date_time_string(int(mtime)))
        self.end_headers()
        return BytesIO(body)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def shopify_route(request_path: str) -> str:
    """Shopify URLs onto the built files: `/products.json?page=N` and `/products/<handle>`."""
    parsed = urlsplit(request_path)
    if parsed.path == "/products.json":
        page = parse_qs(parsed.query).get("page", ["1"])[0]
        return f"/products/page-{int(page) if page.isdigit() else 0}.json"
    if parsed.path.startswith("/products/") and not parsed.path.endswith(".json"):
        return f"/p/{parsed.path.removeprefix('/products/')}.html"
    return request_path


def _not_modified(since: str, mtime: float) -> bool:
    try:
        return int(mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections under a crawler's concurrency, and
    # a dropped SYN costs the client a one-second retransmit.
    request_queue_size = 128

    def __init__(self, site: Path, port: int = 0, verbose: bool = False) -> None:
        self.verbose = verbose
        self.requested: list[str] = []  # every path asked for, in arrival order: what a crawl fetched
        super().__init__((HOST, port), partial(ShopRequestHandler, directory=str(site)))

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


def site_dir(shop: Path) -> Path:
    """The served folder of a built shop (accepts the shop folder or its site/ folder)."""
    return shop / "site" if (shop / "site" / "index.html").is_file() else shop


@contextmanager
def running_shop(shop: Path, port: int = 0) -> Iterator[str]:
    """Serve `shop` in a background thread for the duration of the block; yields its origin."""
    with serving(site_dir(shop), port) as server:
        yield server.origin


@contextmanager
def serving(folder: Path, port: int = 0) -> Iterator[ShopServer]:
    """Serve any folder of static files (a shop template, say) on loopback for the block."""
    server = ShopServer(folder, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
