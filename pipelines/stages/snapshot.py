"""The `snapshot` stage: what this week's data holds (images per source, labels per class and
split) as a git-tracked metric; `seamline data snapshot` then commits it with dvc.lock and tags it.

    python -m pipelines.stages.snapshot --manifests data/raw --labels data/labels --out reports/data/snapshot.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from pipelines.snapshots import snapshot_summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.snapshot", description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--out", type=Path, default=Path("reports/data/snapshot.json"))
    args = parser.parse_args(argv)
    summary = snapshot_summary(args.manifests, args.labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    total = sum(summary["images"].values())
    print(
        f"snapshot: {total} images from {len(summary['images'])} sources, {len(summary['labels'])} components "
        f"labelled → {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
