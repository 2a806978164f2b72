"""The manifest contract: append-only rows, torn lines survived, image checks with reasons."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.manifest import (
    ImageRejected,
    ManifestRow,
    append_rows,
    hamming,
    inspect_image,
    perceptual_hash,
    read_manifest,
)

ROW = ManifestRow(
    sha256="ab" * 32,
    path="demo/images/x.jpg",
    source="demo",
    image_url="http://s/1.jpg",
    product_url="http://s/p",
    title="Skinny Jeans",
    breadcrumb="Home > Jeans",
    item_hint="jeans",
    price=49.0,
    width=360,
    height=480,
    format="jpeg",
    bytes=1234,
    phash="0f0f0f0f0f0f0f0f",
    crawled_at="2026-11-26T00:00:00+00:00",
)


def encoded(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def photo(seed: int = 0, size: tuple[int, int] = (120, 160)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(8, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def test_rows_round_trip_and_append_only(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "manifest.jsonl"
    assert append_rows(path, [ROW]) == 1
    assert append_rows(path, [replace(ROW, sha256="cd" * 32)]) == 1
    assert append_rows(path, []) == 0
    read = read_manifest(path)
    assert [row.sha256 for row in read.rows] == ["ab" * 32, "cd" * 32] and read.skipped_lines == []


def test_a_torn_last_line_is_skipped_and_the_next_append_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    append_rows(path, [ROW])
    with path.open("a") as handle:
        handle.write(ROW.to_json()[:40])  # a crash in the middle of a write
    append_rows(path, [replace(ROW, sha256="ef" * 32)])
    read = read_manifest(path)
    assert [row.sha256 for row in read.rows] == ["ab" * 32, "ef" * 32]
    assert read.skipped_lines == [2]


def test_rows_with_other_fields_are_refused() -> None:
    data = json.loads(ROW.to_json())
    data["colour"] = "blue"
    with pytest.raises(ValueError, match="extra"):
        ManifestRow.from_json(json.dumps(data))


def test_inspect_accepts_a_photo() -> None:
    facts = inspect_image(encoded(photo()), min_side=64, max_pixels=10_000_000)
    assert (facts.width, facts.height, facts.format) == (120, 160, "jpeg") and len(facts.phash) == 16


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"<!doctype html><html>Image unavailable</html>", "not_an_image"),
        (encoded(photo(size=(40, 200))), "too_small"),
        (encoded(photo(size=(4000, 3000))), "too_large"),
        (encoded(photo())[:-400], "truncated"),
    ],
)
def test_inspect_rejects_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as raised:
        inspect_image(data, min_side=64, max_pixels=10_000_000)
    assert raised.value.reason == reason


def test_perceptual_hash_survives_reencoding_and_resizing_but_not_another_photo() -> None:
    original = photo(1, (240, 320))
    reencoded = Image.open(io.BytesIO(encoded(original.resize((180, 240)), quality=60)))
    other = photo(2, (240, 320))
    assert hamming(perceptual_hash(original), perceptual_hash(reencoded)) <= 4
    assert hamming(perceptual_hash(original), perceptual_hash(other)) > 12
