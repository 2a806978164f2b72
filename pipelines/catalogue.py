"""The catalogue index: every validated crawled image tagged by each component's champion, in one
SQLite file the search service reads; the weekly flow's `index` step (`pipelines.stages.index`),
`seamline index` and `seamline serve` refresh it.

Per image it keeps the product it came from (URL, title, source), per component the label, its
probability (or `unknown`), the model version that said so, the crop it saw (a JPEG thumbnail)
and the classifier backbone's pooled features (unit length) that `similar` ranks by. Refreshing is
incremental: an image is tagged again only when it is new, when its component's champion is a
different version than the one that tagged it, or when the detector changed. Detections come from
the index itself, then from the crop stage's detection cache, and only then from the detector.
Work is committed batch by batch, so a killed refresh keeps what it did.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import Params
from pipelines.crop import DetectionCache

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sha256 TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    product_url TEXT NOT NULL,
    title TEXT NOT NULL,
    image_path TEXT NOT NULL,          -- relative to the crawl's data root (data/raw)
    detector_version TEXT,
    detections TEXT,                   -- the detector's records (JSON), reused on a champion change
    indexed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    sha256 TEXT NOT NULL REFERENCES items(sha256) ON DELETE CASCADE,
    component TEXT NOT NULL,
    model_version TEXT NOT NULL,
    label TEXT,                        -- a class, `unknown`, or NULL when skipped
    best_guess TEXT,
    probability REAL,
    skipped TEXT,                      -- why the component has no tag (no jeans found, ...)
    box TEXT,                          -- x0 y0 x1 y1 of the region, original pixels
    crop BLOB,                         -- JPEG thumbnail of the crop the classifier saw
    embedding BLOB,                    -- float16 unit-length pooled backbone features
    PRIMARY KEY (sha256, component)
);
CREATE INDEX IF NOT EXISTS tags_by_label ON tags (component, label, probability);
CREATE INDEX IF NOT EXISTS items_by_product ON items (product_url);
"""
UNKNOWN = "unknown"


class CatalogueError(RuntimeError):
    """A catalogue that cannot be built or read, with the reason."""


# --- the attribute vocabulary: query names → components -------------------------------------


def attribute_names(params: Params) -> dict[str, str]:
    """Query-parameter name → component: each component's full name, and its attribute part
    (`collar` for `shirt-collar`) wherever no other component shares that part."""
    names = {name: name for name in params.components}
    parts: dict[str, list[str]] = {}
    for name in params.components:
        parts.setdefault(name.split("-", 1)[1], []).append(name)
    names.update({part: owners[0] for part, owners in parts.items() if len(owners) == 1})
    return names


def parse_filters(query: Mapping[str, str], params: Params) -> dict[str, str]:
    """component → wanted label from query pairs such as `collar=band`; raises ValueError naming
    the unknown attribute or label and what is allowed."""
    names = attribute_names(params)
    filters: dict[str, str] = {}
    for key, value in query.items():
        component = names.get(key)
        if component is None:
            raise ValueError(f"unknown attribute {key!r}; known: {', '.join(sorted(names))}")
        classes = params.components[component].classes
        if value not in classes:
            raise ValueError(f"{key}={value!r} is not a {component} class; one of: {', '.join(classes)}")
        filters[component] = value
    return filters


# --- storage --------------------------------------------------------------------------------


@contextmanager
def connect(path: Path, create: bool = False) -> Iterator[sqlite3.Connection]:
    if not create and not path.is_file():
        raise CatalogueError(f"{path}: no catalogue yet (build it with `seamline index`)")
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        if create:  # only writers set up the file; each search request opens a reader
            # WAL (persistent in the file): the search service keeps reading while a refresh writes.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(SCHEMA)
        yield connection
    except sqlite3.DatabaseError as error:
        raise CatalogueError(f"{path}: {error}") from None
    finally:
        connection.close()


def encode_embedding(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype=np.float16).tobytes()


def decode_embedding(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float16).astype(np.float32)


def jpeg_thumbnail(pixels: np.ndarray, side: int) -> bytes:
    """An RGB or RGBA crop as a JPEG no larger than side × side (RGBA composited on white)."""
    import cv2

    image = pixels.astype(np.float32)
    if image.shape[2] == 4:
        alpha = image[..., 3:] / 255.0
        image = image[..., :3] * alpha + 255.0 * (1.0 - alpha)
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale < 1.0:
        image = cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
    )
    if not ok:
        raise CatalogueError("a crop could not be encoded as JPEG")
    return encoded.tobytes()


# --- refreshing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueImage:
    sha256: str
    source: str
    product_url: str
    title: str
    path: str
    item_hint: str | None = None  # what the shop sells it as (shirt, jeans), where its page says


def sold_as(tags: Any, item_hint: str | None, components: Mapping[str, Any]) -> Any:
    """A photo's tags less the components of an item its shop does not sell it as: the shop's
    category outranks the detector, which on real photos found "jeans" on 55% of tops and 85% of
    other trousers (docs/real-photos.md). A product the shop did not categorise keeps every tag."""
    if item_hint is None:
        return tags
    for name in [name for name in tags.tags if components[name].item != item_hint]:
        del tags.tags[name]
        tags.crops.pop(name, None)
        tags.skipped[name] = f"sold as {item_hint}"
    return tags


@dataclass
class RefreshSummary:
    images: int = 0
    removed: int = 0
    tagged: int = 0
    up_to_date: int = 0
    unreadable: int = 0
    detected: int = 0
    detections_reused: int = 0
    seconds: float = 0.0
    models: dict[str, str] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def validated_images(manifest: Path) -> list[CatalogueImage]:
    import pandas as pd

    if not manifest.is_file():
        raise CatalogueError(f"{manifest}: no validated manifest (run the validate stage first)")
    table = pd.read_parquet(manifest, columns=["sha256", "source", "product_url", "title", "path", "item_hint"])
    return [
        CatalogueImage(*row[:-1], item_hint=row[-1] if isinstance(row[-1], str) and row[-1] else None)
        for row in table.itertuples(index=False)
    ]


def images_to_tag(
    connection: sqlite3.Connection, images: Sequence[CatalogueImage], models: Mapping[str, str], detector_version: str
) -> list[CatalogueImage]:
    """The images some component lacks a tag for from its current model, or whose detections
    came from another detector."""
    current: dict[str, dict[str, str]] = {}
    for row in connection.execute("SELECT sha256, component, model_version FROM tags"):
        current.setdefault(row["sha256"], {})[row["component"]] = row["model_version"]
    detected_by = {
        row["sha256"]: row["detector_version"]
        for row in connection.execute("SELECT sha256, detector_version FROM items")
    }
    return [
        image
        for image in images
        if detected_by.get(image.sha256) != detector_version
        or any(current.get(image.sha256, {}).get(name) != version for name, version in models.items())
    ]


def known_detections(
    connection: sqlite3.Connection, crop_cache: Path | None, detector_version: str, shas: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Detection records this detector version already produced: the index's own, else the crop
    stage's cache (read, never written: it is a DVC output)."""
    wanted = set(shas)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in connection.execute(
        "SELECT sha256, detections FROM items WHERE detector_version = ?", (detector_version,)
    ):
        if row["sha256"] in wanted and row["detections"] is not None:
            found[row["sha256"]] = json.loads(row["detections"])
    if crop_cache is not None and wanted - set(found):
        cached = DetectionCache(crop_cache, detector_version).records
        for sha in wanted - set(found):
            if "detections" in cached.get(sha, {}):
                found[sha] = cached[sha]["detections"]
    return found


def refresh(
    params: Params,
    tagger: Any,
    manifest: Path,
    images_root: Path,
    catalogue: Path,
    crop_cache: Path | None = None,
    progress: Callable[[str], None] = print,
) -> RefreshSummary:
    """Bring the catalogue up to date with the validated images and the tagger's models."""
    from pipelines.detect import (
        chunks,
        detection_from_record,
        detection_record,
        read_rgb,
    )

    started = time.perf_counter()
    images = validated_images(manifest)
    models = {name: classifier.version for name, classifier in tagger.classifiers.items()}
    summary = RefreshSummary(images=len(images), models=models)
    with connect(catalogue, create=True) as connection:
        keep = {image.sha256 for image in images}
        gone = [row["sha256"] for row in connection.execute("SELECT sha256 FROM items") if row["sha256"] not in keep]
        connection.executemany("DELETE FROM items WHERE sha256 = ?", [(sha,) for sha in gone])
        # A component no longer served (no champion) must not answer searches with stale tags.
        connection.execute(f"DELETE FROM tags WHERE component NOT IN ({','.join('?' * len(models))})", list(models))
        connection.commit()
        summary.removed = len(gone)
        todo = images_to_tag(connection, images, models, tagger.detector.version)
        summary.up_to_date = len(images) - len(todo)
        progress(
            f"index: {len(images)} validated images, {summary.up_to_date} up to date, {len(todo)} to tag "
            f"with {', '.join(f'{n} v{v}' for n, v in models.items())}"
        )
        done = 0
        for batch in chunks(todo, params.search.batch_size):
            known = known_detections(connection, crop_cache, tagger.detector.version, [image.sha256 for image in batch])
            pixels = {image.sha256: read_rgb(images_root / image.path) for image in batch}
            readable = [image for image in batch if pixels[image.sha256] is not None]
            summary.unreadable += len(batch) - len(readable)
            unseen = [image for image in readable if image.sha256 not in known]
            if unseen:
                for image, found in zip(unseen, tagger.detector.detect([pixels[image.sha256] for image in unseen])):
                    known[image.sha256] = [detection_record(d) for d in found]
            summary.detected += len(unseen)
            summary.detections_reused += len(readable) - len(unseen)
            detections = [[detection_from_record(r) for r in known[image.sha256]] for image in readable]
            tagged = [
                sold_as(tags, image.item_hint, params.components)
                for image, tags in zip(
                    readable,
                    tagger.tag([pixels[image.sha256] for image in readable], keep_crops=True, detections=detections),
                )
            ]
            _store(connection, readable, tagged, known, tagger.detector.version, params.search.crop_preview_px, models)
            summary.tagged += len(readable)
            done += len(batch)
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress(f"index: tagged {done}/{len(todo)} images ({rate:.1f} images/s)")
        summary.labels = label_counts(connection)
    summary.seconds = round(time.perf_counter() - started, 2)
    return summary


def _store(
    connection: sqlite3.Connection,
    images: Sequence[CatalogueImage],
    tagged: Sequence[Any],
    detections: Mapping[str, Any],
    detector_version: str,
    preview_px: int,
    models: Mapping[str, str],
) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with connection:  # one transaction per batch
        for image, tags in zip(images, tagged):
            connection.execute(
                "INSERT INTO items (sha256, source, product_url, title, image_path, detector_version, detections, "
                "indexed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET source=excluded.source, "
                "product_url=excluded.product_url, title=excluded.title, image_path=excluded.image_path, "
                "detector_version=excluded.detector_version, detections=excluded.detections, "
                "indexed_at=excluded.indexed_at",
                (
                    image.sha256,
                    image.source,
                    image.product_url,
                    image.title,
                    image.path,
                    detector_version,
                    json.dumps(detections[image.sha256], separators=(",", ":")),
                    stamp,
                ),
            )
            rows = []
            for name, version in models.items():
                tag = tags.tags.get(name)
                if tag is None:
                    rows.append(
                        (
                            image.sha256,
                            name,
                            version,
                            None,
                            None,
                            None,
                            tags.skipped.get(name, "not tagged"),
                            None,
                            None,
                            None,
                        )
                    )
                    continue
                crop = tags.crops.get(name)
                rows.append(
                    (
                        image.sha256,
                        name,
                        version,
                        tag.label,
                        tag.best_guess,
                        tag.probability,
                        None,
                        " ".join(f"{v:.1f}" for v in tag.box) if tag.box else None,
                        jpeg_thumbnail(crop, preview_px) if crop is not None else None,
                        encode_embedding(tag.embedding),
                    )
                )
            connection.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def label_counts(connection: sqlite3.Connection) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    query = (
        "SELECT component, COALESCE(label, 'skipped') AS label, COUNT(*) AS n FROM tags "
        "GROUP BY component, label ORDER BY component, label"
    )
    for row in connection.execute(query):
        counts.setdefault(row["component"], {})[row["label"]] = row["n"]
    return counts


def indexed_models(connection: sqlite3.Connection) -> dict[str, list[str]]:
    """component → the model versions its catalogue tags come from (one, when up to date)."""
    found: dict[str, list[str]] = {}
    for row in connection.execute(
        "SELECT DISTINCT component, model_version FROM tags ORDER BY component, model_version"
    ):
        found.setdefault(row["component"], []).append(row["model_version"])
    return found


# --- reading: search and similar --------------------------------------------------------------


@dataclass
class Hit:
    """One catalogue product: its best-matching photo and that photo's tags."""

    sha256: str
    product_url: str
    title: str
    source: str
    tags: dict[str, dict[str, Any]]
    score: float
    shared: list[str] = field(default_factory=list)
    similarity: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "product_url": self.product_url,
            "title": self.title,
            "source": self.source,
            "image": f"/catalogue/{self.sha256}/image",
            "score": round(self.score, 4),
            "tags": self.tags,
            "shared": self.shared,
            **({"similarity": round(self.similarity, 4)} if self.similarity is not None else {}),
        }


@dataclass(frozen=True)
class Page:
    total: int
    page: int
    per_page: int
    hits: list[Hit]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _tags_of(connection: sqlite3.Connection, shas: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    found: dict[str, dict[str, dict[str, Any]]] = {sha: {} for sha in shas}
    for start in range(0, len(shas), 500):
        part = shas[start : start + 500]
        query = (
            f"SELECT sha256, component, label, best_guess, probability, crop IS NOT NULL AS has_crop FROM tags "
            f"WHERE label IS NOT NULL AND sha256 IN ({','.join('?' * len(part))})"
        )
        for row in connection.execute(query, list(part)):
            found[row["sha256"]][row["component"]] = {
                "label": row["label"],
                "best_guess": row["best_guess"],
                "probability": round(row["probability"], 4),
                "crop": f"/catalogue/{row['sha256']}/crop/{row['component']}" if row["has_crop"] else None,
            }
    return found


def search(
    catalogue: Path, filters: Mapping[str, str], page: int = 1, per_page: int = 24, min_probability: float = 0.0
) -> Page:
    """Products whose photo carries every wanted label (at or above `min_probability`), best
    combined probability first; one hit per product (its best photo). No filters: every product."""
    joins = "".join(
        f" JOIN tags t{i} ON t{i}.sha256 = i.sha256 AND t{i}.component = ? AND t{i}.label = ? AND t{i}.probability >= ?"
        for i in range(len(filters))
    )
    arguments: list[Any] = [
        value for component, label in filters.items() for value in (component, label, min_probability)
    ]
    score = " + ".join(f"t{i}.probability" for i in range(len(filters))) or "0"
    # Each product's best photo: the highest score, ties by hash so pages are stable.
    ranked = (
        f"SELECT i.sha256, i.product_url, i.title, i.source, ({score}) AS score, "
        f"ROW_NUMBER() OVER (PARTITION BY i.product_url ORDER BY ({score}) DESC, i.sha256) AS nth FROM items i{joins}"
    )
    with connect(catalogue) as connection:
        total = connection.execute(f"SELECT COUNT(*) FROM ({ranked}) WHERE nth = 1", arguments).fetchone()[0]
        rows = connection.execute(
            f"SELECT * FROM ({ranked}) WHERE nth = 1 ORDER BY score DESC, product_url LIMIT ? OFFSET ?",
            [*arguments, per_page, (page - 1) * per_page],
        ).fetchall()
        tags = _tags_of(connection, [row["sha256"] for row in rows])
    hits = [
        Hit(
            row["sha256"],
            row["product_url"],
            row["title"],
            row["source"],
            tags[row["sha256"]],
            row["score"] / max(len(filters), 1),
            shared=sorted(filters),
        )
        for row in rows
    ]
    return Page(total, page, per_page, hits)


def similar(catalogue: Path, photo: Any, limit: int = 12, stop_early: bool = True) -> tuple[list[Hit], list[str]]:
    """Products sharing the photo's predicted labels (not `unknown`), ranked by the mean cosine
    similarity of backbone features over the components both were tagged on. If no product shares
    them all, those sharing the most come first. Returns (hits, the attributes matched on).

    Photos are read tier by tier, most shared labels first (counted by SQL on the label index),
    and reading stops once `limit` products are ranked: no lower tier can outrank them, so a
    request does not decode the embeddings of the whole catalogue. `stop_early=False` reads every
    tier, the cost the early stop saves (bench/similar_tiers.py sets the two side by side)."""
    wanted = {name: tag.label for name, tag in photo.tags.items() if not tag.unknown}
    components = list(photo.tags)
    if not components:
        return [], []
    vectors = {name: tag.embedding for name, tag in photo.tags.items() if tag.embedding is not None}
    best_per_product: dict[str, tuple[int, float, str, dict[str, Any]]] = {}
    with connect(catalogue) as connection:
        for shared_count, shas in _tiers_by_shared_labels(connection, wanted, components):
            tier: list[tuple[int, float, str, dict[str, Any]]] = []
            for sha, entry in _candidates(connection, shas, components, wanted, vectors).items():
                tier.append((shared_count, float(np.mean(entry["cosines"])) if entry["cosines"] else -1.0, sha, entry))
            for item in sorted(tier, key=lambda s: (-s[1], s[2])):
                best_per_product.setdefault(item[3]["product_url"], item)
            if stop_early and len(best_per_product) >= limit:
                break
        chosen = sorted(best_per_product.values(), key=lambda s: (-s[0], -s[1], s[2]))[:limit]
        tags = _tags_of(connection, [sha for _, _, sha, _ in chosen])
    hits = [
        Hit(
            sha,
            entry["product_url"],
            entry["title"],
            entry["source"],
            tags[sha],
            shared_count / max(len(wanted), 1),
            shared=sorted(entry["shared"]),
            similarity=cosine,
        )
        for shared_count, cosine, sha, entry in chosen
    ]
    return hits, sorted(wanted)


def _tiers_by_shared_labels(
    connection: sqlite3.Connection, wanted: Mapping[str, str], components: Sequence[str]
) -> Iterator[tuple[int, list[str]]]:
    """(how many of the wanted labels, the photos sharing exactly that many), most first; with no
    wanted label, one tier of every photo tagged on any of the components."""
    if not wanted:
        among = ",".join("?" * len(components))
        query = f"SELECT DISTINCT sha256 FROM tags WHERE label IS NOT NULL AND component IN ({among})"
        yield 0, sorted(row["sha256"] for row in connection.execute(query, list(components)))
        return
    matches = " OR ".join("(component = ? AND label = ?)" for _ in wanted)
    query = f"SELECT sha256, COUNT(*) AS shared FROM tags WHERE {matches} GROUP BY sha256"
    tiers: dict[int, list[str]] = {}
    for row in connection.execute(query, [value for pair in wanted.items() for value in pair]):
        tiers.setdefault(row["shared"], []).append(row["sha256"])
    for shared_count in sorted(tiers, reverse=True):
        yield shared_count, sorted(tiers[shared_count])


def _candidates(
    connection: sqlite3.Connection,
    shas: Sequence[str],
    components: Sequence[str],
    wanted: Mapping[str, str],
    vectors: Mapping[str, np.ndarray],
) -> dict[str, dict[str, Any]]:
    """sha256 → its product, the wanted labels it shares and its cosines to the photo's features,
    over the components both were tagged on."""
    candidates: dict[str, dict[str, Any]] = {}
    for start in range(0, len(shas), 500):
        part = list(shas[start : start + 500])
        query = (
            f"SELECT t.sha256, t.component, t.label, t.embedding, i.product_url, i.title, i.source FROM tags t "
            "JOIN items i ON i.sha256 = t.sha256 WHERE t.label IS NOT NULL AND t.component IN "
            f"({','.join('?' * len(components))}) "
            f"AND t.sha256 IN ({','.join('?' * len(part))})"
        )
        for row in connection.execute(query, [*components, *part]):
            entry = candidates.setdefault(
                row["sha256"],
                {
                    "product_url": row["product_url"],
                    "title": row["title"],
                    "source": row["source"],
                    "shared": [],
                    "cosines": [],
                },
            )
            if wanted.get(row["component"]) == row["label"]:
                entry["shared"].append(row["component"])
            stored = decode_embedding(row["embedding"])
            mine = vectors.get(row["component"])
            if stored is not None and mine is not None and stored.shape == mine.shape:
                entry["cosines"].append(float(np.dot(stored, mine)))
    return candidates


def crop_jpeg(catalogue: Path, sha256: str, component: str) -> bytes | None:
    with connect(catalogue) as connection:
        row = connection.execute(
            "SELECT crop FROM tags WHERE sha256 = ? AND component = ?", (sha256, component)
        ).fetchone()
    return row["crop"] if row else None


def image_path(catalogue: Path, sha256: str) -> str | None:
    with connect(catalogue) as connection:
        row = connection.execute("SELECT image_path FROM items WHERE sha256 = ?", (sha256,)).fetchone()
    return row["image_path"] if row else None


def statistics(catalogue: Path) -> dict[str, Any]:
    with connect(catalogue) as connection:
        images = connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        products = connection.execute("SELECT COUNT(DISTINCT product_url) FROM items").fetchone()[0]
        return {
            "images": images,
            "products": products,
            "models": indexed_models(connection),
            "labels": label_counts(connection),
        }


# --- refreshing with the champions -----------------------------------------------------------------


def already_current(params: Params, manifest: Path, catalogue: Path) -> RefreshSummary | None:
    """The summary of a catalogue that already agrees with the validated images, the champions'
    versions and the champion detector, found without loading a model (the weekly no-op case);
    None when there is work to do."""
    from pipelines.registry import CHAMPION, DETECTOR, Registry

    if not catalogue.is_file():
        return None
    registry = Registry(params.registry)
    champion_detector = registry.alias_version(DETECTOR, CHAMPION) if registry.model_exists(DETECTOR) else None
    if champion_detector is None:
        return None  # Tagger.from_registry says why
    # The catalogue records each image's detector by content hash, as the crop stage's cache does.
    detector = registry.version(DETECTOR, champion_detector).tags.get("seamline.detector_version")
    models = {
        name: version
        for name in params.components
        if registry.model_exists(name) and (version := registry.alias_version(name, CHAMPION)) is not None
    }
    images = validated_images(manifest)
    with connect(catalogue) as connection:
        served = set(indexed_models(connection))
        stored = {row["sha256"] for row in connection.execute("SELECT sha256 FROM items")}
        if (
            not models
            or served - set(models)
            or stored - {image.sha256 for image in images}
            or images_to_tag(connection, images, models, detector)
        ):
            return None
        return RefreshSummary(
            images=len(images), up_to_date=len(images), models=models, labels=label_counts(connection)
        )


def run_refresh(
    params: Params,
    manifest: Path,
    images_root: Path,
    crop_cache: Path | None,
    catalogue: Path,
    progress: Callable[[str], None],
) -> RefreshSummary:
    """Load every champion, the detector's too, then refresh the catalogue (unless it is already
    current, which is found out without loading any model)."""
    from pipelines.predict import Tagger

    current = already_current(params, manifest, catalogue)
    if current is not None:
        progress(
            f"index: {current.images} validated images, {current.up_to_date} up to date, 0 to tag "
            f"with {', '.join(f'{n} v{v}' for n, v in current.models.items())}"
        )
        return current
    tagger = Tagger.from_registry(params)
    missing = [name for name in params.components if name not in tagger.classifiers]
    if missing:
        progress(f"index: no champion for {', '.join(missing)}: those components are not searchable yet")
    return refresh(params, tagger, manifest, images_root, catalogue, crop_cache, progress)
