"""Crawling the demo shop for real: its server and each crawl run as separate processes, as a
data engineer runs them, and every outcome is checked against the shop's ground truth."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crawlers.demo_shop.truth import clean_image_count as clean_images
from crawlers.demo_shop.truth import products as truth
from crawlers.source_config import SOURCES_DIR
from pipelines.config import load_params
from pipelines.labels import read_gate
from pipelines.manifest import iter_manifests, read_manifest
from tests.conftest import DEMO_SHOP_PRODUCTS as PRODUCTS

pytestmark = pytest.mark.slow
SEAMLINE = str(Path(sys.executable).with_name("seamline"))


@pytest.fixture(scope="module")
def shop(demo_shop: Path) -> Path:
    return demo_shop


@pytest.fixture(scope="module")
def server(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(origin, request log) of `seamline demo-shop serve` running in its own process."""
    log = tmp_path_factory.mktemp("serverlog") / "requests.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [SEAMLINE, "demo-shop", "serve", str(shop), "--port", "0", "--verbose"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        line = process.stdout.readline()
        origin = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        try:
            yield origin, log
        finally:
            process.terminate()
            process.wait(timeout=10)


def crawl(origin: str, data_root: Path, source: str = "demo", *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEAMLINE_DEMO_SHOP_URL": origin}
    return subprocess.run(
        [
            SEAMLINE,
            "crawl",
            source,
            "--data-root",
            str(data_root),
            "--reports-root",
            str(reports_of(data_root)),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def reports_of(data_root: Path) -> Path:
    return data_root.with_name(data_root.name + "-reports")


def summary(data_root: Path, source: str = "demo") -> dict:
    return json.loads((reports_of(data_root) / source / "crawl_summary.json").read_text())


@pytest.fixture(scope="module")
def first_crawl(
    server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    data_root = tmp_path_factory.mktemp("raw")
    return data_root, crawl(server[0], data_root)


def test_every_product_found_and_every_image_stored_once(shop: Path, first_crawl) -> None:
    data_root, result = first_crawl
    assert result.returncode == 0, result.stderr
    rows = read_manifest(data_root / "demo" / "manifest.jsonl").rows
    products = truth(shop)
    # The product listed twice is recorded under whichever of its URLs was crawled first.
    canonical = {copy: p["url"] for p in products for copy in p["also_at"]}
    paths = {re.sub(r"^https?://[^/]+", "", row.product_url) for row in rows}
    assert {canonical.get(path, path) for path in paths} == {p["url"] for p in products}
    assert len(rows) == len({row.sha256 for row in rows}) == clean_images(shop)
    stored = list((data_root / "demo" / "images").iterdir())
    assert len(stored) == len(rows)
    assert {p.name.split(".")[0] for p in stored} == {row.sha256 for row in rows}
    by_id = {p["id"]: p["item"] for p in products}
    for row in rows:
        assert row.item_hint == by_id[re.search(r"sl\d{5}", row.product_url).group(0).upper()]
    assert "images new" in result.stdout  # the printed summary table


def test_each_planted_fault_is_counted_under_its_reason(shop: Path, first_crawl) -> None:
    data_root, _ = first_crawl
    report = summary(data_root)
    assert report["images"]["rejected"] == {"http_404": 3, "truncated": 1, "not_an_image": 1, "too_large": 1}
    duplicate = next(p for p in truth(shop) if p["also_at"])
    assert report["images"]["duplicate"] == sum(1 for i in duplicate["images"] if not i["fault"])
    assert report["errors"]["offsite_filtered"] >= 1


def test_no_request_leaves_the_shop_or_enters_disallowed_pages(first_crawl, server) -> None:
    data_root, _ = first_crawl
    report = summary(data_root)
    requests = [line for line in server[1].read_text().splitlines() if '"GET ' in line]
    served = len([line for line in requests if "/robots.txt" not in line])
    # Every request the crawler made is one the shop's own server answered.
    images = report["images"]
    assert (
        report["requests"] - 1
        == served - 0
        == report["pages"] + images["new"] + images["duplicate"] + sum(images["rejected"].values())
    )
    assert not any("/cart/" in line or "/account/" in line for line in requests)


def test_second_crawl_of_an_unchanged_shop_fetches_almost_nothing_and_adds_nothing(
    shop: Path, server, first_crawl
) -> None:
    data_root, _ = first_crawl
    before = (data_root / "demo" / "manifest.jsonl").read_bytes()
    result = crawl(server[0], data_root)
    assert result.returncode == 0, result.stderr
    report = summary(data_root)
    assert report["images"]["new"] == 0
    assert report["images"]["known_url"] == clean_images(shop)
    fetched = report["images"]["duplicate"] + sum(report["images"]["rejected"].values())
    faulty = sum(1 for p in truth(shop) for i in p["images"] if i["fault"])
    copies = sum(1 for p in truth(shop) if p["also_at"] for i in p["images"] if not i["fault"])
    assert fetched == faulty + copies  # only the planted faults and the sale copy's images are tried again
    assert (data_root / "demo" / "manifest.jsonl").read_bytes() == before
    history = (reports_of(data_root) / "demo" / "crawls.jsonl").read_text().splitlines()
    assert len(history) == 2


def test_css_only_source_finds_the_same_images(shop: Path, server, first_crawl, tmp_path: Path) -> None:
    result = crawl(server[0], tmp_path, "demo_css")
    assert result.returncode == 0, result.stderr
    css_rows = read_manifest(tmp_path / "demo_css" / "manifest.jsonl").rows
    demo_rows = read_manifest(first_crawl[0] / "demo" / "manifest.jsonl").rows
    assert {r.sha256 for r in css_rows} == {r.sha256 for r in demo_rows}
    assert all(r.title and r.breadcrumb and r.price for r in css_rows)


def test_listing_cards_with_their_own_pages_are_followed_and_the_page_wins(server, first_crawl, tmp_path: Path) -> None:
    """The demo shop's listing cards (thumbnail, name, price) read as `cards:`: each links to its
    own product page, so each is followed, and the page's gallery replaces the card's thumbnail."""
    sources = tmp_path / "sources"
    sources.mkdir()
    tree = yaml.safe_load((SOURCES_DIR / "demo_css.yaml").read_text())
    tree["name"] = "demo_cards"
    tree["cards"] = {
        "selector": "li.product-card",
        "title": ".name::text",
        "price": ".price::text",
        "link": "a::attr(href)",
        "listing_breadcrumb": "h1.category-title::text",
    }
    (sources / "demo_cards.yaml").write_text(yaml.safe_dump(tree))
    result = crawl(server[0], tmp_path / "raw", "demo_cards", "--sources-dir", str(sources))
    assert result.returncode == 0, result.stderr
    report = summary(tmp_path / "raw", "demo_cards")
    assert report["products_found_as"] == {"card+page": report["products"]} and report["products"] >= PRODUCTS
    card_rows = read_manifest(tmp_path / "raw" / "demo_cards" / "manifest.jsonl").rows
    demo_rows = read_manifest(first_crawl[0] / "demo" / "manifest.jsonl").rows
    assert {r.sha256 for r in card_rows} == {r.sha256 for r in demo_rows}  # no thumbnail among them
    assert not any("thumb" in r.image_url for r in card_rows)
    assert all(r.breadcrumb.startswith("Home") for r in card_rows)  # the page's breadcrumb, not the card's heading


@pytest.mark.parametrize("source", ["demo_sitemap", "demo_shopify"])
def test_sitemap_and_shopify_spiders_find_every_product(shop: Path, server, tmp_path: Path, source: str) -> None:
    result = crawl(server[0], tmp_path, source)
    assert result.returncode == 0, result.stderr
    rows = read_manifest(tmp_path / source / "manifest.jsonl").rows
    assert len(rows) == clean_images(shop)
    assert summary(tmp_path, source)["products"] >= PRODUCTS


def test_a_killed_crawl_leaves_a_valid_manifest_and_the_next_one_completes(shop: Path, server, tmp_path: Path) -> None:
    slow_sources = tmp_path / "sources"
    slow_sources.mkdir()
    tree = yaml.safe_load((SOURCES_DIR / "demo.yaml").read_text())
    tree["politeness"] = {"concurrent_requests_per_domain": 1, "download_delay_s": 0.05, "autothrottle": False}
    (slow_sources / "demo.yaml").write_text(yaml.safe_dump(tree))
    data_root = tmp_path / "raw"
    manifest = data_root / "demo" / "manifest.jsonl"
    env = {**os.environ, "SEAMLINE_DEMO_SHOP_URL": server[0]}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crawlers.run",
            "crawl",
            "demo",
            "--data-root",
            str(data_root),
            "--reports-root",
            str(reports_of(data_root)),
            "--sources-dir",
            str(slow_sources),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not manifest.exists() or len(manifest.read_bytes().splitlines()) < 20):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    half = read_manifest(manifest)
    assert 20 <= len(half.rows) < clean_images(shop), "the crawl was not killed half-way"
    assert half.skipped_lines in ([], [len(half.rows) + 1])  # at most one torn last line
    for row in half.rows:
        assert (data_root / row.path).is_file()  # an image is stored before its row is written

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crawlers.run",
            "crawl",
            "demo",
            "--data-root",
            str(data_root),
            "--reports-root",
            str(reports_of(data_root)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    done = read_manifest(manifest)
    assert len(done.rows) == len({r.sha256 for r in done.rows}) == clean_images(shop)
    assert {r.sha256 for r in half.rows} <= {r.sha256 for r in done.rows}


def test_two_crawls_of_one_source_at_once_one_waits_and_no_row_is_written_twice(
    shop: Path, server, tmp_path: Path
) -> None:
    """A scheduled crawl and a hand-started one of the same source: the second is refused naming
    the first (exit 3), or with --wait runs after it; the manifest gets every image once."""
    slow_sources = tmp_path / "sources"  # a polite crawl, so the first is still running when the others start
    slow_sources.mkdir()
    tree = yaml.safe_load((SOURCES_DIR / "demo.yaml").read_text())
    tree["politeness"] = {"concurrent_requests_per_domain": 1, "download_delay_s": 0.02, "autothrottle": False}
    (slow_sources / "demo.yaml").write_text(yaml.safe_dump(tree))
    data_root = tmp_path / "raw"
    env = {**os.environ, "SEAMLINE_DEMO_SHOP_URL": server[0]}
    command = [SEAMLINE, "crawl", "demo", "--data-root", str(data_root), "--reports-root", str(reports_of(data_root))]
    command += ["--sources-dir", str(slow_sources)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = data_root.parent / ".locks" / "crawl-demo.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.05)
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    waited = subprocess.Popen(
        [*command, "--wait"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert waited.wait(timeout=300) == 0, waited.stderr.read()
    assert refused.returncode == 3, refused.stderr
    crawler_pid = json.loads(lock.read_text() or "{}").get("pid")  # released: emptied
    assert crawler_pid is None
    assert "the crawl of demo is already running: pid" in refused.stderr and "since" in refused.stderr
    read = read_manifest(data_root / "demo" / "manifest.jsonl")
    assert read.skipped_lines == []  # no torn line
    assert len(read.rows) == len({row.sha256 for row in read.rows}) == clean_images(shop)  # no row twice


def test_sources_check_shows_products_and_stores_nothing(server, tmp_path: Path, shipped_params_path: Path) -> None:
    env = {**os.environ, "SEAMLINE_DEMO_SHOP_URL": server[0]}
    result = subprocess.run(
        [SEAMLINE, "sources", "check", "demo", "--products", "3", "--params", str(shipped_params_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "products extracted" in result.stdout or "warning:" in result.stdout
    assert result.stdout.count("Jeans") + result.stdout.count("Shirt") >= 3
    assert list(tmp_path.iterdir()) == []


def test_unreachable_shop_is_one_clear_error_and_keeps_the_manifest(first_crawl, tmp_path: Path) -> None:
    data_root, _ = first_crawl
    before = (data_root / "demo" / "manifest.jsonl").read_bytes()
    result = crawl("http://127.0.0.1:9", data_root)  # discard port: nothing listens
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no page of demo could be fetched")
    assert (data_root / "demo" / "manifest.jsonl").read_bytes() == before


def test_bad_source_file_fails_before_any_request(server, tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "broken.yaml").write_text(
        "name: broken\nspider: listing\nstart_urls: [http://127.0.0.1:1/]\nallowed_domains: [127.0.0.1]\nlinks: "
        "{produts: []}\n"
    )
    result = subprocess.run(
        [
            SEAMLINE,
            "crawl",
            "broken",
            "--sources-dir",
            str(sources),
            "--data-root",
            str(tmp_path / "raw"),
            "--reports-root",
            str(tmp_path / "reports"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "links.produts: unknown key" in result.stderr
    assert not (tmp_path / "raw").exists()


def test_scrapy_list_and_check_work_in_the_scrapy_project(server, tmp_path: Path) -> None:
    scrapy = str(Path(sys.executable).with_name("scrapy"))
    crawlers_dir = SOURCES_DIR.parent
    env = {**os.environ, "SEAMLINE_DEMO_SHOP_URL": server[0]}
    listed = subprocess.run([scrapy, "list"], cwd=crawlers_dir, env=env, capture_output=True, text=True, timeout=120)
    assert listed.stdout.split() == ["listing", "shopify", "sitemap"]
    checked = subprocess.run([scrapy, "check"], cwd=crawlers_dir, env=env, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"Ran [1-9]\d* contracts", checked.stderr) and "OK" in checked.stderr


def test_limits_stop_the_crawl_early(server, tmp_path: Path) -> None:
    pages = crawl(server[0], tmp_path / "pages", "demo", "--max-pages", "5")
    assert pages.returncode == 0, pages.stderr
    assert summary(tmp_path / "pages")["pages"] <= 5
    sources = tmp_path / "sources"
    sources.mkdir()
    tree = yaml.safe_load((SOURCES_DIR / "demo.yaml").read_text())
    tree["limits"] = {"max_images": 10}
    (sources / "demo.yaml").write_text(yaml.safe_dump(tree))
    images = crawl(server[0], tmp_path / "images", "demo", "--sources-dir", str(sources))
    assert images.returncode == 0, images.stderr
    report = summary(tmp_path / "images")
    assert report["images"]["new"] <= 10 and report["images"]["over_limit"] >= 1


def test_label_stage_on_the_crawl_gives_precise_leak_free_labels(
    shop: Path, first_crawl, tmp_path: Path, shipped_params_path: Path
) -> None:
    data_root, _ = first_crawl
    params = tmp_path / "params.yaml"  # a 60-product shop is too small for the demo's class minimum
    params.write_text(shipped_params_path.read_text().replace("min_examples_per_class: 8", "min_examples_per_class: 1"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.stages.label",
            "--params",
            str(params),
            "--manifest",
            str(data_root),
            "--out",
            str(tmp_path / "labels"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "leakage check passed" in result.stdout
    rows = {r.sha256: r for r in read_manifest(data_root / "demo" / "manifest.jsonl").rows}
    canonical = {copy: p["url"] for p in truth(shop) for copy in p["also_at"]}
    by_path = {p["url"]: p for p in truth(shop)}

    def product_of(sha: str) -> dict:
        path = re.sub(r"^https?://[^/]+", "", rows[sha].product_url)
        return by_path[canonical.get(path, path)]

    for component in ("shirt-collar", "shirt-pattern", "jeans-fit", "jeans-color", "jeans-washing", "jeans-damage"):
        item, attribute = component.split("-")
        lines = (tmp_path / "labels" / f"{component}.csv").read_text().splitlines()
        assert lines[0] == "sha256,label,split,label_source"
        labelled = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
        assert labelled, component
        correct = sum(product_of(r["sha256"])["labels"][attribute] == r["label"] for r in labelled)
        assert all(product_of(r["sha256"])["item"] == item for r in labelled)  # only shirts get shirt labels
        assert correct / len(labelled) >= 0.85, component
        split_of_product: dict[str, set[str]] = {}
        for r in labelled:
            split_of_product.setdefault(product_of(r["sha256"])["id"], set()).add(r["split"])
        assert all(len(splits) == 1 for splits in split_of_product.values())  # a product never straddles


def run_label_stage(params: Path, manifests: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.stages.label",
            "--params",
            str(params),
            "--manifest",
            str(manifests),
            "--out",
            str(out),
        ],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_components_short_of_labels_are_skipped_and_the_stage_goes_on(
    first_crawl, tmp_path: Path, shipped_params_path: Path
) -> None:
    data_root, _ = first_crawl
    params = tmp_path / "params.yaml"
    params.write_text(
        shipped_params_path.read_text().replace("min_examples_per_class: 8", "min_examples_per_class: 500")
    )
    result = run_label_stage(params, data_root, tmp_path / "labels")
    assert result.returncode == 0, result.stderr
    for component in ("shirt-collar", "jeans-damage"):
        assert (tmp_path / "labels" / f"{component}.csv").is_file()  # nothing already made is lost
        gate = read_gate(tmp_path / "labels", component)
        assert gate is not None and gate.skipped.startswith("too few labels: ")
        assert "(validation.min_examples_per_class 500)" in gate.skipped
    assert "shirt-collar" in result.stdout and "skipped this run: too few labels" in result.stdout


@pytest.mark.parametrize(("kept", "missing"), [("shirt", "jeans"), ("jeans", "shirt")])
def test_a_shop_selling_one_item_labels_its_components_and_skips_the_others(
    first_crawl, tmp_path: Path, shipped_params_path: Path, kept: str, missing: str
) -> None:
    """A shirt-only (or jeans-only) source: the other item's components have no labels and are
    skipped with that reason; this item's components train."""
    data_root, _ = first_crawl
    only = tmp_path / "raw"
    for manifest in iter_manifests(data_root):
        rows = [row for row in read_manifest(manifest).rows if row.item_hint == kept]
        target = only / manifest.relative_to(data_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
    params = tmp_path / "params.yaml"  # a 60-product shop is too small for the demo's class minimum
    params.write_text(shipped_params_path.read_text().replace("min_examples_per_class: 8", "min_examples_per_class: 1"))
    result = run_label_stage(params, only, tmp_path / "labels")
    assert result.returncode == 0, result.stderr
    components = load_params(params).components
    for name, component in components.items():
        gate = read_gate(tmp_path / "labels", name)
        if component.item == missing:
            assert gate.skipped == "no labelled images (0 images of its item)", name
        else:
            assert gate.skipped is None and gate.labelled > 0, (name, gate)
