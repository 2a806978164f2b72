"""The `crop` stage: for every labelled image and component, the region that component needs
(`components.<c>.crop_region`), cut in its crop mode and padded to a square, incrementally
(`pipelines.crop_set`).

    python -m pipelines.stages.crop --params params.yaml --labels data/labels \
        --manifest data/validated/manifest.parquet --images data/raw --detector models/detector \
        --annotations data/annotations --out data/crops --summary reports/crop_summary.json

Outputs in `--out`: `<component>/<sha256>.png` and `<component>/index.csv`, and
`detections/<detector version>.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, load_params
from pipelines.crop import CropError
from pipelines.crop_set import crop_labelled


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.crop", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--manifest", type=Path, default=Path("data/validated/manifest.parquet"))
    parser.add_argument("--images", type=Path, default=Path("data/raw"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--annotations", type=Path, default=Path("data/annotations"))
    parser.add_argument("--out", type=Path, default=Path("data/crops"))
    parser.add_argument("--summary", type=Path, default=Path("reports/crop_summary.json"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        summary = crop_labelled(
            params,
            args.labels,
            args.manifest,
            args.images,
            args.detector,
            args.annotations,
            args.out,
            progress=lambda line: print(line, flush=True),
        )
    except (ParamsError, CropError) as error:
        print(f"crop: {error}", file=sys.stderr)
        return 2
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"crop: {summary['pairs']} pairs ({summary['processed_pairs']} processed, {summary['reused_pairs']} reused); "
        f"{summary['detected_images']} images through the detector; reasons {summary['reasons'] or 'none'} → "
        f"{args.summary}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
