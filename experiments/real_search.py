"""What a shopper gets from the search page on the real-photo shop: for every attribute and class,
the first page of `/search?<attribute>=<class>` checked against the hand labels
(eval/real-photos/). Precision is the share of the results a person labelled that class, among
the results a person labelled at all (a photo labelled `unclear`, `other` or `none` has no class).
The catalogue holds the photos the models were trained on too; with `--labels`, precision is also
given over the results the component's model never saw in training or validation.

Usage: python -m experiments.real_search [--url http://127.0.0.1:8000] [--per-page 24] [--labels data/labels]
       [--out FILE]
Run against `seamline serve` on a catalogue indexed from the real-photo shop (docs/real-photos.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence, Set
from pathlib import Path
from typing import Any

from experiments.real_photos import EVAL_SET, read_hand_labels, seen_photos


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def precision_row(
    items: Sequence[Mapping[str, Any]],
    component: str,
    wanted: str,
    truth: Mapping[tuple[str, str], str],
    seen: Set[str] = frozenset(),
) -> dict[str, Any]:
    """One query's first page against the hand labels; `seen`: photos the model trained on."""
    labelled = [
        (item["sha256"], truth[(item["sha256"], component)]) for item in items if (item["sha256"], component) in truth
    ]
    unseen = [label for sha256, label in labelled if sha256 not in seen]
    right, right_unseen = sum(label == wanted for _, label in labelled), sum(label == wanted for label in unseen)
    return {
        "component": component,
        "class": wanted,
        "results": len(items),
        "hand_labelled": len(labelled),
        "right": right,
        "precision": round(right / len(labelled), 4) if labelled else None,
        "unseen": len(unseen),
        "precision_unseen": round(right_unseen / len(unseen), 4) if unseen else None,
    }


def search_precision(
    url: str, per_page: int, truth: Mapping[tuple[str, str], str], labels: Path | None
) -> list[dict[str, Any]]:
    rows = []
    for component, spec in get_json(f"{url}/attributes").items():
        if spec["model_version"] is None:
            continue
        for wanted in spec["classes"]:
            query = urllib.parse.urlencode({spec["attribute"]: wanted, "per_page": per_page})
            items = get_json(f"{url}/search?{query}")["items"]
            rows.append(precision_row(items, component, wanted, truth, seen_photos(labels, component)))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="a running `seamline serve`")
    parser.add_argument("--per-page", type=int, default=24)
    parser.add_argument("--eval-set", type=Path, default=EVAL_SET)
    parser.add_argument("--labels", type=Path, default=None, help="label stage's output: train/val photos are seen")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    truth = {(row.sha256, row.component): row.label for row in read_hand_labels(args.eval_set)}
    try:
        rows = search_precision(args.url.rstrip("/"), args.per_page, truth, args.labels)
    except (urllib.error.URLError, OSError) as error:
        print(f"{args.url}: cannot reach the search service ({error})", file=sys.stderr)
        return 1
    print(
        f"{'component':<15}{'class':<13}{'results':>8}{'labelled':>9}{'right':>6}{'precision':>10}{'unseen':>7}{'prec.':>6}"
    )
    for row in rows:
        precision, unseen = (
            "-" if row[key] is None else f"{row[key]:.2f}" for key in ("precision", "precision_unseen")
        )
        print(
            f"{row['component']:<15}{row['class']:<13}{row['results']:>8}{row['hand_labelled']:>9}"
            f"{row['right']:>6}{precision:>10}{row['unseen']:>7}{unseen:>6}"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
