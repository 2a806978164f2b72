"""The search service's pure parts: the attribute vocabulary, upload checks, the catalogue's
storage helpers and its search/similar queries on a hand-filled SQLite catalogue."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.catalogue import (
    CatalogueError,
    CatalogueImage,
    attribute_names,
    connect,
    decode_embedding,
    encode_embedding,
    images_to_tag,
    jpeg_thumbnail,
    parse_filters,
    search,
    similar,
)
from pipelines.config import load_params
from pipelines.predict import ComponentTag, PhotoTags, unit_vector
from pipelines.serve import BadPhoto, decode_upload

MB = 1_000_000


@pytest.fixture
def params(shipped_params_path: Path):
    return load_params(shipped_params_path, "demo")


def encoded(format_: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buffer, format=format_)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header declares width × height pixels: a decompression bomb's
    shape without its cost."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_attributes_are_queried_by_their_short_name_or_the_component_name(params) -> None:
    names = attribute_names(params)
    assert names["collar"] == "shirt-collar" and names["color"] == "jeans-color" and names["jeans-fit"] == "jeans-fit"
    assert parse_filters({"collar": "band", "jeans-color": "deep"}, params) == {
        "shirt-collar": "band",
        "jeans-color": "deep",
    }


def test_an_unknown_attribute_or_label_says_what_is_allowed(params) -> None:
    with pytest.raises(ValueError, match=r"unknown attribute 'colr'; known: .*color"):
        parse_filters({"colr": "deep"}, params)
    with pytest.raises(ValueError, match=r"collar='round' is not a shirt-collar class; one of: band, button_down"):
        parse_filters({"collar": "round"}, params)


@pytest.mark.parametrize("format_", ["JPEG", "PNG", "WEBP"])
def test_jpeg_png_and_webp_uploads_decode_to_rgb(format_: str) -> None:
    pixels = decode_upload(encoded(format_), f"image/{format_.lower()}", 20 * MB, 40_000_000)
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels[..., 0].mean()) - 200) < 8  # RGB order, not OpenCV's BGR


@pytest.mark.parametrize(
    ("data", "content_type", "status", "message"),
    [
        (b"", "image/jpeg", 400, "empty"),
        (b"name,price\nshirt,10\n", "text/csv", 415, "sent as text/csv"),
        (b"this is not an image at all", "application/octet-stream", 400, "not an image"),
        (encoded("JPEG")[:300], "image/jpeg", 400, "could not be decoded"),
        (encoded("GIF"), "image/gif", 415, "send a JPEG, PNG or WebP"),
        (encoded("GIF"), "application/octet-stream", 415, "GIF images are not accepted"),
        (png_declaring(60_000, 60_000), "image/png", 413, "too many pixels"),
        (png_declaring(10_000, 5_000), "image/png", 413, "10000×5000 = 50,000,000 pixels; the limit is 40,000,000"),
    ],
    ids=["empty", "wrong-type", "not-an-image", "truncated", "gif-declared", "gif-sniffed", "pil-bomb", "bomb"],
)
def test_bad_uploads_are_refused_with_a_status_and_a_reason(
    data: bytes, content_type: str, status: int, message: str
) -> None:
    with pytest.raises(BadPhoto, match=message) as refused:
        decode_upload(data, content_type, 20 * MB, 40_000_000)
    assert refused.value.status == status


def test_an_upload_over_the_byte_limit_is_refused_before_decoding() -> None:
    with pytest.raises(BadPhoto, match=r"the limit is 1 MB") as refused:
        decode_upload(b"\xff" * (MB + 1), "image/jpeg", MB, 40_000_000)
    assert refused.value.status == 413


def test_embeddings_round_trip_as_float16_unit_vectors() -> None:
    vector = unit_vector(np.arange(1, 9, dtype=np.float32))
    assert np.isclose(np.linalg.norm(vector), 1.0)
    back = decode_embedding(encode_embedding(vector))
    assert back.dtype == np.float32 and np.allclose(back, vector, atol=1e-3)
    assert decode_embedding(None) is None and np.array_equal(unit_vector(np.zeros(3)), np.zeros(3))


def test_thumbnails_fit_the_preview_size_and_flatten_transparency() -> None:
    rgba = np.zeros((300, 150, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent → white
    with Image.open(io.BytesIO(jpeg_thumbnail(rgba, 100))) as image:
        assert image.size == (50, 100) and image.format == "JPEG"
        assert min(image.convert("L").getdata()) > 240


def test_reading_a_missing_catalogue_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="seamline index"):
        search(tmp_path / "none.db", {})


# --- queries on a hand-filled catalogue ----------------------------------------------------------


def fill(path: Path, rows: list[tuple[str, str, dict[str, tuple[str, float, list[float]]]]]) -> None:
    """rows: (sha256, product_url, {component: (label, probability, embedding)})."""
    with connect(path, create=True) as connection, connection:
        for sha, product, tags in rows:
            connection.execute(
                "INSERT INTO items VALUES (?, 'shop', ?, ?, ?, 'det-1', '[]', '2026-11-27')",
                (sha, product, f"title {sha}", f"shop/images/{sha}.jpg"),
            )
            for component, (label, probability, embedding) in tags.items():
                connection.execute(
                    "INSERT INTO tags VALUES (?, ?, '3', ?, ?, ?, NULL, NULL, NULL, ?)",
                    (
                        sha,
                        component,
                        label,
                        label,
                        probability,
                        encode_embedding(unit_vector(np.array(embedding, np.float32))),
                    ),
                )


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue.db"
    fill(
        path,
        [
            (
                "a1",
                "http://shop/p/a",
                {"shirt-collar": ("band", 0.9, [1, 0, 0]), "shirt-pattern": ("stripe", 0.8, [1, 0, 0])},
            ),
            (
                "a2",
                "http://shop/p/a",
                {"shirt-collar": ("band", 0.6, [1, 0, 0]), "shirt-pattern": ("stripe", 0.7, [0, 1, 0])},
            ),
            (
                "b1",
                "http://shop/p/b",
                {"shirt-collar": ("band", 0.7, [0, 1, 0]), "shirt-pattern": ("stripe", 0.6, [0, 1, 0])},
            ),
            (
                "c1",
                "http://shop/p/c",
                {"shirt-collar": ("band", 0.95, [0.9, 0.1, 0]), "shirt-pattern": ("dot", 0.9, [0, 0, 1])},
            ),
            (
                "d1",
                "http://shop/p/d",
                {"shirt-collar": ("unknown", 0.3, [1, 0, 0]), "shirt-pattern": ("stripe", 0.9, [1, 0, 0])},
            ),
            ("j1", "http://shop/p/j", {"jeans-color": ("deep", 0.9, [1, 0, 0])}),
        ],
    )
    return path


def test_search_returns_each_product_once_with_its_best_photo_best_first(catalogue: Path) -> None:
    page = search(catalogue, {"shirt-collar": "band", "shirt-pattern": "stripe"})
    assert page.total == 2
    assert [(hit.product_url, hit.sha256) for hit in page.hits] == [
        ("http://shop/p/a", "a1"),
        ("http://shop/p/b", "b1"),
    ]
    assert page.hits[0].tags["shirt-pattern"]["label"] == "stripe"
    assert page.hits[0].score == pytest.approx((0.9 + 0.8) / 2)


def test_search_pages_and_thresholds(catalogue: Path) -> None:
    assert search(catalogue, {}).total == 5  # every product
    second = search(catalogue, {"shirt-collar": "band"}, page=2, per_page=2)
    assert second.total == 3 and second.pages == 2 and [hit.product_url for hit in second.hits] == ["http://shop/p/b"]
    assert search(catalogue, {"shirt-collar": "band"}, min_probability=0.8).total == 2  # a (0.9) and c (0.95)
    assert search(catalogue, {"shirt-collar": "notched"}).total == 0


def photo(tags: dict[str, tuple[str, list[float]]]) -> PhotoTags:
    found = PhotoTags()
    for component, (label, embedding) in tags.items():
        found.tags[component] = ComponentTag(
            component, label, 0.9, label, {}, "3", None, unit_vector(np.array(embedding, np.float32))
        )
    return found


def test_similar_ranks_products_sharing_every_attribute_by_feature_similarity(catalogue: Path) -> None:
    hits, matched_on = similar(
        catalogue, photo({"shirt-collar": ("band", [0, 1, 0]), "shirt-pattern": ("stripe", [0, 1, 0])})
    )
    assert matched_on == ["shirt-collar", "shirt-pattern"]
    # b1 and a2 share both attributes and point the same way; a's best photo is a2, not a1.
    assert [(hit.product_url, hit.sha256) for hit in hits[:2]] == [("http://shop/p/b", "b1"), ("http://shop/p/a", "a2")]
    assert hits[0].shared == ["shirt-collar", "shirt-pattern"] and hits[0].similarity == pytest.approx(1.0, abs=1e-3)
    # Then products sharing one of the two; never the jeans.
    assert {hit.product_url for hit in hits[2:]} == {"http://shop/p/c", "http://shop/p/d"}
    assert all(len(hit.shared) == 1 for hit in hits[2:])


def test_similar_ignores_unknown_labels_and_respects_the_limit(catalogue: Path) -> None:
    hits, matched_on = similar(
        catalogue, photo({"shirt-collar": ("unknown", [1, 0, 0]), "shirt-pattern": ("dot", [0, 0, 1])}), limit=1
    )
    assert matched_on == ["shirt-pattern"] and [hit.product_url for hit in hits] == ["http://shop/p/c"]


def ranked_by_definition(catalogue: Path, query: PhotoTags, limit: int) -> list[tuple[str, str, list[str]]]:
    """similar()'s ranking computed the plain way, from every tag row: (product, photo, shared)."""
    import sqlite3

    wanted = {name: tag.label for name, tag in query.tags.items() if not tag.unknown}
    photos: dict[str, dict] = {}
    with sqlite3.connect(catalogue) as connection:
        for sha, component, label, blob, product in connection.execute(
            "SELECT t.sha256, t.component, t.label, t.embedding, i.product_url FROM tags t JOIN items i USING (sha256) "
            "WHERE t.label IS NOT NULL"
        ):
            if component not in query.tags:
                continue
            entry = photos.setdefault(sha, {"product": product, "shared": [], "cosines": []})
            entry["shared"] += [component] if wanted.get(component) == label else []
            entry["cosines"].append(float(np.dot(decode_embedding(blob), query.tags[component].embedding)))
    scored = sorted(
        (
            (-len(e["shared"]), -float(np.mean(e["cosines"])), sha)
            for sha, e in photos.items()
            if e["shared"] or not wanted
        )
    )
    best: dict[str, tuple[str, str, list[str]]] = {}
    for _, _, sha in scored:
        best.setdefault(photos[sha]["product"], (photos[sha]["product"], sha, sorted(photos[sha]["shared"])))
    return list(best.values())[:limit]


@pytest.mark.parametrize("limit", [1, 3, 12, 200])
def test_similar_reading_tier_by_tier_ranks_as_reading_everything(tmp_path: Path, limit: int) -> None:
    rng = np.random.default_rng(7)
    classes = {"shirt-collar": ["band", "regular", "unknown"], "shirt-pattern": ["dot", "solid", "stripe", "unknown"]}
    rows = []
    for i in range(240):
        tags = {
            name: (str(rng.choice(labels)), 0.9, list(rng.normal(size=4)))
            for name, labels in classes.items()
            if rng.random() > 0.1
        }
        rows.append((f"s{i:03d}", f"http://shop/p/{i % 70}", tags))
    rows.append(("jeans", "http://shop/p/j", {"jeans-color": ("deep", 0.9, [1, 0, 0, 0])}))
    fill(tmp_path / "c.db", rows)
    for labels in [("band", "stripe"), ("regular", "unknown"), ("unknown", "unknown"), ("band", None)]:
        query = photo({name: (label, list(rng.normal(size=4))) for name, label in zip(classes, labels) if label})
        hits, _ = similar(tmp_path / "c.db", query, limit=limit)
        assert [(hit.product_url, hit.sha256, hit.shared) for hit in hits] == ranked_by_definition(
            tmp_path / "c.db", query, limit
        ), labels


def test_only_images_with_outdated_or_missing_tags_are_tagged_again(catalogue: Path) -> None:
    images = [CatalogueImage(sha, "shop", "u", "t", "p") for sha in ("a1", "j1", "new")]
    with connect(catalogue) as connection:
        assert [i.sha256 for i in images_to_tag(connection, images, {"jeans-color": "3"}, "det-1")] == ["a1", "new"]
        assert [i.sha256 for i in images_to_tag(connection, images, {"jeans-color": "4"}, "det-1")] == [
            "a1",
            "j1",
            "new",
        ]
        assert [i.sha256 for i in images_to_tag(connection, images, {"jeans-color": "3"}, "det-2")] == [
            "a1",
            "j1",
            "new",
        ]


def test_a_shops_category_outranks_the_detector() -> None:
    import numpy as np

    from pipelines.catalogue import sold_as
    from pipelines.config import load_params
    from pipelines.predict import ComponentTag, PhotoTags

    components = load_params(Path(__file__).resolve().parents[2] / "params.yaml", "demo").components

    def tags() -> PhotoTags:
        made = PhotoTags()
        for name, label in (("shirt-pattern", "stripe"), ("jeans-color", "light")):
            made.tags[name] = ComponentTag(name, label, 0.9, label, {label: 0.9}, "1", None)
            made.crops[name] = np.zeros((2, 2, 3), np.uint8)
        return made

    shirt = sold_as(tags(), "shirt", components)
    assert list(shirt.tags) == ["shirt-pattern"] and list(shirt.crops) == ["shirt-pattern"]
    assert shirt.skipped == {"jeans-color": "sold as shirt"}
    assert list(sold_as(tags(), "jeans", components).tags) == ["jeans-color"]
    assert list(sold_as(tags(), None, components).tags) == ["shirt-pattern", "jeans-color"]
