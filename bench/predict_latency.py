"""`seamline predict` latency per photo against the bare model forward passes it is made of,
side by side in one process on the same photos, and whether its labels are right.

(a) predict: `Tagger.tag([photo])` — decode done beforehand; detector preprocessing and forward,
    mask pasting, cropping each component's region, and one classifier call per component;
(b) bare: the same photo's detector forward pass on its preprocessed input plus one forward pass
    of each classifier that (a) ran, on inputs prepared beforehand.
Also: photos/s when tagging in batches of 16, and the share of tags that match the demo shop's
ground truth (read here, never by the pipeline), on the test split's photos.

Needs registered champions: run `make demo` first (it trains, registers and promotes).

Usage: python bench/predict_latency.py [--photos 40] [--profile demo]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import tensorflow as tf

from crawlers.demo_shop.truth import ATTRIBUTE, product_labels
from pipelines.config import load_params
from pipelines.detect import read_rgb
from pipelines.predict import Tagger, resize_crop
from pipelines.registry import RegistryError


def test_photos(labels: Path, manifest: Path, components: list[str], count: int) -> list[tuple[str, Path, str]]:
    """(sha256, path, product URL) of test-split photos, shirts and jeans alternating."""
    test = set()
    for component in components:
        with (labels / f"{component}.csv").open(newline="") as handle:
            test |= {row["sha256"] for row in csv.DictReader(handle) if row["split"] == "test"}
    table = pd.read_parquet(manifest)
    table = table[table["sha256"].isin(test)].drop_duplicates("sha256").sort_values("sha256")
    # Manifest paths are relative to data/raw.
    return [(row.sha256, Path("data/raw") / row.path, row.product_url) for row in table.head(count).itertuples()]


_FORWARDS: dict[str, object] = {}


def traced_forward(tagger: Tagger, name: str):
    """The classifier alone as one traced graph: its fastest forward pass (an eager Keras call
    of DenseNet121 spends ~0.3 s in Python per call)."""
    if name not in _FORWARDS:
        model = tagger.classifiers[name].model
        size = int(tagger.classifiers[name].meta["image_size"])
        _FORWARDS[name] = tf.function(
            lambda pixels: model(pixels, training=False),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )
    return _FORWARDS[name]


def bare_seconds(tagger: Tagger, image: np.ndarray, ran: dict[str, np.ndarray]) -> float:
    """Detector forward on the preprocessed photo + each classifier's traced forward on its crop."""
    detector = tagger.detector
    prepared, info = detector.preprocess(image)
    batch, shape = tf.expand_dims(prepared, 0), tf.constant(info[None, 1, :], tf.float32)
    inputs = {
        name: resize_crop(crop, int(tagger.classifiers[name].meta["image_size"]))[None] for name, crop in ran.items()
    }
    forwards = {name: traced_forward(tagger, name) for name in inputs}
    started = time.perf_counter()
    detector.raw_forward(batch, shape)
    for name, pixels in inputs.items():
        forwards[name](pixels)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--shop", type=Path, default=Path("data/demo_shop"))
    args = parser.parse_args()
    params = load_params(Path("params.yaml"), args.profile)
    try:
        tagger = Tagger.from_registry(params)
    except RegistryError as error:
        print(f"predict_latency: {error}", file=sys.stderr)
        return 2
    photos = test_photos(
        Path("data/labels"), Path("data/validated/manifest.parquet"), list(tagger.classifiers), args.photos
    )
    images = [(sha, read_rgb(path), url) for sha, path, url in photos]
    images = [(sha, pixels, url) for sha, pixels, url in images if pixels is not None]
    print(
        f"{len(images)} test-split photos; champions: "
        + ", ".join(f"{n} v{c.version}" for n, c in tagger.classifiers.items())
    )

    tagger.tag([images[0][1]], keep_crops=True)  # traces and warms every model
    tagger.tag([pixels for _, pixels, _ in images[:16]])
    bare_seconds(tagger, images[0][1], tagger.tag([images[0][1]], keep_crops=True)[0].crops)
    predict_times, bare_times, tags = [], [], []
    for _, pixels, _ in images:
        started = time.perf_counter()
        result = tagger.tag([pixels], keep_crops=True)[0]
        predict_times.append(time.perf_counter() - started)
        bare_times.append(bare_seconds(tagger, pixels, result.crops))
        tags.append(result)
    started = time.perf_counter()
    for start in range(0, len(images), 16):
        tagger.tag([pixels for _, pixels, _ in images[start : start + 16]])
    batched = len(images) / (time.perf_counter() - started)

    p50_predict, p50_bare = statistics.median(predict_times), statistics.median(bare_times)
    p95 = float(np.percentile(predict_times, 95))
    print(f"\n(a) predict, one photo at a time: p50 {p50_predict * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    print(f"(b) bare forward passes (detector + classifiers run): p50 {p50_bare * 1000:.0f} ms")
    print(f"    ratio (b)/(a): {p50_bare / p50_predict:.2f}  (1.0 = predict adds nothing to the models' own cost)")
    print(f"    batched (16 per call): {batched:.1f} photos/s vs {1 / p50_predict:.1f} photos/s one at a time")

    truth = product_labels(args.shop) if (args.shop / "ground_truth.jsonl").is_file() else {}
    if truth:
        print(
            f"\n{'component':<14} {'tagged':>7} {'wrong item':>11} {'right':>6} {'unknown':>8} {'acc (answered)':>15}"
        )
        for component in tagger.classifiers:
            # A photo of the other item (a shirt component on jeans) has no truth: a detector error.
            rows = [
                (t.tags[component], truth[re.sub(r"^https?://[^/]+", "", url)].get(ATTRIBUTE[component]))
                for (_, _, url), t in zip(images, tags)
                if component in t.tags
            ]
            wrong_item = sum(1 for _, true in rows if true is None)
            answered = [(tag, true) for tag, true in rows if not tag.unknown]
            right = sum(1 for tag, true in answered if tag.label == true)
            accuracy = right / len(answered) if answered else 0.0
            print(
                f"{component:<14} {len(rows):>7} {wrong_item:>11} {right:>6} {len(rows) - len(answered):>8} "
                f"{accuracy:>15.3f}"
            )
        sample_sha, _, sample_url = images[0]
        print(
            "\nfirst photo:",
            sample_sha[:12],
            json.dumps({k: v["label"] for k, v in tags[0].as_json()["components"].items()}),
            "truth:",
            json.dumps(truth[re.sub(r"^https?://[^/]+", "", sample_url)]),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
