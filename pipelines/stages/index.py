"""The weekly flow's `index` step: every validated image tagged by each component's champion, cropped
by the detector's champion, into the search catalogue (`pipelines.catalogue`), incrementally. What
`seamline index` does, for the flow's child process. Every model comes from the registry by alias.

    python -m pipelines.stages.index --params params.yaml [--profile P] [--summary reports/catalogue_summary.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.catalogue import CatalogueError, run_refresh
from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, load_params
from pipelines.detect import DetectorError
from pipelines.registry import NoChampion, RegistryError, one_line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.index", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--manifest", type=Path, default=Path("data/validated/manifest.parquet"))
    parser.add_argument("--images", type=Path, default=Path("data/raw"))
    parser.add_argument(
        "--crops", type=Path, default=Path("data/crops"), help="the crop stage's output (its detection cache is reused)"
    )
    parser.add_argument("--catalogue", type=Path, default=None, help="default: search.catalogue from params")
    parser.add_argument("--summary", type=Path, default=None, help="also write the summary as JSON here")
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params, args.profile)
        catalogue = args.catalogue or Path(params.search.catalogue)
        summary = run_refresh(
            params, args.manifest, args.images, args.crops, catalogue, progress=lambda line: print(line, flush=True)
        )
    except NoChampion as error:
        # The first weeks may promote nothing: that is the registry's verdict, not an indexing failure.
        print(f"index: skipped: {error}", flush=True)
        if args.summary:
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps({"skipped": str(error)}) + "\n", encoding="utf-8")
        return 0
    except (ParamsError, CatalogueError, RegistryError, DetectorError) as error:
        print(f"index: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from mlflow.exceptions import MlflowException

        if not isinstance(error, MlflowException):
            raise
        print(f"index: MLflow: {one_line(error)}", file=sys.stderr)
        return 2
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary.as_json(), indent=2) + "\n", encoding="utf-8")
    print(
        f"index: {summary.images} images ({summary.tagged} tagged, {summary.up_to_date} up to date, "
        f"{summary.removed} removed, {summary.unreadable} unreadable; detector ran on {summary.detected}) "
        f"in {summary.seconds:.0f} s → {catalogue}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
