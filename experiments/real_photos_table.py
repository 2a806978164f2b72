"""The experiments of `dvc exp show` as one markdown table of real-photo scores: per experiment and
component, the settings the paper's tables vary (crop mode, backbone, base weights, frozen and
fine-tuned epochs, classes, seed) and what `score_real@<c>` measured on the hand-labelled photos.
`dvc exp show --md` has every column; this keeps the ones the tables in docs/real-photos.md need.
`--by-setting` folds the runs that differ only in `training.seed` into one row: their mean and
spread, and how many of them answered a single class for every photo (a run that collapsed).

Usage: python -m experiments.real_photos_table [--components C ...] [--by-setting] [--commits N]
                                               [--json FILE (default: run `dvc exp show --json`)]
An experiment commits every metrics file of the workspace, so name the components it trained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.config import resolve_params

METRICS = "metrics/real-photos/{component}.json"
# What a run measured, as opposed to what it was set to: `--by-setting` groups on everything else.
MEASURED = ("experiment", "seed", "photos", "accuracy", "macro_f1", "classes_answered")


def revisions(shown: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, data) of each commit and finished experiment `dvc exp show --json` lists. Left out:
    the workspace (it repeats the last experiment), a failed experiment (its metrics are its
    baseline's) and a running one (DVC shows the workspace's data for it)."""
    for commit in shown:
        if commit.get("rev") == "workspace" or not commit.get("data"):
            continue
        yield str(commit.get("name") or commit["rev"][:7]), commit["data"]
        for experiment in commit.get("experiments") or []:
            revision = experiment["revs"][0]
            data = revision.get("data")
            if data and not revision.get("error") and "workspace" not in (revision["rev"], data.get("rev")):
                yield str(experiment.get("name") or revision["rev"][:7]), data


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
            "sources": "+".join(params.crawl.sources),
            "classes": len(params.components[component].classes),  # dvc exp show drops lists
            "crop": scored["crop_mode"],
            "backbone": training.backbone,
            "base": "random" if training.weights is None else Path(str(training.weights)).name,
            "frozen": training.frozen.epochs,
            "fine_tune": training.fine_tune.epochs,
            "seed": training.seed,
            "photos": scored["model"]["photos"],
            "accuracy": scored["model"]["accuracy"],
            "macro_f1": scored["model"]["macro_f1"],
            "classes_answered": classes_answered(scored["model"]),
        }


def classes_answered(model: Mapping[str, Any]) -> int | None:
    """How many classes the model gave at least once: from its per-class answer counts (what
    `dvc exp show` keeps), else its confusion matrix (rows true, columns predicted; a metrics file
    read directly), else None (a score written before either was recorded)."""
    if answered := model.get("answered"):
        return sum(1 for count in answered.values() if count > 0)
    if confusion := model.get("confusion_matrix"):
        return sum(1 for column in zip(*confusion) if sum(column) > 0)
    return None


def _mean_and_spread(values: Sequence[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def _one_class_runs(runs: Sequence[Mapping[str, Any]]) -> int | str:
    known = [run["classes_answered"] for run in runs if run["classes_answered"] is not None]
    if not known:
        return "unknown"
    ones = sum(1 for answered in known if answered <= 1)
    return ones if len(known) == len(runs) else f"{ones} of {len(known)} known"


def by_setting(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting (every column but the measured ones), in the order settings first
    appear: the seeds run, accuracy and macro-F1 as mean ± sample standard deviation, and the
    runs that answered one class only."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple((column, value) for column, value in row.items() if column not in MEASURED)
        groups.setdefault(key, []).append(row)
    folded = []
    for key, runs in groups.items():
        folded.append(
            {
                **dict(key),
                "seeds": ",".join(str(run["seed"]) for run in runs),
                "photos": "/".join(sorted({str(run["photos"]) for run in runs})),
                "accuracy": _mean_and_spread([run["accuracy"] for run in runs]),
                "macro_f1": _mean_and_spread([run["macro_f1"] for run in runs]),
                "one_class_runs": _one_class_runs(runs),
            }
        )
    return folded


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="a saved `dvc exp show --json`")
    parser.add_argument("--components", nargs="+", default=None, help="only these components' rows")
    parser.add_argument(
        "--commits",
        type=int,
        default=1,
        help="experiments of the last N commits (dvc exp show -n): a queued run stays on the commit it was queued on",
    )
    parser.add_argument(
        "--by-setting", action="store_true", help="one row per setting: the mean and spread over its seeds"
    )
    args = parser.parse_args(argv)
    if args.commits == 0:
        parser.error("--commits: 1 or more (a negative number: every commit, as dvc exp show -n takes it)")
    if args.json:
        text = args.json.read_text(encoding="utf-8")
    else:
        shown = subprocess.run(
            ["dvc", "exp", "show", "--json", "-n", str(args.commits)], capture_output=True, text=True, check=False
        )
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
    print(markdown(by_setting(rows) if args.by_setting else rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
