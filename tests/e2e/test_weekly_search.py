"""The search service on the workspace the weekly retrain built (tests/e2e/conftest.py): the
catalogue its `index catalogue` step wrote, the API in-process over the real champions and
detector, and the page in headless Chromium against a real `seamline serve`.

Runs after test_weekly_retrain.py, which builds the workspace; alone, it runs one whole weekly
retrain first. The toy models are weak, so "the right attributes" here means the ones the
champions give that photo, identical on the page, through the API and in the catalogue.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import free_port, stop, wait_for_http
from tests.e2e.conftest import BIN, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
SCREENSHOTS = Path(os.environ.get("SEAMLINE_TEST_SCREENSHOTS", "reports/test-screenshots"))


@pytest.fixture(scope="module")
def searchable(project: tuple[Path, dict[str, str]]) -> tuple[Path, dict[str, str], Path]:
    root, env = project
    catalogue = root / "data" / "catalogue" / "catalogue.db"
    if not catalogue.is_file():
        run([sys.executable, "-m", "flows.weekly_retrain", "--profile", "tiny"], root, env)
    return root, env, catalogue


@pytest.fixture(scope="module")
def service(searchable: tuple[Path, dict[str, str], Path]) -> Any:
    from pipelines.config import load_params
    from pipelines.serve import load_service

    root, _, catalogue = searchable
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the registry's SQLite store is relative to the project
        params = load_params(root / "params.yaml", "tiny")
        loaded = load_service(params, root / "data" / "raw", catalogue)
    return loaded


@pytest.fixture(scope="module")
def client(service: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from pipelines.serve import create_app

    with TestClient(create_app(service)) as test_client:
        yield test_client


def catalogue_rows(catalogue: Path, query: str, *args: Any) -> list[sqlite3.Row]:
    with sqlite3.connect(catalogue) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(query, args).fetchall()


def tags_of(catalogue: Path, sha256: str) -> dict[str, str]:
    return {
        row["component"]: row["label"]
        for row in catalogue_rows(
            catalogue, "SELECT component, label FROM tags WHERE sha256 = ? AND label IS NOT NULL", sha256
        )
    }


def as_catalogued(tags: dict[str, str], catalogue: Path, sha256: str) -> dict[str, str]:
    """An upload's tags less the components the catalogue left out because the shop sells the
    product as the other item (`catalogue.sold_as`): an upload has no shop category."""
    sold_elsewhere = {
        row["component"]
        for row in catalogue_rows(
            catalogue, "SELECT component FROM tags WHERE sha256 = ? AND skipped LIKE 'sold as %'", sha256
        )
    }
    return {name: label for name, label in tags.items() if name not in sold_elsewhere}


def a_catalogue_photo(catalogue: Path, root: Path) -> tuple[str, Path, str]:
    """(sha256, file, product URL) of the catalogue photo with the most components tagged (not
    necessarily known). Which garments the 4-step toy detector finds varies from run to run: in
    one CI run it found no jeans at all, so no photo had more than its two shirt tags."""
    rows = catalogue_rows(
        catalogue,
        "SELECT i.sha256, i.image_path, i.product_url FROM items i JOIN tags t ON t.sha256 = i.sha256 "
        "WHERE t.label IS NOT NULL GROUP BY i.sha256 ORDER BY COUNT(*) DESC, i.sha256 LIMIT 1",
    )
    assert rows, "the weekly run tagged no catalogue photo at all"
    row = rows[0]
    return row["sha256"], root / "data" / "raw" / row["image_path"], row["product_url"]


def upload(client: Any, endpoint: str, path: Path) -> Any:
    with path.open("rb") as handle:
        return client.post(endpoint, files={"photo": (path.name, handle, "image/jpeg")})


def test_the_weekly_run_catalogued_every_validated_image_with_the_champions(searchable, service, client) -> None:
    import pandas as pd

    root, _, catalogue = searchable
    validated = pd.read_parquet(root / "data" / "validated" / "manifest.parquet", columns=["sha256"])
    items = catalogue_rows(catalogue, "SELECT sha256 FROM items")
    assert {row["sha256"] for row in items} == set(validated["sha256"])
    versions = {
        (row["component"], row["model_version"])
        for row in catalogue_rows(catalogue, "SELECT DISTINCT component, model_version FROM tags")
    }
    assert versions == {(name, c.version) for name, c in service.tagger.classifiers.items()}
    health = client.get("/health").json()
    assert (
        health["status"] == "ok"
        and health["catalogue"]["images"] == len(items)
        and health["catalogue"]["stale_components"] == []
    )
    report = json.loads((root / "reports" / "retrain" / "latest.json").read_text())
    assert "index catalogue" in {step["step"] for step in report["steps"]}

    again = run([sys.executable, "-m", "pipelines.stages.index", "--profile", "tiny"], root, searchable[1])
    assert f"{len(items)} up to date, 0 to tag" in again.stdout  # incremental: nothing changed, nothing re-tagged


def test_predict_tags_a_shop_photo_as_the_catalogue_did(searchable, client) -> None:
    root, _, catalogue = searchable
    sha, path, _ = a_catalogue_photo(catalogue, root)
    answer = upload(client, "/predict", path)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    predicted = {name: tag["label"] for name, tag in found["components"].items()}
    assert as_catalogued(predicted, catalogue, sha) == tags_of(catalogue, sha)
    for tag in found["components"].values():
        assert tag["crop"].startswith("data:image/jpeg;base64,") and abs(sum(tag["probabilities"].values()) - 1) < 1e-3
    assert found["items"] and set(found["items"]) <= {"shirt", "jeans"}


def test_search_filters_pages_and_explains_bad_queries(searchable, client, service) -> None:
    catalogue = searchable[2]
    top = catalogue_rows(
        catalogue,
        "SELECT component, label, COUNT(DISTINCT i.product_url) AS products FROM tags t JOIN items i "
        "ON i.sha256 = t.sha256 WHERE label NOT IN ('unknown') GROUP BY component, label ORDER BY products DESC LIMIT "
        "1",
    )[0]
    attribute = top["component"].split("-", 1)[1]
    found = client.get(f"/search?{attribute}={top['label']}&per_page=2").json()
    assert found["total"] == top["products"] and found["pages"] == -(-top["products"] // 2)
    assert all(hit["tags"][top["component"]]["label"] == top["label"] for hit in found["items"])
    second = client.get(f"/search?{top['component']}={top['label']}&per_page=2&page=2").json()
    assert not {h["product_url"] for h in second["items"]} & {h["product_url"] for h in found["items"]}
    image = client.get(found["items"][0]["image"])
    assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).size[0] > 0

    for query, status, message in [
        ("colr=deep", 400, "unknown attribute 'colr'"),
        (f"{attribute}=nonsense", 400, "is not a"),
        ("per_page=1000", 400, "above the limit"),
        (f"{attribute}={top['label']}&{attribute}={top['label']}", 400, "repeated"),
        ("page=0", 422, "page"),
    ]:
        answer = client.get(f"/search?{query}")
        assert answer.status_code == status and message in answer.json()["detail"], (query, answer.text)
    assert client.get("/catalogue/nope/image").status_code == 404
    vocabulary = client.get("/attributes").json()
    assert set(vocabulary) == set(service.params.components) and vocabulary["jeans-color"]["attribute"] == "color"


def test_similar_finds_the_photos_own_product_among_those_sharing_its_attributes(searchable, client) -> None:
    root, _, catalogue = searchable
    _, path, product = a_catalogue_photo(catalogue, root)
    answer = upload(client, "/similar", path)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    own = [hit for hit in found["items"] if hit["product_url"] == product]
    assert own and own[0]["similarity"] > 0.99, found["items"][:3]
    for hit in found["items"]:
        assert set(hit["shared"]) <= set(found["matched_on"])
    assert len(found["items"]) <= 12


def test_every_bad_upload_gets_a_clear_4xx_and_the_service_keeps_serving(searchable, client) -> None:
    root, _, catalogue = searchable
    good = a_catalogue_photo(catalogue, root)[1].read_bytes()
    from tests.unit.test_search_rules import png_declaring

    cases = [
        (
            "not an image",
            {"files": {"photo": ("notes.txt", b"just some text", "text/plain")}},
            415,
            "sent as text/plain",
        ),
        ("sniffed non-image", {"files": {"photo": ("x.jpg", b"just some text", "image/jpeg")}}, 400, "not an image"),
        ("corrupt", {"files": {"photo": ("x.jpg", good[: len(good) // 3], "image/jpeg")}}, 400, "could not be decoded"),
        ("empty", {"files": {"photo": ("x.jpg", b"", "image/jpeg")}}, 400, "empty"),
        ("huge", {"files": {"photo": ("x.jpg", b"\xff" * 21_000_000, "image/jpeg")}}, 413, "the limit is 20 MB"),
        ("bomb", {"files": {"photo": ("x.png", png_declaring(10_000, 5_000), "image/png")}}, 413, "50,000,000 pixels"),
        ("json body", {"json": {"photo": "x"}}, 415, "multipart/form-data"),
        ("no photo field", {"files": {"image": ("x.jpg", good, "image/jpeg")}}, 400, "no 'photo' field"),
    ]
    for endpoint in ("/predict", "/similar"):
        for name, request, status, message in cases:
            answer = client.post(endpoint, **request)
            assert answer.status_code == status and message in answer.json()["detail"], (
                endpoint,
                name,
                answer.status_code,
                answer.text,
            )
            assert client.get("/health").status_code == 200
    assert client.post("/predict", files={"photo": ("ok.jpg", good, "image/jpeg")}).status_code == 200


def test_the_openapi_docs_describe_every_endpoint(client) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/search", "/similar", "/health"} <= set(paths)


@pytest.fixture(scope="module")
def server(searchable: tuple[Path, dict[str, str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `seamline serve` on 127.0.0.1."""
    root, env, _ = searchable
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "seamline"), "serve", "--profile", "tiny", "--port", str(port), "--no-refresh"],
            cwd=root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, log, seconds=240)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def test_serve_refuses_a_busy_port_and_a_missing_catalogue_in_one_line(searchable, server) -> None:
    root, env, _ = searchable
    port = server.rsplit(":", 1)[1]
    busy = subprocess.run(
        [str(BIN / "seamline"), "serve", "--profile", "tiny", "--port", port, "--no-refresh"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (
        busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr and "Traceback" not in busy.stderr
    )
    missing = subprocess.run(
        [str(BIN / "seamline"), "serve", "--profile", "tiny", "--no-refresh", "--catalogue", "nowhere.db"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert missing.returncode == 2 and "no catalogue yet" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
def test_the_page_tags_an_uploaded_photo_and_shows_matching_products(searchable, server) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    root, _, catalogue = searchable
    sha, path, product = a_catalogue_photo(catalogue, root)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        wait = WebDriverWait(browser, 120)
        browser.get(server + "/")
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#filters .chip"))  # the vocabulary loaded
        browser.find_element(By.ID, "photo-input").send_keys(str(path))
        wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "#attributes .attribute")))
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#results .product"))

        shown = {
            e.get_attribute("data-component"): e.get_attribute("data-label")
            for e in browser.find_elements(By.CSS_SELECTOR, "#attributes .attribute")
        }
        assert as_catalogued(shown, catalogue, sha) == tags_of(catalogue, sha)
        bars = browser.find_elements(By.CSS_SELECTOR, "#attributes .bar div")
        assert bars and all(bar.value_of_css_property("width") != "0px" for bar in bars)
        crops = browser.find_elements(By.CSS_SELECTOR, "#crops img")
        assert crops and all(browser.execute_script("return arguments[0].naturalWidth", crop) > 0 for crop in crops)
        links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#results .product a")]
        assert product in links
        with urllib.request.urlopen(links[0], timeout=10) as page:  # the product page in the shop
            assert page.status == 200
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / "search-page.png"
        browser.save_screenshot(str(shot))
        print(f"screenshot: {shot.resolve()}")

        # A chip narrows the grid to one attribute through /search.
        chips = browser.find_elements(By.CSS_SELECTOR, "#filters .chip.on") or browser.find_elements(
            By.CSS_SELECTOR, "#filters .chip"
        )
        chips[0].click()
        wait.until(
            lambda b: (
                "product" in b.find_element(By.ID, "status").text and "with" in b.find_element(By.ID, "status").text
            )
        )
        assert not browser.find_element(By.ID, "error").is_displayed()
    finally:
        browser.quit()


def test_a_running_service_switches_to_a_promoted_champion_and_re_tags_its_catalogue(searchable, server) -> None:
    """An ML lead promotes another version while `seamline serve` runs: within search.reload_minutes
    the service loads it, re-tags that component's catalogue entries, and only then serves it."""
    import time

    from mlflow import MlflowClient

    root, env, catalogue = searchable
    client = MlflowClient(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("jeans-color", "champion")
    # The same model once more as a new version: the promotion is real, only the weights are not new.
    again = client.create_model_version("jeans-color", champion.source, run_id=champion.run_id)
    promoted = run(
        [
            str(BIN / "seamline"),
            "models",
            "promote",
            "jeans-color",
            str(again.version),
            "--reason",
            "reload test",
            "--profile",
            "tiny",
        ],
        root,
        env,
    )
    assert "a running `seamline serve` switches to it" in promoted.stdout
    deadline = time.monotonic() + 240
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(server + "/health", timeout=10) as answer:
            health = json.loads(answer.read())
        if health["models"]["jeans-color"] == str(again.version):
            break
        time.sleep(1)
    assert health["models"]["jeans-color"] == str(again.version), health
    assert health["status"] == "ok" and health["catalogue"]["stale_components"] == [], health
    versions = {
        row["model_version"]
        for row in catalogue_rows(catalogue, "SELECT DISTINCT model_version FROM tags WHERE component = 'jeans-color'")
    }
    assert versions == {str(again.version)}
