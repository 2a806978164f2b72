"""The weekly flow's pure parts: reading a stage's outcome from DVC's output, when a crawl is
fresh enough to skip, merging a worker's dvc.lock entry, late runs, and the report page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from flows.stages import failure_message, was_skipped
from flows.train_worker import merge_lock_entry
from flows.weekly_retrain import crawled_recently, late_by
from pipelines.retrain_report import (
    RetrainReport,
    StepOutcome,
    component_row,
    markdown,
    run_link,
    source_row,
    validation_row,
)

DVC_FAILURE = """Running stage 'label':
> python -m pipelines.stages.label --params params.yaml
2026-11-26 23:41:54.032922: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] failed call to cuInit
label: 2 classes below validation.min_examples_per_class: shirt-pattern: stripe has 4
ERROR: failed to reproduce 'label': failed to run: python -m pipelines.stages.label, exited with 2""".splitlines()


def test_failure_message_is_the_stages_own_line() -> None:
    assert (
        failure_message(DVC_FAILURE)
        == "label: 2 classes below validation.min_examples_per_class: shirt-pattern: stripe has 4"
    )
    assert failure_message(["ERROR: unexpected error - no dvc.yaml"]) == "unexpected error - no dvc.yaml"
    pull = [
        "WARNING: Some of the cache files do not exist",
        "Everything is up to date.",
        "ERROR: failed to pull data from the cloud - Checkout failed for following targets:",
        "data/crops",
    ]
    assert failure_message(pull) == "failed to pull data from the cloud - Checkout failed for following targets:"
    assert failure_message(["plain failure"]) == "plain failure"
    assert failure_message([]) == "failed with no output"


def test_was_skipped_reads_dvcs_verdict_for_that_stage() -> None:
    assert was_skipped(["Stage 'crop' didn't change, skipping"], "crop")
    assert not was_skipped(["Stage 'crop' didn't change, skipping"], "detector")
    assert not was_skipped(["Running stage 'crop':"], "crop")
    assert was_skipped(["Stage 'train@jeans-fit' is cached - skipping run, checking out outputs"], "train@jeans-fit")


def test_crawled_recently(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    summary = tmp_path / "crawl_summary.json"
    assert not crawled_recently(summary, 12, now)  # never crawled
    summary.write_text('{"finished_at": "2026-11-26T06:00:00+00:00"}')
    assert crawled_recently(summary, 12, now)
    assert not crawled_recently(summary, 4, now)
    assert not crawled_recently(summary, 0, now)  # 0 turns the skip off
    summary.write_text('{"finished_at": "not a time"}')
    assert not crawled_recently(summary, 12, now)


def test_late_by() -> None:
    now = datetime(2026, 11, 30, 9, tzinfo=UTC)
    assert late_by(None, now) == timedelta(0)  # a run started by hand is never late
    assert late_by(datetime(2026, 11, 30, 2, tzinfo=UTC), now) == timedelta(hours=7)


def test_merge_lock_entry_replaces_one_stage_and_keeps_the_rest(tmp_path: Path) -> None:
    lock = tmp_path / "dvc.lock"
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"crop": {"cmd": "c"}, "train@a": {"cmd": "old"}}}))
    merge_lock_entry(lock, "train@a", {"cmd": "new", "outs": [{"path": "models/a", "md5": "x.dir"}]})
    merge_lock_entry(lock, "train@b", {"cmd": "b"})
    stages = yaml.safe_load(lock.read_text())["stages"]
    assert stages["crop"] == {"cmd": "c"} and stages["train@a"]["cmd"] == "new" and stages["train@b"] == {"cmd": "b"}


def test_report_page_names_the_failed_step_and_every_section() -> None:
    report = RetrainReport(profile="demo", started="t0", tracking_uri="http://mlflow:5000")
    report.steps = [
        StepOutcome("crawl@demo", "ran", 8.0),
        StepOutcome("validate", "failed", 3.0, "validate: columns changed"),
        StepOutcome("label", "not run"),
    ]
    report.sources = [
        source_row(
            "demo", "crawled", {"pages": 631, "products": 601, "images": {"new": 1410, "rejected": {"http_404": 3}}}
        )
    ]
    report.validation = validation_row(
        {"rows": 10, "valid": 9, "quarantined": {"blank": 1}, "dataset_problems": ["columns changed"]},
        "docs/index.html",
    )
    registration = {
        "version": "4",
        "champion_version": "3",
        "alias": "challenger",
        "reason": "beats",
        "run_id": "abc",
        "candidate": {"macro_f1": 0.7},
        "champion": {"macro_f1": 0.6},
    }
    report.components = [
        component_row("shirt-pattern", "trained", registration, "macro_f1", report.tracking_uri),
        component_row("jeans-fit", "not run", {}, "macro_f1", report.tracking_uri),
    ]
    page = markdown(report, "macro_f1")
    assert report.failed.step == "validate" and "FAILED at `validate`" in page
    assert "| demo | crawled |" in page and "| 1410 | 3 |" in page
    assert "9 of 10 rows valid; 1 quarantined (blank 1)" in page and "docs/index.html" in page
    assert "| shirt-pattern | trained | v3 | 0.600 | v4 | 0.700 | → challenger |" in page
    assert "| jeans-fit | not run | - | - | - | - | not registered |" in page
    assert "http://mlflow:5000/#/runs/abc" in page
    assert run_link("sqlite:///mlflow/mlflow.db", "abc") == "runs:/abc" and run_link("x", None) == "-"


def test_a_skipped_component_is_reported_skipped_and_its_champion_kept(tmp_path: Path) -> None:
    """What the train stage wrote decides a component's training status; a skipped one is not
    registered, and the report says its champion is kept and why."""
    from flows.weekly_retrain import SKIPPED, _register, training_status

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    reason = "no labelled images (0 images of its item)"
    (metrics / "jeans-fit.json").write_text(f'{{"accuracy": 0.8, "skipped": "{reason}"}}')
    (metrics / "shirt-collar.json").write_text('{"accuracy": 0.7}')
    assert training_status(tmp_path, "jeans-fit", ran=True) == (SKIPPED, f"not trained: {reason}")
    assert training_status(tmp_path, "shirt-collar", ran=True) == ("trained", "")
    assert training_status(tmp_path, "shirt-collar", ran=False) == ("up to date", "")

    report = RetrainReport(profile="demo", started="t0")
    done = _register(None, tmp_path, "params.yaml", ["jeans-fit"], {"jeans-fit": SKIPPED}, report)  # type: ignore[arg-type]
    assert report.steps == [
        StepOutcome("register jeans-fit", "skipped", 0.0, "not trained: the champion stays"),
        StepOutcome("register detector", "skipped", 0.0, "no trained detector"),  # no models/detector here
    ]
    row = component_row("jeans-fit", SKIPPED, done["jeans-fit"], "macro_f1", "")
    assert (row["trained"], row["decision"], row["reason"]) == (
        "skipped",
        "champion kept",
        f"not trained this run: {reason}",
    )


def test_a_detector_registered_before_is_not_registered_again(tmp_path: Path) -> None:
    """The register step takes the detector too; the run that trained models/detector, registered
    by an earlier week, is reported as already registered, without starting the child process."""
    from flows.weekly_retrain import REGISTRY_REPORTS, _register

    (tmp_path / "models" / "detector").mkdir(parents=True)
    (tmp_path / "models" / "detector" / "detector.json").write_text('{"version": "abc", "mlflow_run_id": "r1"}')
    (tmp_path / REGISTRY_REPORTS).mkdir(parents=True)
    (tmp_path / REGISTRY_REPORTS / "detector.json").write_text('{"run_id": "r1", "version": "3", "alias": null}')
    report = RetrainReport(profile="demo", started="t0")
    done = _register(None, tmp_path, "params.yaml", [], {}, report)  # type: ignore[arg-type]
    assert report.steps == [StepOutcome("register detector", "skipped", 0.0, "v3 already registered")]
    assert done["detector"]["version"] == "3" and done["detector"]["new"] is False
