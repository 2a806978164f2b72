"""The `validate` stage: Great Expectations over every source's manifest (`pipelines.validation`).
Row-level failures are quarantined with their reason (the images stay in data/raw); data-set
failures (a collapsed source, no valid rows) stop the pipeline here.

    python -m pipelines.stages.validate --params params.yaml --manifests data/raw --crawl-reports reports/crawl \
        --out data/validated --docs reports/validation --summary reports/validation_summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.config import ParamsError, load_params
from pipelines.manifest import iter_manifests, read_manifest
from pipelines.validation import collapsed_sources, manifest_frame, run_suite


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--crawl-reports", type=Path, default=Path("reports/crawl"))
    parser.add_argument("--out", type=Path, default=Path("data/validated"))
    parser.add_argument("--docs", type=Path, default=Path("reports/validation"))
    parser.add_argument("--summary", type=Path, default=Path("reports/validation_summary.json"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile).validation
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reads = {path: read_manifest(path) for path in iter_manifests(args.manifests)}
    rows = [row for read in reads.values() for row in read.rows]
    unreadable = {str(path): read.skipped_lines for path, read in reads.items() if read.skipped_lines}
    for path, numbers in unreadable.items():
        # Left out of this run, and said so: the line (a crash's torn write, a hand edit) is
        # still in the manifest for a person to look at; the images it named stay in data/raw.
        print(f"warning: {path}: {unreadable_lines(numbers)} cannot be read, left out", file=sys.stderr)
    if not rows:
        print(f"error: no manifest rows under {args.manifests}; crawl a source first", file=sys.stderr)
        return 1
    outcome = run_suite(manifest_frame(rows, args.manifests, params), params, args.docs)
    problems = outcome.dataset_problems + collapsed_sources(args.crawl_reports, params.source_drop_ratio)

    args.out.mkdir(parents=True, exist_ok=True)
    outcome.valid.to_parquet(args.out / "manifest.parquet", index=False)
    outcome.quarantine.to_csv(args.out / "quarantine.csv", index=False)
    reasons = outcome.quarantine["reason"].value_counts().sort_index().to_dict()
    summary = {
        "rows": len(rows),
        "valid": len(outcome.valid),
        "quarantined": reasons,
        "unreadable_lines": unreadable,
        "dataset_problems": problems,
    }
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    quarantined = ", ".join(f"{reason} {n}" for reason, n in reasons.items()) or "none"
    lost = sum(len(numbers) for numbers in unreadable.values())
    print(
        f"validated {len(rows)} rows: {len(outcome.valid)} valid, quarantined: {quarantined}"
        + (f", unreadable manifest lines: {lost}" if lost else "")
        + f"; Data Docs: {outcome.docs}"
    )
    if problems:
        print(f"error: validation failed: {'; '.join(problems)} (Data Docs: {outcome.docs})", file=sys.stderr)
        return 1
    return 0


def unreadable_lines(numbers: Sequence[int]) -> str:
    """`line 7` or `lines 3, 9, 12` (the first 20, then how many more)."""
    shown = ", ".join(str(n) for n in numbers[:20]) + (f" and {len(numbers) - 20} more" if len(numbers) > 20 else "")
    return f"line {shown}" if len(numbers) == 1 else f"lines {shown}"


if __name__ == "__main__":
    sys.exit(main())
