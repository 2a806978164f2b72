"""The experiments of `dvc exp show` as one markdown table of real-photo scores: per experiment and
component, the settings the paper's tables vary (crop mode, backbone, base weights, frozen and
fine-tuned epochs, classes) and what `score_real@<c>` measured on the hand-labelled photos.
`dvc exp show --md` has every column; this keeps the ones the tables in docs/real-photos.md need.

Usage: python -m experiments.real_photos_table [--components C ...] [--json FILE (default: run `dvc exp show --json`)]
An experiment commits every metrics file of the workspace, so name the components it trained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.config import resolve_params

METRICS = "metrics/real-photos/{component}.json"


def revisions(shown: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, data) of each commit and experiment `dvc exp show --json` lists; the workspace is
    left out (it repeats the last experiment)."""
    for commit in shown:
        if commit.get("rev") == "workspace" or not commit.get("data"):
            continue
        yield str(commit.get("name") or commit["rev"][:7]), commit["data"]
        for experiment in commit.get("experiments") or []:
            revision = experiment["revs"][0]
            if revision.get("data") and revision["rev"] != "workspace":
                yield str(experiment.get("name") or revision["rev"][:7]), revision["data"]


def rows_of(name: str, data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per component this revision scored on real photos."""
    tree = data["params"]["params.yaml"]["data"]
    params = resolve_params(tree)
    for component in params.components:
        found = (data["metrics"].get(METRICS.format(component=component)) or {}).get("data") or {}
        scored = found.get(component) or {}
        if "model" not in scored:
            continue
        training = params.components[component].training
        yield {
            "experiment": name,
            "component": component,
            "classes": len(params.components[component].classes),  # dvc exp show drops lists
            "crop": scored["crop_mode"],
            "backbone": training.backbone,
            "base": "random" if training.weights is None else Path(str(training.weights)).name,
            "frozen": training.frozen.epochs,
            "fine_tune": training.fine_tune.epochs,
            "photos": scored["model"]["photos"],
            "accuracy": scored["model"]["accuracy"],
            "macro_f1": scored["model"]["macro_f1"],
        }


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="a saved `dvc exp show --json`")
    parser.add_argument("--components", nargs="+", default=None, help="only these components' rows")
    args = parser.parse_args(argv)
    if args.json:
        text = args.json.read_text(encoding="utf-8")
    else:
        shown = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True, check=False)
        if shown.returncode != 0:
            print(f"dvc exp show failed: {shown.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        text = shown.stdout
    rows = [
        row
        for name, data in revisions(json.loads(text))
        for row in rows_of(name, data)
        if args.components is None or row["component"] in args.components
    ]
    if not rows:
        print("no experiment has a real-photo score yet (run a score_real@<c> stage)", file=sys.stderr)
        return 1
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
