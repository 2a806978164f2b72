"""Real shop templates, crawled by YAML alone: the HTML of two open-source shop templates (their
product cards are the products: one shows `<img>` cards that all link to one shared page, the
other `data-setbg` backgrounds with `#` links) and CC0 real garment photos in place of their
stock images (tests/fixtures/shops/*/PROVENANCE.md), served on 127.0.0.1, crawled, validated and
labelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest

from crawlers.demo_shop.server import serving
from pipelines.config import load_params
from pipelines.labels import read_gate
from pipelines.manifest import read_manifest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "shops"
SOURCES = FIXTURES / "sources"
SEAMLINE = str(Path(sys.executable).with_name("seamline"))
PAGES = {"/shop.html", "/index.html"}


def card_images(shop: str) -> set[str]:
    """The fixture's image files, as URL paths: exactly the images its product cards show (each
    file stands in for one image path of the template, PROVENANCE.md)."""
    root = FIXTURES / shop
    return {"/" + path.relative_to(root).as_posix() for path in root.rglob("*.jpg")}


@pytest.fixture(scope="module", params=["ultras", "ashion"])
def crawled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(shop, work folder, paths the server was asked for, the crawl's completed process)."""
    shop: str = request.param
    work = tmp_path_factory.mktemp(shop)
    with serving(FIXTURES / shop) as server:
        arguments = [
            "--sources-dir",
            str(SOURCES),
            "--data-root",
            str(work / "raw"),
            "--reports-root",
            str(work / "crawl"),
        ]
        result = subprocess.run(
            [SEAMLINE, "crawl", shop, *arguments],
            env={**os.environ, "SEAMLINE_FIXTURE_SHOP_URL": server.origin},
            capture_output=True,
            text=True,
            timeout=300,
        )
        requested = list(server.requested)
    return shop, work, requested, result


def test_every_card_image_is_found_from_the_yaml_alone(crawled) -> None:
    shop, work, _, result = crawled
    assert result.returncode == 0, result.stderr
    rows = read_manifest(work / "raw" / shop / "manifest.jsonl").rows
    found = {urlsplit(row.image_url).path for row in rows}
    assert found == card_images(shop)  # found / present = 100%
    summary = json.loads((work / "crawl" / shop / "crawl_summary.json").read_text())
    # Each card is a product on its own: no card has a page (a shared link or `#`).
    assert summary["products_found_as"] == {"card": len(found)}
    assert summary["products"] == len(found) and summary["products_dropped"] == {}
    assert "products found as: card" in result.stdout
    by_title = {row.title: row for row in rows}
    assert all(row.title and row.price is not None for row in rows)
    # The item hints read the card titles; a bag or a coat is neither a shirt nor jeans.
    expected = {
        "ultras": {"Silk White Shirt": "shirt", "Half sleeve T-shirt": "shirt", "Grey Check Coat": None},
        "ashion": {"Slim striped pocket shirt": "shirt", "Dark wash Xavi jeans": "jeans", "Croc-effect bag": None},
    }[shop]
    assert {title: by_title[title].item_hint for title in expected} == expected


def test_nothing_outside_the_shop_is_requested_and_each_image_once(crawled) -> None:
    shop, _, requested, result = crawled
    assert result.returncode == 0, result.stderr
    images = [path for path in requested if path.endswith(".jpg")]
    assert sorted(images) == sorted(card_images(shop))  # each card image once, and nothing else
    # Pages: the two listings (and robots.txt); no CSS, script, blog page or off-site link.
    assert set(requested) - set(images) <= PAGES | {"/robots.txt"}
    assert set(requested) >= PAGES
    summary = json.loads((crawled[1] / "crawl" / shop / "crawl_summary.json").read_text())
    assert summary["errors"] == {}  # the templates have no robots.txt: its 404 is no error
    assert summary["requests"] == len(requested)  # every request the crawler made reached this server


def stage(name: str, params: Path, work: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipelines.stages.NAME` in `work`, its outputs where the stage's defaults put them."""
    command = [sys.executable, "-m", f"pipelines.stages.{name}", "--params", str(params), *arguments]
    return subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)


def test_the_crawl_validates_and_labels_and_short_components_are_skipped(crawled, shipped_params_path: Path) -> None:
    shop, work, _, result = crawled
    assert result.returncode == 0, result.stderr
    validate = stage(
        "validate", shipped_params_path, work, "--manifests", str(work / "raw"), "--crawl-reports", str(work / "crawl")
    )
    assert validate.returncode == 0, validate.stderr
    validated = pd.read_parquet(work / "data" / "validated" / "manifest.parquet")
    # Distinct real photos, none of them a copy of another: every one kept.
    assert len(validated) == len(card_images(shop))
    quarantine = work / "data" / "validated" / "quarantine.csv"
    assert not quarantine.exists() or pd.read_csv(quarantine).empty
    label = stage("label", shipped_params_path, work, "--manifest", "data/validated/manifest.parquet")
    # A template shop names few attributes: every component is short of labels, and the stage
    # says so per component and still succeeds, so the weekly run would go on.
    assert label.returncode == 0, label.stderr
    for component in load_params(shipped_params_path).components:
        gate = read_gate(work / "data" / "labels", component)
        assert gate is not None and gate.skipped, component
    assert "skipped this run" in label.stdout
