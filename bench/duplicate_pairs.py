"""Candidate pairs for the same-photo rule: Seamline's all-pairs, vectorised search
(`pipelines.manifest.near_duplicate_pairs`) beside pigeonhole banding, the pure-Python index it
replaced, at the pHash-only distance (6 bits) and the rule's candidate distance (14 bits).

Side by side in one run on the same hashes: random 64-bit hashes plus, for one image in ten, a
copy a few bits away (what a crawl of resized copies gives). Both must find the same pairs.
Usage: python bench/duplicate_pairs.py [--hashes 2000 20000] [--distances 6 14]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from pipelines.manifest import near_duplicate_pairs


def banded_pairs(phashes: list[str], max_distance: int) -> Iterator[tuple[int, int]]:
    """The reference: two hashes within d bits agree exactly on one of d + 1 bands, so only
    hashes sharing a band are compared. Each pair once, like the function under test."""
    bands = max_distance + 1
    bounds = [round(64 * b / bands) for b in range(bands + 1)]
    values = [int(h, 16) for h in phashes]
    seen: set[tuple[int, int]] = set()
    for band in range(bands):
        width = bounds[band + 1] - bounds[band]
        mask = (1 << width) - 1
        buckets: dict[int, list[int]] = defaultdict(list)
        for index, value in enumerate(values):
            buckets[(value >> bounds[band]) & mask].append(index)
        for members in buckets.values():
            for position, a in enumerate(members):
                for b in members[position + 1 :]:
                    if (a, b) not in seen and bin(values[a] ^ values[b]).count("1") <= max_distance:
                        seen.add((a, b))
                        yield a, b


def hashes(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**63, size=count, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=count, dtype=np.uint64
    )
    copies = rng.choice(count, size=count // 10, replace=False)
    for index in copies[: len(copies) // 2]:  # half of them near their original
        flips = rng.choice(64, size=int(rng.integers(0, 13)), replace=False)
        values[(index + 1) % count] = values[index] ^ np.uint64(sum(1 << int(bit) for bit in flips))
    return [f"{int(value):016x}" for value in values]


def timed(function, *args) -> tuple[float, set[tuple[int, int]]]:
    start = time.perf_counter()
    found = set(function(*args))
    return time.perf_counter() - start, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hashes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--distances", type=int, nargs="+", default=[6, 14])
    args = parser.parse_args()
    print(f"{'hashes':>7} {'bits':>4} {'pairs':>7} {'all-pairs s':>12} {'banding s':>10} {'banding / all-pairs':>20}")
    for count in args.hashes:
        phashes = hashes(count, seed=count)
        for distance in args.distances:
            vectorised_s, found = timed(near_duplicate_pairs, phashes, distance)
            banded_s, expected = timed(banded_pairs, phashes, distance)
            assert found == expected, f"{count} hashes, {distance} bits: the two searches disagree"
            print(
                f"{count:>7} {distance:>4} {len(found):>7} {vectorised_s:>12.2f} {banded_s:>10.2f} "
                f"{banded_s / vectorised_s:>20.1f}"
            )


if __name__ == "__main__":
    main()
