"""What `similar` saves by reading the catalogue tier by tier: POST /similar's catalogue query
(pipelines/catalogue.py:similar), which stops once the page's `limit` products are ranked, side by
side with the same query reading every tier (`stop_early=False`: the cost before tiers, every
tagged photo's embeddings decoded on each request), on one synthetic catalogue the size of the
demo's, in one run; both must return the same hits.

The catalogue is built in a temporary folder with the real schema and writer-side encoding: N
photos of shirts (collar, pattern) and jeans (fit, colour, washing, damage), random labels from
each component's classes (10% `unknown`), 1,024-wide float16 unit embeddings (DenseNet121's
pooled features); the queries are the tags of photos drawn from it, as an upload of a catalogue
photo would be tagged.

Usage: python bench/similar_tiers.py [--photos 3500] [--products 1500] [--queries 30] [--limit 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.catalogue import connect, encode_embedding, similar
from pipelines.config import DEFAULT_PARAMS_PATH, load_params
from pipelines.predict import ComponentTag, PhotoTags, unit_vector

WIDTH = 1024


def build(path: Path, photos: int, products: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """Writes the catalogue; returns each photo's labels."""
    params = load_params(DEFAULT_PARAMS_PATH)
    by_item: dict[str, list[str]] = {}
    for name, component in params.components.items():
        by_item.setdefault(component.item, []).append(name)
    labels: list[dict[str, str]] = []
    with connect(path, create=True) as connection, connection:
        for i in range(photos):
            sha, item = f"{i:064x}", ("shirt", "jeans")[i % 2]
            connection.execute(
                "INSERT INTO items VALUES (?, 'bench', ?, ?, ?, 'det', '[]', '2026-11-30')",
                (sha, f"http://shop/p/{i % products}", f"product {i % products}", f"bench/{sha}.jpg"),
            )
            tags = {}
            for name in by_item[item]:
                classes = params.components[name].classes
                label = "unknown" if rng.random() < 0.1 else str(rng.choice(classes))
                tags[name] = label
                vector = encode_embedding(unit_vector(rng.normal(size=WIDTH).astype(np.float32)))
                connection.execute(
                    "INSERT INTO tags VALUES (?, ?, '1', ?, ?, ?, NULL, NULL, NULL, ?)",
                    (sha, name, label, label, float(rng.random()), vector),
                )
            labels.append(tags)
    return labels


def query_of(tags: dict[str, str], rng: np.random.Generator) -> PhotoTags:
    photo = PhotoTags()
    for name, label in tags.items():
        photo.tags[name] = ComponentTag(
            name, label, 0.9, label, {}, "1", None, unit_vector(rng.normal(size=WIDTH).astype(np.float32))
        )
    return photo


def read_everything(catalogue: Path, photo: PhotoTags, limit: int = 12) -> tuple[list, list[str]]:
    return similar(catalogue, photo, limit=limit, stop_early=False)


def p50_ms(function, catalogue: Path, queries: list[PhotoTags], limit: int) -> tuple[float, list[list[str]]]:
    seconds, answers = [], []
    for query in queries:
        started = time.perf_counter()
        hits, _ = function(catalogue, query, limit=limit)
        seconds.append(time.perf_counter() - started)
        answers.append([hit.sha256 for hit in hits])
    return statistics.median(seconds) * 1000, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3500)
    parser.add_argument("--products", type=int, default=1500)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--limit", type=int, default=12, help="the page's limit (params search.similar_limit)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="seamline-similar-") as folder:
        catalogue = Path(folder) / "catalogue.db"
        started = time.perf_counter()
        labels = build(catalogue, args.photos, args.products, rng)
        print(
            f"catalogue: {args.photos} photos, {args.products} products, built in {time.perf_counter() - started:.1f} s"
        )
        queries = [query_of(labels[i], rng) for i in rng.choice(len(labels), size=args.queries, replace=False)]
        p50_ms(read_everything, catalogue, queries[:3], args.limit)  # warm the page cache for both arms alike
        everything, all_answers = p50_ms(read_everything, catalogue, queries, args.limit)
        tiered, tiered_answers = p50_ms(similar, catalogue, queries, args.limit)
        same = tiered_answers == all_answers
    print(
        f"similar, limit {args.limit}: p50 {tiered:.1f} ms (tier by tier) vs {everything:.1f} ms (every photo read); "
        f"{everything / tiered:.1f}x faster; same top {args.limit}: {'yes' if same else 'NO'}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
