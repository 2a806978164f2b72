"""Data snapshots: what a week's data holds (images per source, labels per class and split),
written as a small git-tracked metric (the `snapshot` stage), and the weekly git tag that pins it
with dvc.lock (`seamline data snapshot`, the weekly flow).
"""

from __future__ import annotations

import csv
import subprocess
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from pipelines.manifest import iter_manifests, read_manifest

TAG_PREFIX = "data-"


def week_tag(day: date) -> str:
    """The weekly snapshot tag for a day: ISO year and week, e.g. data-2026-W48."""
    year, week, _ = day.isocalendar()
    return f"{TAG_PREFIX}{year}-W{week:02d}"


def source_counts(manifests_root: Path) -> dict[str, int]:
    """Images per source (manifest rows)."""
    return {path.parent.name: len(read_manifest(path).rows) for path in iter_manifests(manifests_root)}


def label_counts(labels_root: Path) -> dict[str, dict[str, dict[str, int]]]:
    """component → class → split → images, from the label stage's CSVs."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for path in sorted(labels_root.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            pairs = Counter((row["label"], row["split"]) for row in csv.DictReader(handle))
        per_class: dict[str, dict[str, int]] = {}
        for (label, split), n in sorted(pairs.items()):
            per_class.setdefault(label, {})[split] = n
        counts[path.stem] = per_class
    return counts


def snapshot_summary(manifests_root: Path, labels_root: Path) -> dict[str, Any]:
    return {"images": source_counts(manifests_root), "labels": label_counts(labels_root)}


# --- the weekly git tag (side effects: git in the project folder) -----------------------------

SNAPSHOT_FILES = ("dvc.lock", "reports")
# dvc.yaml stages (before any @item) whose outputs are the data; the rest make models from it.
DATA_STAGE_NAMES = ("crawl", "validate", "label", "snapshot")


class SnapshotError(RuntimeError):
    """Why a snapshot cannot be taken, in one line (git's own message where git refused)."""


def git(root: Path, *arguments: str, required: bool = True) -> str | None:
    result = subprocess.run(
        ["git", *_identity(root), *arguments], cwd=root, capture_output=True, text=True, check=False
    )
    if result.returncode:
        if not required:
            return None
        raise SnapshotError(f"git {' '.join(arguments)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _identity(root: Path) -> list[str]:
    """A committer for a machine with no git identity (a fresh CI box, a scheduled worker), so a
    snapshot commit never fails for want of one; a configured identity is left alone."""
    import os

    configured = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True, check=False)
    if configured.stdout.strip() or os.environ.get("GIT_COMMITTER_EMAIL"):
        return []
    return ["-c", "user.name=Seamline", "-c", "user.email=seamline@localhost"]


def next_free_tag(base: str, taken: set[str]) -> str:
    """`base`, or `base.2`, `base.3`… for a second snapshot in the same week."""
    if base not in taken:
        return base
    n = 2
    while f"{base}.{n}" in taken:
        n += 1
    return f"{base}.{n}"


def data_entries(lock_text: str | None) -> dict[str, Any]:
    """The dvc.lock entries of the stages that make the data (crawl@<source>, validate, label,
    snapshot): what a snapshot pins. The model stages' entries are left out, so retraining on the
    same data is not a new snapshot."""
    if not lock_text:
        return {}
    try:
        lock = yaml.safe_load(lock_text) or {}
    except yaml.YAMLError as error:
        raise SnapshotError(
            f"dvc.lock is not valid YAML ({' '.join(str(error).split())}): run `dvc repro` to rewrite it"
        ) from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise SnapshotError("dvc.lock has no `stages` mapping: run `dvc repro` to rewrite it")
    return {name: entry for name, entry in stages.items() if name.split("@", 1)[0] in DATA_STAGE_NAMES}


def latest_snapshot(root: Path) -> str | None:
    """The newest snapshot tag in HEAD's history, or None before the first one."""
    found = git(root, "describe", "--tags", "--abbrev=0", "--match", f"{TAG_PREFIX}*", "HEAD", required=False)
    return found.strip() if found else None


def data_changed_since(root: Path, tag: str) -> bool:
    """Whether the data stages' lock entries differ between `tag` and the working tree."""
    then = git(root, "show", f"{tag}:dvc.lock", required=False)
    return data_entries(then) != data_entries((root / "dvc.lock").read_text(encoding="utf-8"))


def take_snapshot(root: Path, tag: str | None = None, today: date | None = None) -> tuple[str, bool]:
    """Commit dvc.lock and reports/ and tag the commit; (tag, True) when a snapshot was taken.

    With no `tag`, a week's second snapshot gets a `.2` suffix, and when the data stages' entries
    in dvc.lock are what the last snapshot tag holds, nothing is committed: (that tag, False) —
    even if the model stages ran since (they change dvc.lock too, not the data). A named `tag`
    that exists is an error (a snapshot is never moved)."""
    present = [path for path in SNAPSHOT_FILES if (root / path).exists()]
    if "dvc.lock" not in present:
        raise SnapshotError("no dvc.lock: run `dvc repro` first, so there is data to snapshot")
    taken = set((git(root, "tag", "--list", f"{TAG_PREFIX}*") or "").split())
    if tag is not None and tag in taken:
        raise SnapshotError(f"tag {tag} exists: this snapshot was already taken (choose another with --tag)")
    last = latest_snapshot(root)
    if tag is None and last is not None and not data_changed_since(root, last):
        return last, False
    git(root, "add", "--", *present)
    chosen = tag or next_free_tag(week_tag(today or date.today()), taken)
    git(root, "commit", "--allow-empty", "-q", "-m", f"data snapshot {chosen}")
    git(root, "tag", "-a", chosen, "-m", f"data snapshot {chosen}")
    return chosen, True
