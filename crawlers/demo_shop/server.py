"""Serve a built demo shop on 127.0.0.1, filling in its own origin in absolute URLs.

Loopback only: the shop exists for crawls and tests on this machine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from crawlers.demo_shop.site import ORIGIN

HOST = "127.0.0.1"
_TEXT_TYPES = (".html", ".xml", ".txt")


class ShopRequestHandler(SimpleHTTPRequestHandler):
    """Static files, with `{{ORIGIN}}` in text files replaced by this server's origin."""

    server: ShopServer

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix not in _TEXT_TYPES or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(ORIGIN.encode(), self.server.origin.encode())
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        from io import BytesIO

        return BytesIO(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, site: Path, port: int = 0, verbose: bool = False) -> None:
        self.verbose = verbose
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
    server = ShopServer(site_dir(shop), port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.origin
    finally:
        server.shutdown()
        server.server_close()
