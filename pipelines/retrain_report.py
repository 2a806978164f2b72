"""The weekly retrain's report, pure: from what each step did and the files the stages wrote, a
Markdown page (the Prefect artifact, reports/retrain/latest.md) and the rows of the printed table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepOutcome:
    step: str
    status: str  # ran | skipped | failed | not run
    seconds: float = 0.0
    message: str = ""


@dataclass
class RetrainReport:
    profile: str
    started: str
    steps: list[StepOutcome] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)
    tracking_uri: str = ""
    finished: str = ""

    @property
    def failed(self) -> StepOutcome | None:
        return next((step for step in self.steps if step.status == "failed"), None)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "failed_step": self.failed.step if self.failed else None}


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def source_row(source: str, status: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """One source's counts from its crawl summary (reports/crawl/<source>/crawl_summary.json)."""
    images = summary.get("images", {})
    rejected = images.get("rejected", {})
    return {
        "source": source,
        "status": status,
        "finished_at": summary.get("finished_at", "-"),
        "pages": summary.get("pages", 0),
        "products": summary.get("products", 0),
        "new_images": images.get("new", 0),
        "rejected": sum(rejected.values()) if isinstance(rejected, Mapping) else 0,
        "errors": sum(summary.get("errors", {}).values()),
    }


def validation_row(summary: Mapping[str, Any], docs: str) -> dict[str, Any]:
    problems = summary.get("dataset_problems", [])
    return {
        "rows": summary.get("rows", 0),
        "valid": summary.get("valid", 0),
        "quarantined": sum(summary.get("quarantined", {}).values()),
        "quarantine_reasons": summary.get("quarantined", {}),
        "unreadable_lines": summary.get("unreadable_lines", {}),  # manifest -> line numbers left out
        "dataset_problems": problems,
        "passed": bool(summary) and not problems,
        "docs": docs,
    }


def run_link(tracking_uri: str, run_id: str | None) -> str:
    """Where an ML lead opens the run: the server's page, or `runs:/<id>` for a local store."""
    if not run_id:
        return "-"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/#/runs/{run_id}"
    return f"runs:/{run_id}"


def component_row(
    component: str, trained: str, registration: Mapping[str, Any], metric: str, tracking_uri: str
) -> dict[str, Any]:
    """Old (champion) vs new metric on the same test split, and what the gate decided."""
    candidate, champion = registration.get("candidate") or {}, registration.get("champion") or {}
    return {
        "component": component,
        "trained": trained,
        "new_version": registration.get("version"),
        "new_metric": candidate.get(metric),
        "old_version": registration.get("champion_version"),
        "old_metric": champion.get(metric),
        "alias": registration.get("alias"),
        "decision": _decision(registration),
        "reason": registration.get("reason", ""),
        "run": run_link(tracking_uri, registration.get("run_id")),
    }


def _decision(registration: Mapping[str, Any]) -> str:
    if registration.get("skipped"):
        return "champion kept"
    if not registration:
        return "not registered"
    if not registration.get("new", True):
        return "unchanged"
    return f"→ {registration['alias']}" if registration.get("alias") else "rejected"


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: RetrainReport, metric: str) -> str:
    failed = report.failed
    outcome = f"**FAILED at `{failed.step}`**: {failed.message}" if failed else "**completed**"
    parts = [
        f"# Weekly retrain ({report.profile} profile): {outcome}",
        f"Started {report.started}, finished {report.finished or '-'}. Tracking: `{report.tracking_uri}`.",
    ]
    parts += [
        "## Steps",
        table(
            ["step", "status", "seconds", "message"],
            [[s.step, s.status, f"{s.seconds:.0f}", s.message] for s in report.steps],
        ),
    ]
    if report.sources:
        parts += [
            "## Sources crawled",
            table(
                ["source", "status", "finished", "pages", "products", "new images", "rejected", "errors"],
                [
                    [
                        r["source"],
                        r["status"],
                        r["finished_at"],
                        r["pages"],
                        r["products"],
                        r["new_images"],
                        r["rejected"],
                        r["errors"],
                    ]
                    for r in report.sources
                ],
            ),
        ]
    if report.validation:
        v = report.validation
        verdict = "passed" if v["passed"] else f"failed: {'; '.join(map(str, v['dataset_problems'])) or 'no summary'}"
        reasons = ", ".join(f"{k} {n}" for k, n in v["quarantine_reasons"].items()) or "none"
        unreadable = "".join(
            f" Unreadable manifest lines, left out: `{path}` lines {', '.join(map(str, numbers))}."
            for path, numbers in v.get("unreadable_lines", {}).items()
        )
        parts += [
            "## Validation",
            (
                f"{verdict}. {v['valid']} of {v['rows']} rows valid; {v['quarantined']} quarantined ({reasons})."
                f"{unreadable} Data Docs: `{v['docs']}`."
            ),
        ]
    if report.snapshot:
        s = report.snapshot
        parts += [
            "## Data snapshot",
            f"`{s.get('tag', '-')}` ({'new' if s.get('new') else 'unchanged'})"
            + (f", pushed to `{s['pushed']}`" if s.get("pushed") else ""),
        ]
    if report.components:
        parts += [
            f"## Models ({metric} on the current test split)",
            table(
                ["component", "training", "champion before", metric, "new", metric, "gate", "reason", "MLflow run"],
                [
                    [
                        r["component"],
                        r["trained"],
                        f"v{r['old_version']}" if r["old_version"] else "-",
                        _number(r["old_metric"]),
                        f"v{r['new_version']}" if r["new_version"] else "-",
                        _number(r["new_metric"]),
                        r["decision"],
                        r["reason"],
                        r["run"],
                    ]
                    for r in report.components
                ],
            ),
        ]
    return "\n\n".join(parts) + "\n"
