"""Snapshot tags and the counts a snapshot records."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pipelines.snapshots import label_counts, week_tag


def test_week_tags_follow_iso_weeks() -> None:
    assert week_tag(date(2026, 11, 26)) == "data-2026-W48"
    assert week_tag(date(2027, 1, 1)) == "data-2026-W53"  # ISO: the first days of January may close the year before
    assert week_tag(date(2026, 1, 5)) == "data-2026-W02"


def test_label_counts_per_class_and_split(tmp_path: Path) -> None:
    (tmp_path / "jeans-fit.csv").write_text(
        "sha256,label,split,label_source\na,wide,train,weak\nb,wide,test,weak\nc,wide,train,hand\nd,skinny,val,weak\n"
    )
    assert label_counts(tmp_path) == {"jeans-fit": {"skinny": {"val": 1}, "wide": {"test": 1, "train": 2}}}


def test_a_later_snapshot_in_the_same_week_gets_a_suffix() -> None:
    from pipelines.snapshots import next_free_tag

    assert next_free_tag("data-2026-W48", set()) == "data-2026-W48"
    assert next_free_tag("data-2026-W48", {"data-2026-W48"}) == "data-2026-W48.2"
    assert next_free_tag("data-2026-W48", {"data-2026-W48", "data-2026-W48.2"}) == "data-2026-W48.3"


def _lock(label_md5: str, model_md5: str) -> str:
    return (
        "schema: '2.0'\nstages:\n  crawl@demo:\n    cmd: crawl demo\n    outs:\n    - path: data/raw/demo\n      "
        "md5: aaa.dir\n"
        f"  label:\n    cmd: label\n    outs:\n    - path: data/labels\n      md5: {label_md5}.dir\n"
        "  train@jeans-fit:\n    cmd: train jeans-fit\n    outs:\n    - path: models/jeans-fit\n      md5: "
        f"{model_md5}.dir\n"
    )


def test_retraining_on_the_same_data_is_not_a_new_snapshot(tmp_path: Path) -> None:
    """The model stages rewrite dvc.lock after the snapshot; only a change of the data stages'
    entries makes the next snapshot (before, each weekly run after the first tagged a `.2`)."""
    import subprocess

    from pipelines.snapshots import take_snapshot

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    lock = tmp_path / "dvc.lock"
    lock.write_text(_lock("l1", "m1"))
    week = date(2026, 11, 26)
    assert take_snapshot(tmp_path, today=week) == ("data-2026-W48", True)

    lock.write_text(_lock("l1", "m2"))  # this week's trainings ran after the snapshot
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "latest.md").write_text("retrain report\n")
    assert take_snapshot(tmp_path, today=week) == ("data-2026-W48", False)
    tags = subprocess.run(["git", "tag", "--list"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert tags.split() == ["data-2026-W48"]

    lock.write_text(_lock("l2", "m2"))  # new labels: new data
    assert take_snapshot(tmp_path, today=week) == ("data-2026-W48.2", True)
    committed = subprocess.run(
        ["git", "show", "data-2026-W48.2:dvc.lock"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert "l2.dir" in committed and "m2.dir" in committed


def test_a_broken_dvc_lock_is_one_clear_error_and_commits_nothing(tmp_path: Path) -> None:
    import subprocess

    import pytest

    from pipelines.snapshots import SnapshotError, take_snapshot

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    lock = tmp_path / "dvc.lock"
    lock.write_text(_lock("l1", "m1"))
    take_snapshot(tmp_path, today=date(2026, 11, 26))
    lock.write_text("stages:\n  label: [unclosed\n")
    with pytest.raises(SnapshotError, match=r"dvc\.lock is not valid YAML"):
        take_snapshot(tmp_path, today=date(2026, 11, 26))
    tags = subprocess.run(["git", "tag", "--list"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert tags.split() == ["data-2026-W48"]
