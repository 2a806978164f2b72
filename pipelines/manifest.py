"""The manifest: one row per crawled image, the contract between crawling and every later stage.

`data/raw/<source>/manifest.jsonl` is only ever appended to, one whole line per write, so a
crawl killed mid-way leaves every finished row intact; readers skip a torn last line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

MANIFEST_NAME = "manifest.jsonl"
SCHEMA_VERSION = 1
ImageFormat = Literal["jpeg", "png", "webp", "gif", "bmp"]


@dataclass(frozen=True)
class ManifestRow:
    """One stored image and where it came from."""

    sha256: str
    path: str  # relative to the data root: <source>/images/<sha256>.<ext>
    source: str
    image_url: str
    product_url: str
    title: str
    breadcrumb: str  # category path as the shop shows it, " > "-joined
    item_hint: str | None  # shirt | jeans, from the source's hints; None when no hint matched
    price: float | None
    width: int
    height: int
    format: str
    bytes: int
    phash: str  # 64-bit perceptual hash, 16 hex digits; near duplicates differ in few bits
    crawled_at: str  # ISO 8601, UTC
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> ManifestRow:
        data = json.loads(line)
        expected = {f.name for f in fields(cls)}
        if set(data) != expected:
            missing, extra = expected - set(data), set(data) - expected
            raise ValueError(
                f"manifest row fields differ from the schema (missing {sorted(missing)}, extra {sorted(extra)})"
            )
        return cls(**data)


def manifest_path(data_root: Path, source: str) -> Path:
    return data_root / source / MANIFEST_NAME


def append_rows(path: Path, rows: Iterable[ManifestRow]) -> int:
    """Append rows, each as one complete line in one write, and fsync; returns rows written.

    O_APPEND makes every write land at the end even with another writer, and one write per line
    means a crash leaves at most one torn last line, which `read_rows` skips.
    """
    lines = [row.to_json() + "\n" for row in rows]
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if _ends_torn(path):
            # A crash tore the last line: start ours on a fresh line; readers skip the fragment.
            os.write(fd, b"\n")
        for line in lines:
            os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)


def _ends_torn(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) != b"\n"


@dataclass(frozen=True)
class ManifestRead:
    rows: list[ManifestRow]
    skipped_lines: list[int]  # 1-based numbers of torn or invalid lines


def read_manifest(path: Path) -> ManifestRead:
    """Every valid row; torn or malformed lines are reported by number, never fatal."""
    rows: list[ManifestRow] = []
    skipped: list[int] = []
    if not path.exists():
        return ManifestRead(rows, skipped)
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(ManifestRow.from_json(line))
            except (ValueError, TypeError):
                skipped.append(number)
    return ManifestRead(rows, skipped)


def iter_manifests(data_root: Path) -> Iterator[Path]:
    """Every source's manifest under the data root, in name order."""
    yield from sorted(data_root.glob(f"*/{MANIFEST_NAME}"))


# --- image facts recorded in the manifest ---------------------------------------------------


class ImageRejected(ValueError):
    """Bytes that must not enter the dataset; `reason` is a short stable key for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageFacts:
    width: int
    height: int
    format: str
    phash: str


_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "bmp": "bmp"}


def inspect_image(data: bytes, *, min_side: int, max_pixels: int) -> ImageFacts:
    """Decode-check image bytes: raises ImageRejected with reason `empty`, `not_an_image`,
    `unsupported_format`, `too_large` (checked from the header, before decoding: a
    decompression bomb never gets decoded), `too_small` or `truncated`."""
    if not data:
        raise ImageRejected("empty")
    try:
        image = Image.open(BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageRejected("too_large", str(error)) from None
    except (OSError, ValueError) as error:
        raise ImageRejected("not_an_image", str(error)) from None
    fmt = _FORMATS.get(image.format or "")
    if fmt is None:
        raise ImageRejected("unsupported_format", str(image.format))
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected("too_large", f"{width}x{height} > {max_pixels} pixels")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height} < {min_side} px")
    if fmt == "jpeg":
        # Decode at 1/8 scale: libjpeg still reads the whole stream, so truncation is caught, at
        # a fraction of the cost; the hash needs only 32x32 pixels anyway.
        image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected("truncated", str(error)) from None
    return ImageFacts(width, height, fmt, perceptual_hash(image))


def perceptual_hash(image: Image.Image) -> str:
    """DCT perceptual hash (pHash): the signs of the 8×8 lowest frequencies of a 32×32 grey
    thumbnail against their median. Robust to re-encoding, resizing and small edits."""
    # BOX averaging is enough before a DCT that keeps only the lowest frequencies, and fast.
    grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    size = 32
    k = np.arange(size)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size))
    dct = basis @ grey @ basis.T
    low = dct[:8, :8].flatten()
    bits = low > np.median(low[1:])
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


_PAIR_BLOCK = 1024  # rows compared at once: 1024 × N distances, 8 MB per 1,000 hashes


def near_duplicate_pairs(phashes: Sequence[str], max_distance: int) -> Iterator[tuple[int, int]]:
    """Index pairs (a < b) of perceptual hashes at most `max_distance` bits apart, each once.

    Every pair is compared, vectorised a block of rows at a time: 20,000 hashes take about 2 s on
    one core (bench/duplicate_pairs.py). Banding the hashes (the pigeonhole trick) is faster
    only for small distances, and the same-photo rule's candidates reach 14 bits."""
    values = np.array([int(h, 16) for h in phashes], dtype=np.uint64)
    for start in range(0, len(values), _PAIR_BLOCK):
        block = values[start : start + _PAIR_BLOCK]
        distances = np.bitwise_count(block[:, None] ^ values[None, start:])
        rows, columns = np.nonzero(distances <= max_distance)
        keep = columns > rows  # columns are offset by `start` too: upper triangle, no self-pairs
        yield from zip((rows[keep] + start).tolist(), (columns[keep] + start).tolist())


def hamming(a: str, b: str) -> int:
    """Bits that differ between two perceptual hashes."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
