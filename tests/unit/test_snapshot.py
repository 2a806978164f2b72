"""Snapshot tags and the counts a snapshot records."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pipelines.snapshot import label_counts, week_tag


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
    from pipelines.snapshot import next_free_tag

    assert next_free_tag("data-2026-W48", set()) == "data-2026-W48"
    assert next_free_tag("data-2026-W48", {"data-2026-W48"}) == "data-2026-W48.2"
    assert next_free_tag("data-2026-W48", {"data-2026-W48", "data-2026-W48.2"}) == "data-2026-W48.3"
