"""Great Expectations validation of a manifest: each bad row quarantined under its reason,
nothing deleted, dataset-level problems stop the stage with the Data Docs path."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.config import SamePhotoParams
from pipelines.manifest import ManifestRow, append_rows, read_manifest
from pipelines.validation import collapsed_sources, duplicate_of, look_at

pytestmark = pytest.mark.slow


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def photo(seed: int, size=(160, 120)) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 255, size=(6, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC))


BASE = ManifestRow(
    sha256="",
    path="",
    source="shop",
    image_url="",
    product_url="http://s/p",
    title="t",
    breadcrumb="b",
    item_hint="jeans",
    price=1.0,
    width=160,
    height=120,
    format="jpeg",
    bytes=1,
    phash="",
    crawled_at="t",
)


def add_image(root: Path, name: str, data: bytes, phash: str, **changes) -> ManifestRow:
    path = f"shop/images/{name}.jpg"
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)
    return replace(BASE, sha256=name * 64, path=path, image_url=f"http://s/{name}.jpg", phash=phash, **changes)


def run_validate(params: Path, raw: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The validate stage over `raw`, writing under `tmp_path` (validated/, docs/, summary.json)."""
    arguments = ["--params", str(params), "--manifests", str(raw), "--crawl-reports", str(tmp_path / "crawl")]
    arguments += ["--out", str(tmp_path / "validated"), "--docs", str(tmp_path / "docs")]
    arguments += ["--summary", str(tmp_path / "summary.json")]
    command = [sys.executable, "-m", "pipelines.stages.validate", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_each_bad_row_is_quarantined_under_its_reason_and_nothing_is_deleted(
    tmp_path: Path, shipped_params_path: Path
) -> None:
    raw = tmp_path / "raw"
    rows = [
        add_image(raw, "a", jpeg(photo(1)), "0000000000000000"),
        add_image(raw, "b", jpeg(photo(2)), "ffffffffffffffff"),
        add_image(raw, "c", b"not an image at all", "0f0f0f0f0f0f0f0f"),
        add_image(raw, "d", jpeg(np.full((120, 160, 3), 200, np.uint8)), "00ff00ff00ff00ff"),
        # "a" resized and re-encoded: the same photo, 2 pHash bits from it, so a duplicate.
        add_image(raw, "e", jpeg(np.asarray(Image.fromarray(photo(1)).resize((120, 90)))), "0000000000000003"),
        # Another photo 1 bit from "a" by pHash (a look-alike product): the same-photo rule keeps it.
        add_image(raw, "h", jpeg(photo(6)), "0000000000000001"),
        add_image(raw, "f", jpeg(photo(4, (400, 80))), "f0f0f0f0f0f0f0f0", width=400, height=80),
        add_image(raw, "g", jpeg(photo(5)), "ff00ff00ff00ff00", format="gif"),
    ]
    append_rows(raw / "shop" / "manifest.jsonl", rows)
    out = tmp_path / "validated"
    result = run_validate(shipped_params_path, raw, tmp_path)
    assert result.returncode == 0, result.stderr
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert dict(zip(quarantine["sha256"].str[0], quarantine["reason"])) == {
        "c": "undecodable",
        "d": "blank",
        "e": "duplicate",
        "f": "aspect_ratio",
        "g": "format_not_allowed",
    }
    validated = pd.read_parquet(out / "manifest.parquet")
    assert sorted(validated["sha256"].str[0]) == ["a", "b", "h"]
    assert validated["grey_thumbnail"].str.len().eq(2048).all()  # the fingerprint the label stage groups by
    assert len(read_manifest(raw / "shop" / "manifest.jsonl").rows) == 8  # the raw snapshot keeps every row
    assert all((raw / row.path).is_file() for row in rows)
    assert (tmp_path / "docs" / "index.html").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["valid"] == 3 and summary["quarantined"]["duplicate"] == 1

    # A source that suddenly returns far fewer products stops the stage with the Data Docs path.
    history = tmp_path / "crawl" / "shop" / "crawls.jsonl"
    history.parent.mkdir(parents=True)
    history.write_text(json.dumps({"products": 400}) + "\n" + json.dumps({"products": 40}) + "\n")
    stopped = run_validate(shipped_params_path, raw, tmp_path)
    assert stopped.returncode == 1
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"error: validation failed: source shop collapsed: 40 products, 400 the crawl before "
        f"(Data Docs: {tmp_path / 'docs' / 'index.html'})"
    )


def test_an_unreadable_manifest_line_is_reported_with_its_number_never_skipped_silently(
    tmp_path: Path, shipped_params_path: Path
) -> None:
    raw = tmp_path / "raw"
    manifest = raw / "shop" / "manifest.jsonl"
    append_rows(manifest, [add_image(raw, "a", jpeg(photo(1)), "0000000000000000")])
    with manifest.open("a") as handle:  # a torn write in the middle, then a valid row after it
        handle.write('{"sha256": "bbbb", "path": "shop/ima\n')
    append_rows(manifest, [add_image(raw, "b", jpeg(photo(2)), "ffffffffffffffff")])
    result = run_validate(shipped_params_path, raw, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"warning: {manifest}: line 2 cannot be read, left out" in result.stderr
    assert "unreadable manifest lines: 1" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["valid"] == 2 and summary["unreadable_lines"] == {str(manifest): [2]}
    assert len(manifest.read_text().splitlines()) == 3  # the line stays for a person to look at


def test_duplicates_keep_the_first_of_their_kind() -> None:
    # Without fingerprints the pHash decides: "c" is within 2 bits of "a".
    rule = SamePhotoParams()
    assert duplicate_of(["a", "b", "a", "c"], ["00", "ff", "00", "01"], [None] * 4, 2, rule) == [None, None, "a", "a"]


def test_grey_std_tells_blank_from_photo_and_none_for_garbage() -> None:
    assert look_at(jpeg(np.full((50, 50, 3), 90, np.uint8))).grey_std < 1.0
    assert look_at(jpeg(photo(9))).grey_std > 10.0
    assert look_at(b"garbage") is None


def test_collapsed_sources_needs_two_crawls(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "crawls.jsonl").write_text(json.dumps({"products": 10}) + "\n")
    assert collapsed_sources(tmp_path, 0.5) == []
