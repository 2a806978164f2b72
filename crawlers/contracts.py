"""Scrapy contracts for `scrapy check` against the demo shop wherever it is served."""

from __future__ import annotations

import os
from typing import Any

from scrapy.contracts import Contract

DEMO_SHOP_DEFAULT_URL = "http://127.0.0.1:8765"


def demo_shop_origin() -> str:
    return os.environ.get("SEAMLINE_DEMO_SHOP_URL", DEMO_SHOP_DEFAULT_URL).rstrip("/")


class DemoShopUrlContract(Contract):
    """`@demo_url PATH`: check the callback on PATH of the demo shop ($SEAMLINE_DEMO_SHOP_URL,
    default http://127.0.0.1:8765), like Scrapy's own `@url` with a movable origin."""

    name = "demo_url"

    def adjust_request_args(self, args: dict[str, Any]) -> dict[str, Any]:
        args["url"] = demo_shop_origin() + self.args[0]
        return args
