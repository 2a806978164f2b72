"""The demo shop built and served for real on 127.0.0.1, crawled with plain HTTP requests."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections import deque
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import cv2
import numpy as np
import pytest
from PIL import Image

from crawlers.demo_shop.server import running_shop
from crawlers.demo_shop.site import build_shop
from crawlers.demo_shop.truth import products as truth
from tests.conftest import DEMO_SHOP_PRODUCTS as PRODUCTS

SEAMLINE = str(Path(sys.executable).with_name("seamline"))


@pytest.fixture(scope="module")
def shop(demo_shop: Path) -> Path:
    return demo_shop


@pytest.fixture(scope="module")
def origin(shop: Path):
    with running_shop(shop) as url:
        yield url


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, "", b""


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.jsonld: list[str] = []
        self._in_jsonld = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.hrefs.append(attributes["href"] or "")
        self._in_jsonld = tag == "script" and attributes.get("type") == "application/ld+json"

    def handle_data(self, data: str) -> None:
        if self._in_jsonld:
            self.jsonld.append(data)
            self._in_jsonld = False


def crawl(origin: str) -> dict[str, bytes]:
    """Breadth-first over same-origin links, skipping what robots.txt disallows."""
    _, _, robots = get(origin + "/robots.txt")
    disallowed = re.findall(r"^Disallow: (\S+)", robots.decode(), flags=re.MULTILINE)
    seen, pages, queue = {"/"}, {}, deque(["/"])
    while queue:
        path = queue.popleft()
        status, kind, body = get(origin + path)
        assert status == 200 and kind == "text/html", path
        pages[path] = body
        parser = Links()
        parser.feed(body.decode())
        for href in parser.hrefs:
            url = urlparse(urljoin(origin + path, href))
            if f"{url.scheme}://{url.netloc}" != origin or url.path.endswith(".xml"):
                continue
            if any(url.path.startswith(prefix) for prefix in disallowed) or url.path in seen:
                continue
            seen.add(url.path)
            queue.append(url.path)
    return pages


def test_every_product_is_reachable_by_following_links(shop: Path, origin: str) -> None:
    pages = crawl(origin)
    products = truth(shop)
    assert len(products) == PRODUCTS
    for product in products:
        assert product["url"] in pages, product["url"]
    # Pagination: the second page of a listing is only reachable through rel=next.
    assert "/shirts/page-2.html" in pages or "/jeans/page-2.html" in pages
    assert not any(path.startswith(("/cart", "/account")) for path in pages)


def test_jsonld_pages_parse_and_name_fetchable_absolute_images(shop: Path, origin: str) -> None:
    jsonld_products = [p for p in truth(shop) if p["template"] == "jsonld"]
    assert jsonld_products
    for product in jsonld_products[:5]:
        _, _, body = get(origin + product["url"])
        parser = Links()
        parser.feed(body.decode())
        blocks = [json.loads(text) for text in parser.jsonld]
        (item,) = [b for b in blocks if b["@type"] == "Product"]
        assert item["name"] == product["title"]
        assert item["offers"]["url"] == origin + product["url"]
        clean = [i for i in product["images"] if not i["fault"]]
        status, kind, data = get(item["image"][0])
        assert item["image"][0] == origin + clean[0]["url"] and status == 200 and kind.startswith("image/")
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


def test_sitemap_and_robots_use_the_servers_origin(shop: Path, origin: str) -> None:
    _, _, robots = get(origin + "/robots.txt")
    assert f"Sitemap: {origin}/sitemap.xml" in robots.decode()
    _, _, sitemap = get(origin + "/sitemap.xml")
    listed = set(re.findall(r"<loc>(.*?)</loc>", sitemap.decode()))
    assert {origin + p["url"] for p in truth(shop)} <= listed


def test_planted_faults_behave_as_real_shop_faults(shop: Path, origin: str) -> None:
    faults = json.loads((shop / "faults.json").read_text())
    by_kind: dict[str, list[dict]] = {}
    for fault in faults:
        by_kind.setdefault(fault["kind"], []).append(fault)
    assert {k: len(v) for k, v in by_kind.items()} == {
        "broken_link": 3,
        "corrupt_image": 1,
        "not_an_image": 1,
        "huge_image": 1,
        "duplicate_product": 1,
        "off_domain_link": 1,
    }
    for fault in by_kind["broken_link"]:
        assert get(origin + fault["url"])[0] == 404
    status, _, data = get(origin + by_kind["corrupt_image"][0]["url"])
    assert status == 200 and data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    status, kind, data = get(origin + by_kind["not_an_image"][0]["url"])
    assert status == 200 and kind == "image/jpeg" and data.startswith(b"<!doctype html>")
    huge = shop / "site" / by_kind["huge_image"][0]["url"].lstrip("/")
    with Image.open(huge) as image:
        assert image.width * image.height > 40_000_000

    duplicate = by_kind["duplicate_product"][0]
    original = next(p for p in truth(shop) if p["id"] == duplicate["product"])
    assert original["also_at"] == [duplicate["url"]]
    _, _, copy_page = get(origin + duplicate["url"])
    assert original["title"] in copy_page.decode()
    copy_image = re.search(r'/img/sale/[^"\s]+/1\.\w+', copy_page.decode()).group(0)
    assert get(origin + copy_image)[2] == get(origin + original["images"][0]["url"])[2]
    _, _, sale = get(origin + "/sale/")
    assert by_kind["off_domain_link"][0]["url"] in sale.decode()


def test_labelme_annotations_are_valid_and_point_at_their_images(shop: Path) -> None:
    annotations = sorted((shop / "annotations").glob("*.json"))
    assert len(annotations) > PRODUCTS
    for path in annotations[:40]:
        document = json.loads(path.read_text())
        image_path = (path.parent / document["imagePath"]).resolve()
        assert image_path.is_file()
        for shape in document["shapes"]:
            assert shape["label"] in {"shirt", "collar", "jeans"} and shape["shape_type"] == "polygon"
            points = np.array(shape["points"])
            assert len(points) >= 3
            assert (points >= 0).all() and (points[:, 0] <= document["imageWidth"]).all()
            assert (points[:, 1] <= document["imageHeight"]).all()


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_builds_a_byte_identical_shop(tmp_path: Path) -> None:
    build_shop(tmp_path / "a", 12, seed=5, difficulty="hard", workers=2)
    build_shop(tmp_path / "b", 12, seed=5, difficulty="hard", workers=1)
    build_shop(tmp_path / "c", 12, seed=6, difficulty="hard", workers=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_build_refuses_a_folder_that_is_not_a_shop_and_leaves_it_alone(tmp_path: Path) -> None:
    precious = tmp_path / "data" / "keep.txt"
    precious.parent.mkdir()
    precious.write_text("collected")
    result = subprocess.run(
        [SEAMLINE, "demo-shop", "build", "--out", str(precious.parent), "-n", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "is not a demo shop" in result.stderr
    assert precious.read_text() == "collected"


def test_serve_command_picks_a_free_port_and_prints_it(shop: Path) -> None:
    server = subprocess.Popen(
        [SEAMLINE, "demo-shop", "serve", str(shop), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()
        match = re.fullmatch(r"serving demo shop at (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        status, kind, _ = get(match.group(1) + "/")
        assert (status, kind) == (200, "text/html")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_refuses_a_folder_without_a_shop(tmp_path: Path) -> None:
    result = subprocess.run([SEAMLINE, "demo-shop", "serve", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "not a built demo shop" in result.stderr


def test_sheet_command_writes_one_sheet_per_component(shop: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [SEAMLINE, "demo-shop", "sheet", str(shop), "--out", str(tmp_path), "--per-class", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    sheets = sorted(p.name for p in tmp_path.glob("*.png"))
    assert sheets == sorted(
        [
            "shirt-collar.png",
            "shirt-pattern.png",
            "jeans-fit.png",
            "jeans-color.png",
            "jeans-washing.png",
            "jeans-damage.png",
        ]
    )
    collar = cv2.imread(str(tmp_path / "shirt-collar.png"))
    assert collar.shape[0] == 4 * 96  # one row per collar class


def test_annotations_import_turns_the_shops_labelme_files_into_coco(
    shop: Path, tmp_path: Path, shipped_params_path: Path
) -> None:
    from pycocotools.coco import COCO

    folder = tmp_path / "copy" / "annotations"  # a copy, so the shop fixture stays untouched
    shutil.copytree(shop / "annotations", folder)
    (tmp_path / "copy" / "site").symlink_to(shop / "site")  # Labelme's imagePath is relative
    (folder / "broken.json").write_text('{"shapes": []}')  # a bad file among good ones
    result = subprocess.run(
        [
            SEAMLINE,
            "annotations",
            "import",
            str(folder),
            "--out",
            str(tmp_path / "coco"),
            "--params",
            str(shipped_params_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr and "broken.json" in result.stderr
    coco = COCO(str(tmp_path / "coco" / "instances.json"))
    files = len(list((shop / "annotations").glob("*.json")))
    assert len(coco.getImgIds()) == files
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    per_category = {names[c]: len(coco.getAnnIds(catIds=[c])) for c in names}
    assert per_category["shirt"] > 0 and per_category["collar"] > 0 and per_category["jeans"] > 0
    assert f"imported {files} images" in result.stdout


def test_annotations_import_of_a_folder_with_nothing_usable_fails(tmp_path: Path, shipped_params_path: Path) -> None:
    (tmp_path / "only.json").write_text("not json")
    result = subprocess.run(
        [
            SEAMLINE,
            "annotations",
            "import",
            str(tmp_path),
            "--out",
            str(tmp_path / "coco"),
            "--params",
            str(shipped_params_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no usable annotation file" in result.stderr and "only.json" in result.stderr
