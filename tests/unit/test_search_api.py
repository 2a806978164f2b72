"""The search API's contract as `/openapi.json` states it: a model for every body, every attribute
filter a named query parameter with its classes, every refusal documented; and the answers agree
with it. The app runs in-process over a hand-filled catalogue and a fixed tagger (no models)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipelines.catalogue import attribute_names
from pipelines.config import Params, load_params
from pipelines.predict import ComponentTag, PhotoTags, unit_vector
from tests.unit.test_search_rules import fill

JSON = "application/json"
# Path → method → the error statuses it can answer; a route added without documenting its
# refusals, or a refusal left out, fails here.
DOCUMENTED_ERRORS = {
    "/health": {"get": set()},
    "/attributes": {"get": set()},
    "/predict": {"post": {"400", "413", "415"}},
    "/search": {"get": {"400", "422", "503"}},
    "/similar": {"post": {"400", "413", "415", "422", "503"}},
    "/catalogue/{sha256}/image": {"get": {"404", "503"}},
    "/catalogue/{sha256}/crop/{component}": {"get": {"404", "503"}},
}
IMAGE_PATHS = {"/catalogue/{sha256}/image", "/catalogue/{sha256}/crop/{component}"}


class FixedTagger:
    """Tags every photo as a band-collared striped shirt, as a champion would (crops included)."""

    def __init__(self) -> None:
        self.classifiers = {name: SimpleNamespace(version="3") for name in ("shirt-collar", "shirt-pattern")}

    def tag(self, images: list[np.ndarray], keep_crops: bool = False) -> list[PhotoTags]:
        found = PhotoTags(skipped={"jeans-color": "no jeans found"})
        for name, label, embedding in (("shirt-collar", "band", [0, 1, 0]), ("shirt-pattern", "stripe", [0, 1, 0])):
            vector = unit_vector(np.array(embedding, np.float32))
            found.tags[name] = ComponentTag(name, label, 0.9, label, {label: 0.9}, "3", (1.0, 2.0, 30.0, 40.0), vector)
            if keep_crops:
                found.crops[name] = images[0][:20, :20]
        return [found for _ in images]


@pytest.fixture
def params(shipped_params_path: Path) -> Params:
    return load_params(shipped_params_path, "demo")


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 60, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def client_over(params: Params, tmp_path: Path, catalogue: Path) -> Any:
    from fastapi.testclient import TestClient

    from pipelines.serve import SearchService, create_app

    return TestClient(create_app(SearchService(params, FixedTagger(), catalogue, tmp_path / "raw")))


@pytest.fixture
def client(params: Params, tmp_path: Path) -> Any:
    catalogue = tmp_path / "catalogue.db"
    fill(
        catalogue,
        [
            (
                "a1",
                "http://shop/p/a",
                {"shirt-collar": ("band", 0.9, [0, 1, 0]), "shirt-pattern": ("stripe", 0.8, [0, 1, 0])},
            ),
            (
                "b1",
                "http://shop/p/b",
                {"shirt-collar": ("band", 0.7, [1, 0, 0]), "shirt-pattern": ("dot", 0.6, [1, 0, 0])},
            ),
            ("j1", "http://shop/p/j", {"jeans-color": ("deep", 0.9, [1, 0, 0])}),
        ],
    )
    photo = tmp_path / "raw" / "shop" / "images" / "a1.jpg"  # where fill() says the photo lies
    photo.parent.mkdir(parents=True)
    photo.write_bytes(jpeg())
    return client_over(params, tmp_path, catalogue)


@pytest.fixture
def openapi(client: Any) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]


def test_every_json_answer_is_documented_by_a_model_and_every_image_as_an_image(openapi: dict[str, Any]) -> None:
    assert {path: set(operations) for path, operations in openapi["paths"].items()} == {
        path: set(methods) for path, methods in DOCUMENTED_ERRORS.items()
    }
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"]["200"]["content"]
            if path in IMAGE_PATHS:
                assert "image/jpeg" in content and JSON not in content, (path, content)
                assert all(entry["schema"] == {"type": "string", "format": "binary"} for entry in content.values())
                continue
            schema = content[JSON]["schema"]
            assert "$ref" in schema, (method, path, schema)  # a named model, not a bare `object`
            model = resolved(openapi, schema)
            fields = model.get("properties") or model.get("additionalProperties", {})
            assert fields, (path, model)


def test_the_models_describe_each_field(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    for name in ("SearchPage", "CatalogueProduct", "CatalogueTag", "PhotoPrediction", "SimilarProducts", "Health"):
        undescribed = [field for field, schema in schemas[name]["properties"].items() if not schema.get("description")]
        assert not undescribed, (name, undescribed)


def test_every_attribute_filter_is_a_query_parameter_offering_its_classes(
    openapi: dict[str, Any], params: Params
) -> None:
    parameters = {p["name"]: p for p in openapi["paths"]["/search"]["get"]["parameters"]}
    names = attribute_names(params)
    assert {"collar", "shirt-collar", "color", "jeans-color"} <= set(names)
    for name, component in names.items():
        parameter = parameters[name]
        assert parameter["in"] == "query" and not parameter["required"] and parameter["description"], name
        assert parameter["schema"]["enum"] == list(params.components[component].classes), name
    assert set(parameters) == {*names, "page", "per_page", "min_probability"}


def test_each_endpoint_documents_the_refusals_it_can_answer_as_one_line(openapi: dict[str, Any]) -> None:
    for path, methods in DOCUMENTED_ERRORS.items():
        for method, statuses in methods.items():
            responses = openapi["paths"][path][method]["responses"]
            assert set(responses) - {"200"} == statuses, (method, path, sorted(responses))
            for status in statuses:
                assert responses[status]["description"], (path, status)
                body = resolved(openapi, responses[status]["content"][JSON]["schema"])
                assert body["properties"]["detail"]["type"] == "string" and body["required"] == ["detail"]
    # FastAPI's own 422 body (a list of errors) is not what explain_bad_request answers.
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("collar=round", "collar='round' is not a shirt-collar class; one of: band, button_down, notched, regular"),
        ("shirt-pattern=tartan", "is not a shirt-pattern class"),
        ("colr=deep", "unknown attribute 'colr'; known: "),
        ("collar=band&collar=band", "give each attribute once (repeated: collar)"),
        ("collar=band&shirt-collar=band", "give each attribute once (repeated: collar, shirt-collar)"),
        ("per_page=1000", "above the limit"),
        ("page=0", "page: Input should be greater than or equal to 1"),
    ],
)
def test_a_query_outside_the_vocabulary_gets_its_documented_status_and_says_why(
    client: Any, openapi: dict[str, Any], query: str, message: str
) -> None:
    answer = client.get(f"/search?{query}")
    documented = openapi["paths"]["/search"]["get"]["responses"]
    assert str(answer.status_code) in documented and answer.status_code in (400, 422), answer.text
    assert set(answer.json()) == {"detail"} and message in answer.json()["detail"]


def test_search_answers_in_its_documented_shape(client: Any) -> None:
    found = client.get("/search?collar=band&pattern=stripe&per_page=5").json()
    assert list(found) == ["total", "page", "per_page", "pages", "filters", "items"]
    assert found["filters"] == {"shirt-collar": "band", "shirt-pattern": "stripe"} and found["total"] == 1
    hit = found["items"][0]
    assert list(hit) == ["sha256", "product_url", "title", "source", "image", "score", "tags", "shared"]
    assert hit["sha256"] == "a1" and hit["score"] == pytest.approx(0.85) and hit["image"] == "/catalogue/a1/image"
    assert hit["tags"]["shirt-collar"] == {"label": "band", "best_guess": "band", "probability": 0.9, "crop": None}
    image = client.get(hit["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert client.get("/catalogue/a1/crop/shirt-collar").json() == {"detail": "no shirt-collar crop for a1"}
    assert client.get("/catalogue/zz/image").status_code == 404


def test_predict_and_similar_answer_in_their_documented_shape(client: Any) -> None:
    upload = {"photo": ("shirt.jpg", jpeg(), "image/jpeg")}
    photo = client.post("/predict", files=upload).json()
    assert list(photo) == ["components", "skipped", "items"] and photo["items"] == ["shirt"]
    tag = photo["components"]["shirt-collar"]
    assert list(tag) == ["label", "probability", "best_guess", "probabilities", "model_version", "box", "crop"]
    assert tag["crop"].startswith("data:image/jpeg;base64,") and tag["box"] == [1.0, 2.0, 30.0, 40.0]
    assert photo["skipped"] == {"jeans-color": "no jeans found"}

    found = client.post("/similar?limit=5", files=upload).json()
    assert list(found) == ["photo", "matched_on", "items"] and found["photo"] == photo
    assert found["matched_on"] == ["shirt-collar", "shirt-pattern"]
    assert [hit["sha256"] for hit in found["items"]] == ["a1", "b1"]
    assert found["items"][0]["similarity"] == pytest.approx(1.0, abs=1e-3) and found["items"][0]["score"] == 1.0
    refused = client.post("/predict", files={"photo": ("notes.txt", b"text", "text/plain")})
    assert refused.status_code == 415 and "sent as text/plain" in refused.json()["detail"]


def test_health_and_attributes_answer_in_their_documented_shape(client: Any, params: Params, tmp_path: Path) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and "problem" not in health  # only a degraded service says what is wrong
    assert health["catalogue"]["images"] == 3 and health["models"] == {"shirt-collar": "3", "shirt-pattern": "3"}
    vocabulary = client.get("/attributes").json()
    assert vocabulary["jeans-color"] == {
        "attribute": "color",
        "item": "jeans",
        "classes": ["light", "middle", "deep"],
        "model_version": None,
    }

    missing = client_over(params, tmp_path, tmp_path / "nowhere.db")
    degraded = missing.get("/health").json()
    assert (
        degraded["status"] == "degraded" and degraded["catalogue"] is None and "seamline index" in degraded["problem"]
    )
    unreadable = missing.get("/search?collar=band")
    assert unreadable.status_code == 503 and "no catalogue yet" in unreadable.json()["detail"]
