"""The search service under load: /predict latency (p50/p95) and requests/s from a bounded local
load test against a real `seamline serve`, side by side with the bare model forward passes the
same photos cost, measured in this process between the HTTP rounds (never at the same time).

(a) sequential: one client, one photo per POST /predict, the round trip as the client sees it;
(b) loaded: `--clients` concurrent clients, `--requests` POSTs in all (bounded, never open-ended);
(c) bare: the detector forward pass on the preprocessed photo plus one forward pass of each
    classifier that tagged it (bench/predict_latency.py's definition).
Also /similar and /search round trips, which add the catalogue queries.

Needs registered champions and a catalogue: run `make demo` first, in the project directory.

Usage: python bench/search_latency.py [--photos 30] [--clients 4] [--requests 60] [--profile demo]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_latency import bare_seconds, test_photos

BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def start_server(profile: str, port: int, log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(BIN / "seamline"), "serve", "--profile", profile, "--port", str(port), "--no-refresh"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"search_latency: the server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit("search_latency: the server did not answer within 5 minutes")


def post(client: httpx.Client, url: str, data: bytes) -> float:
    started = time.perf_counter()
    answer = client.post(url, files={"photo": ("photo.jpg", data, "image/jpeg")}, timeout=120)
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"search_latency: {url} answered {answer.status_code}: {answer.text[:300]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--profile", default="demo")
    args = parser.parse_args()

    from pipelines.config import load_params
    from pipelines.detect import read_rgb
    from pipelines.predict import Tagger

    params = load_params(Path("params.yaml"), args.profile)
    tagger = Tagger.from_registry(params)
    photos = test_photos(
        Path("data/labels"), Path("data/validated/manifest.parquet"), list(tagger.classifiers), args.photos
    )
    files = [path.read_bytes() for _, path, _ in photos]
    pixels = [read_rgb(path) for _, path, _ in photos]
    print(
        f"{len(files)} test-split photos; champions: "
        + ", ".join(f"{n} v{c.version}" for n, c in tagger.classifiers.items())
    )

    def bare_round() -> list[float]:
        tagger.tag([pixels[0]], keep_crops=True)  # warm
        return [bare_seconds(tagger, image, tagger.tag([image], keep_crops=True)[0].crops) for image in pixels]

    bare_before = bare_round()

    server = start_server(args.profile, args.port, Path("reports") / "search_latency_server.log")
    base = f"http://127.0.0.1:{args.port}"
    try:
        with httpx.Client() as client:
            post(client, base + "/predict", files[0])  # first call traces the models
            sequential = [post(client, base + "/predict", data) for data in files]
            similar = [post(client, base + "/similar", data) for data in files[:10]]
            search = []
            for _ in range(20):
                started = time.perf_counter()
                client.get(base + "/search", params={"page": 1}).raise_for_status()
                search.append(time.perf_counter() - started)
        order = [files[i % len(files)] for i in range(args.requests)]
        started = time.perf_counter()
        with (
            ThreadPoolExecutor(args.clients) as pool,
            httpx.Client(limits=httpx.Limits(max_connections=args.clients)) as shared,
        ):
            loaded = list(pool.map(lambda data: post(shared, base + "/predict", data), order))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)

    bare = bare_before + bare_round()
    bare_p50 = statistics.median(bare)
    p50, p95 = statistics.median(sequential), percentile(sequential, 95)
    print(
        f"\n(a) POST /predict, one client:   p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms  → {1 / p50:.2f} "
        "requests/s"
    )
    print(
        f"(b) POST /predict, {args.clients} clients, {args.requests} requests: {args.requests / wall:.2f} requests/s, "
        f"p50 {statistics.median(loaded) * 1000:.0f} ms, p95 {percentile(loaded, 95) * 1000:.0f} ms"
    )
    print(f"(c) bare forward passes:        p50 {bare_p50 * 1000:.0f} ms  → ceiling {1 / bare_p50:.2f} photos/s")
    print(f"    ratio (c)/(a) p50: {bare_p50 / p50:.2f}  (1.0 = HTTP, upload checks and cropping add nothing)")
    print(f"    ratio (b) throughput / (c) ceiling: {(args.requests / wall) * bare_p50:.2f}")
    print(
        f"    POST /similar p50 {statistics.median(similar) * 1000:.0f} ms; GET /search p50 "
        f"{statistics.median(search) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
