"""The weekly retrain, as Prefect flows: crawl every enabled source (in parallel, bounded) →
validate → label → snapshot (git tag + dvc push) → resolve → detector → crop → pretrain → train
each component → gate and register → index the catalogue for search → report.

Every step runs its DVC stage in a child process (`dvc repro --single-item`), so DVC's cache
skips what has not changed — a killed run started again redoes only the unfinished stages — and
neither Scrapy nor TensorFlow runs in Prefect's process.

    python -m flows.weekly_retrain [--profile demo]       # what `seamline retrain` runs
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from flows.stages import (
    StageFailed,
    StageRun,
    project_env,
    repro,
    run_command,
    stage_command,
)
from pipelines.config import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params, write_file_profile
from pipelines.locks import LockHeld, exclusive, holder_if_held, locks_dir
from pipelines.retrain_report import (
    RetrainReport,
    StepOutcome,
    component_row,
    markdown,
    read_json,
    source_row,
    validation_row,
)

DATA_STAGES = ("validate", "label", "snapshot")
MODEL_STAGES = ("resolve", "detector", "crop", "pretrain")
REPORT_DIR = Path("reports/retrain")
REGISTRY_REPORTS = Path("reports/registry")
CATALOGUE_SUMMARY = Path("reports/catalogue_summary.json")
INDEX_STEP = "index catalogue"
SKIPPED = "skipped"  # a component's training status when the label stage gave it too few labels


class RetrainFailed(RuntimeError):
    """The run stopped at a step; the message names it and says why, in the step's own words."""


def _log() -> Callable[[str], None]:
    """The run's logger inside a flow or task run; print outside one (a task's `.fn` in a test)."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger().info
    except MissingContextError:
        return print


def _timeout(params: Params, step: str) -> float:
    """Seconds a step may run (params `retrain.timeout_minutes`)."""
    return 60.0 * params.retrain.timeout_minutes.minutes(step)


@dataclass
class Step:
    """One step of the week as it is being run: `ran` unless its body says otherwise."""

    name: str
    status: str = "ran"
    message: str = ""
    seconds: float | None = None  # the step's own time where it reports one, else the time in `recorded`

    def done(self, ran: bool, message: str = "", seconds: float | None = None) -> None:
        self.status, self.message, self.seconds = ("ran" if ran else "skipped"), message, seconds


@contextmanager
def recorded(report: RetrainReport, name: str, started: float | None = None) -> Iterator[Step]:
    """Time one step and record its outcome in the report: ran or skipped as its body says, or
    failed with the stage's own message when it raises StageFailed, which goes on up (the week
    stops there). `started` counts from an earlier moment (a wave of parallel crawls)."""
    began = time.monotonic() if started is None else started
    step = Step(name)
    try:
        yield step
    except StageFailed as error:  # in the stage's own words, less the step's name it repeats
        report.steps.append(StepOutcome(name, "failed", time.monotonic() - began, str(error).removeprefix(f"{name}: ")))
        raise
    seconds = step.seconds if step.seconds is not None else time.monotonic() - began
    report.steps.append(StepOutcome(name, step.status, seconds, step.message))


def crawled_recently(summary: Path, max_age_hours: float, now: datetime) -> bool:
    """Whether the source's last crawl finished within `max_age_hours` (a resumed run skips it)."""
    finished = read_json(summary).get("finished_at")
    if not finished or max_age_hours <= 0:
        return False
    try:
        age = now - datetime.fromisoformat(finished)
    except ValueError:
        return False
    return timedelta(0) <= age <= timedelta(hours=max_age_hours)


# --- tasks ------------------------------------------------------------------------------------


@task(
    task_run_name="crawl {source}",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=20),
    retry_jitter_factor=0.5,
)
def crawl_source(source: str, root: str, max_age_hours: float, timeout_s: float) -> str:
    """Run the source's crawl stage command from dvc.yaml; 'fresh' when crawled recently.
    Network-bound, so it retries with back-off; the crawl itself resumes where it stopped."""
    project = Path(root)
    if crawled_recently(
        project / "reports" / "crawl" / source / "crawl_summary.json", max_age_hours, datetime.now(UTC)
    ):
        _log()(f"crawl {source}: crawled within {max_age_hours:g} h, not crawling again")
        return "fresh"
    run_command(shlex.split(stage_command(project, f"crawl@{source}")), project, f"crawl@{source}", timeout_s, _log())
    return "crawled"


@task(task_run_name="dvc commit crawls")
def commit_crawls(stages: Sequence[str], root: str) -> None:
    """Record the crawled folders in dvc.lock and the cache (the crawls ran outside `dvc repro`,
    in parallel, which one DVC workspace lock would not allow)."""
    run_command(["dvc", "commit", "--force", *stages], Path(root), "dvc commit", 600, _log())


@task(task_run_name="{stage}")
def repro_stage(stage: str, root: str, timeout_s: float) -> StageRun:
    """`dvc repro --single-item STAGE` in the workspace: DVC runs it only if its inputs changed."""
    return repro(stage, Path(root), timeout_s, _log())


@task(task_run_name="snapshot tag")
def tag_snapshot(root: str) -> tuple[str, bool]:
    from pipelines.snapshots import SnapshotError, take_snapshot

    try:
        tag, taken = take_snapshot(Path(root))
    except SnapshotError as error:
        raise StageFailed("snapshot tag", str(error)) from None
    _log()(f"snapshot: {tag} ({'new' if taken else 'unchanged'})")
    return tag, taken


@task(
    task_run_name="dvc push",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=15),
    retry_jitter_factor=0.5,
)
def push_data(root: str, remote: str | None, timeout_s: float) -> str | None:
    """Send the snapshot's data to the DVC remote (network-bound: retried with back-off)."""
    project = Path(root)
    remotes = run_command(["dvc", "remote", "list"], project, "dvc remote list", 60, lambda line: None)[1]
    if not any(line.strip() for line in remotes):
        _log()("dvc push: no remote configured, skipped")
        return None
    run_command(["dvc", "push", *(["-r", remote] if remote else [])], project, "dvc push", timeout_s, _log())
    return remote or "default remote"


@task(task_run_name="register")
def register_components(
    components: list[str], root: str, params_file: str, profile: str, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Gate and register the newly trained models (pipelines/stages/register.py), the classifiers
    and the detector (`detector` among `components`), all in one child process: TensorFlow starts
    once, not once per model."""
    command = [sys.executable, "-m", "pipelines.stages.register", "--params", params_file, "--profile", profile]
    command += ["--report", str(REGISTRY_REPORTS), *(f"--component={component}" for component in components)]
    run_command(command, Path(root), "register", timeout_s, _log(), env=project_env(Path(root)))
    return {c: read_json(Path(root) / REGISTRY_REPORTS / f"{c}.json") for c in components}


@task(task_run_name="index catalogue")
def index_catalogue(root: str, params_file: str, profile: str, timeout_s: float) -> dict[str, Any]:
    """Tag the validated images with the champions into the search catalogue (pipelines/stages/index.py);
    incremental, so only new images and components whose champion changed are tagged."""
    command = [sys.executable, "-m", "pipelines.stages.index", "--params", params_file, "--profile", profile]
    command += ["--summary", str(CATALOGUE_SUMMARY)]
    (Path(root) / CATALOGUE_SUMMARY).unlink(missing_ok=True)
    run_command(command, Path(root), INDEX_STEP, timeout_s, _log(), env=project_env(Path(root)))
    return read_json(Path(root) / CATALOGUE_SUMMARY)


@flow(name="train-component", log_prints=True)
def train_component(component: str, root: str = ".", timeout_s: float = 4 * 3600) -> dict[str, Any]:
    """Train one component: its `train@<component>` DVC stage. Locally it runs in this process's
    workspace; on the `gpu` work pool (execution: distributed) the worker does the same in its
    own checkout (flows/train_worker.py)."""
    run = repro(f"train@{component}", Path(root), timeout_s, _log())
    metrics = read_json(Path(root) / "metrics" / f"{component}.json")
    return {
        "component": component,
        "ran": run.ran,
        "seconds": run.seconds,
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "skipped": metrics.get("skipped"),  # why the stage did not train it this run (too few labels)
    }


def training_status(project: Path, component: str, ran: bool) -> tuple[str, str]:
    """(status, message) of a component's training this run, from what its stage wrote:
    skipped (with the reason, its champion kept), trained, or up to date."""
    skipped = read_json(project / "metrics" / f"{component}.json").get("skipped")
    if skipped:
        return SKIPPED, f"not trained: {skipped}"
    return ("trained" if ran else "up to date"), ""


@task(task_run_name="publish training inputs")
def publish_training_inputs(root: str, remote: str | None) -> tuple[str, str]:
    """What GPU workers need to reproduce train@<c> elsewhere: the crop, label and pretrain
    outputs on the DVC remote, and a commit with their dvc.lock entries on the git remote
    (branch seamline-retrain/<sha>). Returns (repository URL, commit)."""
    from pipelines.snapshots import SnapshotError, git

    project = Path(root)
    try:
        url = (git(project, "remote", "get-url", "origin", required=False) or "").strip()
        if not url:
            raise StageFailed(
                "publish training inputs",
                "execution: distributed needs a git remote 'origin' the GPU workers can clone",
            )
        run_command(
            ["dvc", "push", *(["-r", remote] if remote else []), "label", "crop", "pretrain"],
            project,
            "dvc push",
            3600,
            _log(),
        )
        git(project, "add", "dvc.lock")
        if git(project, "diff", "--cached", "--quiet", required=False) is None:
            git(project, "commit", "-q", "-m", "retrain: training inputs for the GPU workers")
        commit = (git(project, "rev-parse", "HEAD") or "").strip()
        git(project, "push", "--quiet", "origin", f"{commit}:refs/heads/seamline-retrain/{commit[:12]}")
    except SnapshotError as error:
        raise StageFailed("publish training inputs", str(error)) from None
    return url, commit


@task(task_run_name="train {component} on the GPU pool")
def dispatch_training(
    component: str, root: str, repo_url: str, revision: str, remote: str | None, timeout_s: float
) -> dict[str, Any]:
    """Run the `train-component` deployment for one component, wait for it, and fetch its result
    from the git remote (the worker's result branch), never from the worker's result storage."""
    from prefect.deployments import run_deployment

    from flows.train_worker import fetch_result

    run = run_deployment(
        WORKER_DEPLOYMENT,
        timeout=timeout_s,
        parameters={
            "component": component,
            "repo_url": repo_url,
            "revision": revision,
            "remote": remote,
            "timeout_s": timeout_s,
        },
    )
    if run.state is None or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise StageFailed(
            f"train@{component}", f"worker run {run.name} ended {state}: {run.state.message if run.state else ''}"
        )
    return fetch_result(Path(root), revision, component, _log())


WORKER_DEPLOYMENT = "train-component-on-worker/train-component"  # prefect.yaml's GPU deployment


def _train_distributed(
    params: Params, project: Path, components: Sequence[str], report: RetrainReport, statuses: dict[str, str]
) -> None:
    """Every component at once on the `gpu` work pool; each result is taken back into this
    workspace (dvc.lock entry, metrics, plots, then `dvc pull` of the model)."""
    from flows.train_worker import take_back

    remote = params.retrain.dvc_remote
    began = time.monotonic()
    repo_url, revision = publish_training_inputs(str(project), remote)
    timeout = _timeout(params, "train")
    futures = {c: dispatch_training.submit(c, str(project), repo_url, revision, remote, timeout) for c in components}
    for component, future in futures.items():
        with recorded(report, f"train@{component}", began) as step:
            bundle = future.result()
            take_back(project, bundle, remote, _log())
            statuses[component], why = training_status(project, component, bundle["ran"])
            step.done(
                statuses[component] == "trained", why or f"on the GPU pool ({bundle['worker']})", bundle["seconds"]
            )


# --- the flow ---------------------------------------------------------------------------------


def late_by(scheduled: datetime | None, now: datetime) -> timedelta:
    return now - scheduled if scheduled is not None else timedelta(0)


def _scheduled_start() -> datetime | None:
    """When a deployment's scheduled run was due; None for a run started by hand."""
    from prefect.runtime import deployment, flow_run

    if not deployment.id:
        return None
    scheduled = flow_run.scheduled_start_time
    return datetime.fromisoformat(str(scheduled)) if scheduled else None


@flow(name="weekly-retrain", log_prints=True)
def weekly_retrain(
    profile: str | None = None,
    root: str = ".",
    params_file: str = str(DEFAULT_PARAMS_PATH),
    sources: list[str] | None = None,
    components: list[str] | None = None,
    wait_for_lock: bool = False,
) -> dict[str, Any]:
    """Crawl, version, validate, label, crop, train, gate and register; then report. Fails, naming
    the step and its message, if any step fails (the report is written first).

    One run per workspace: a second one fails naming the first (LockHeld), or waits for it with
    `wait_for_lock`. A `profile` other than the params file's is written into the file first,
    as `dvc exp run -S profile=P` would, because every DVC stage reads the file: the stages,
    the registration and the index then run with one profile, and dvc.lock records it."""
    from prefect.states import Cancelled

    project = Path(root).resolve()
    params = load_params(project / params_file, profile)
    lateness = late_by(_scheduled_start(), datetime.now(UTC))
    if lateness > timedelta(hours=params.retrain.late_run_max_age_hours):
        limit = params.retrain.late_run_max_age_hours
        message = f"skipped: started {lateness} after its scheduled time (retrain.late_run_max_age_hours {limit:g})"
        print(message)
        return Cancelled(message=message)  # type: ignore[return-value]
    with exclusive(retrain_lock(project), "a weekly retrain of this workspace", wait=wait_for_lock):
        if profile:
            replaced = write_file_profile(project / params_file, profile)
            if replaced:
                print(f"{params_file}: profile {replaced} → {profile}, so that every stage runs with {profile}")
        return _run_week(params, project, params_file, sources, components)


def retrain_lock(project: Path) -> Path:
    """The workspace's retrain lock: data/.locks/retrain.lock, beside the crawl locks."""
    return locks_dir(project / "data" / "raw") / "retrain.lock"


def _run_week(
    params: Params, project: Path, params_file: str, sources: list[str] | None, components: list[str] | None
) -> dict[str, Any]:
    """The week's steps in order, under the workspace lock; the report written whatever happens."""
    chosen_sources = list(sources or params.crawl.sources)
    chosen_components = list(components or params.components)
    report = RetrainReport(profile=params.profile, started=_now(), tracking_uri=_tracking_uri(params))
    planned = (
        [f"crawl@{s}" for s in chosen_sources]
        + list(DATA_STAGES)
        + ["snapshot tag", "dvc push"]
        + list(MODEL_STAGES)
        + [f"train@{c}" for c in chosen_components]
        + [f"register {c}" for c in chosen_components]
        + ["register detector"]  # the detector stage's model, registered as `detector` beside the classifiers
        + [INDEX_STEP]
    )
    statuses: dict[str, str] = {}
    registrations: dict[str, dict[str, Any]] = {}
    try:
        _crawl_all(params, project, chosen_sources, report, statuses)
        for stage in DATA_STAGES:
            _repro(params, project, stage, report)
        _snapshot(params, project, report)
        for stage in MODEL_STAGES:
            _repro(params, project, stage, report)
        if params.retrain.execution == "distributed":
            _train_distributed(params, project, chosen_components, report, statuses)
        for component in (c for c in chosen_components if c not in statuses):
            with recorded(report, f"train@{component}") as step:
                trained = train_component(component, str(project), _timeout(params, "train"))
                statuses[component], why = training_status(project, component, trained["ran"])
                step.done(statuses[component] == "trained", why, trained["seconds"])
        registrations.update(_register(params, project, params_file, chosen_components, statuses, report))
        _index(params, project, params_file, report)
    except StageFailed as error:
        if not report.failed:  # a failure outside any recorded step (committing crawls, publishing inputs)
            report.steps.append(StepOutcome(error.stage, "failed", 0.0, str(error)))
    finally:
        done = {step.step for step in report.steps}
        report.steps += [StepOutcome(step, "not run") for step in planned if step not in done]
        _fill_report(params, project, report, chosen_sources, statuses, registrations, chosen_components)
        _publish(report, params, project)
    if report.failed:
        raise RetrainFailed(f"weekly retrain failed at {report.failed.step}: {report.failed.message}")
    return report.as_json()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tracking_uri(params: Params) -> str:
    from pipelines.tracking import tracking_uri

    return tracking_uri(params.registry)


def _repro(params: Params, project: Path, stage: str, report: RetrainReport) -> None:
    """One DVC stage as a task, under its timeout (and Prefect's, a minute later)."""
    timeout = _timeout(params, stage)
    with recorded(report, stage) as step:
        run = repro_stage.with_options(timeout_seconds=timeout + 60)(stage, str(project), timeout)
        step.done(run.ran, seconds=run.seconds)


def _crawl_all(
    params: Params, project: Path, sources: Sequence[str], report: RetrainReport, statuses: dict[str, str]
) -> None:
    """Crawl in waves of `retrain.crawl_concurrency`; every source is tried even if one fails."""
    bound = params.retrain.crawl_concurrency
    crawl = crawl_source  # timed out by run_command: Prefect cannot interrupt a task in a worker thread
    failures: list[StageFailed] = []
    for start in range(0, len(sources), bound):
        wave = list(sources[start : start + bound])
        began = time.monotonic()
        timeout = _timeout(params, "crawl")
        futures = {
            source: crawl.submit(source, str(project), params.retrain.crawl_max_age_hours, timeout) for source in wave
        }
        for source, future in futures.items():
            try:
                with recorded(report, f"crawl@{source}", began) as step:
                    outcome = future.result()
                    fresh = "crawled within retrain.crawl_max_age_hours" if outcome == "fresh" else ""
                    step.done(outcome == "crawled", fresh)
            except StageFailed as error:
                failures.append(error)
                statuses[f"crawl:{source}"] = "failed"
                continue
            statuses[f"crawl:{source}"] = outcome
    crawled = [f"crawl@{s}" for s in sources if statuses.get(f"crawl:{s}") == "crawled"]
    if crawled:
        commit_crawls(crawled, str(project))
    if failures:
        # What the other sources collected is committed above; the run still stops here.
        raise failures[0]


def _snapshot(params: Params, project: Path, report: RetrainReport) -> None:
    with recorded(report, "snapshot tag") as step:
        tag, taken = tag_snapshot(str(project))
        step.done(taken, tag)
    report.snapshot = {"tag": tag, "new": taken}
    if not params.retrain.push:
        report.steps.append(StepOutcome("dvc push", "skipped", 0.0, "retrain.push is false"))
        return
    timeout = _timeout(params, "push")
    with recorded(report, "dvc push") as step:
        pushed = push_data.with_options(timeout_seconds=timeout + 60)(str(project), params.retrain.dvc_remote, timeout)
        step.done(bool(pushed), "" if pushed else "no remote")
    report.snapshot["pushed"] = pushed


def _register(
    params: Params,
    project: Path,
    params_file: str,
    components: Sequence[str],
    statuses: dict[str, str],
    report: RetrainReport,
) -> dict[str, dict[str, Any]]:
    """Gate and register the newly trained models, the classifiers and then the detector; a model
    that was not retrained and is already registered is left alone. One child process registers
    them all, so its outcome is each one's."""
    from pipelines.registry import DETECTOR

    done: dict[str, dict[str, Any]] = {}
    pending = []
    for component in [*components, DETECTOR]:
        if statuses.get(component) == SKIPPED:
            why = read_json(project / "metrics" / f"{component}.json").get("skipped", "")
            report.steps.append(StepOutcome(f"register {component}", "skipped", 0.0, "not trained: the champion stays"))
            done[component] = {"skipped": True, "reason": f"not trained this run: {why}"}
            continue
        earlier = read_json(project / REGISTRY_REPORTS / f"{component}.json")
        record = "detector.json" if component == DETECTOR else "classifier.json"
        trained = read_json(project / "models" / component / record)
        if component == DETECTOR and not trained:  # the detector stage has not run in this workspace
            report.steps.append(StepOutcome(f"register {DETECTOR}", "skipped", 0.0, "no trained detector"))
            continue
        # The detector stage's run is its identity: the same run registered before is the same detector.
        up_to_date = component == DETECTOR or statuses.get(component) == "up to date"
        if up_to_date and earlier and earlier.get("run_id") == trained.get("mlflow_run_id"):
            message = f"v{earlier.get('version')} already registered"
            report.steps.append(StepOutcome(f"register {component}", "skipped", 0.0, message))
            done[component] = {**earlier, "new": False}
        else:
            pending.append(component)
    if not pending:
        return done
    began = time.monotonic()
    try:
        registered = register_components(
            pending, str(project), params_file, params.profile, _timeout(params, "register")
        )
    except StageFailed as error:
        message = str(error).removeprefix("register: ")
        report.steps += [StepOutcome(f"register {c}", "failed", time.monotonic() - began, message) for c in pending]
        raise
    seconds = (time.monotonic() - began) / len(pending)
    for component in pending:
        report.steps.append(
            StepOutcome(f"register {component}", "ran", seconds, registered[component].get("reason", ""))
        )
        done[component] = registered[component]
    return done


def _index(params: Params, project: Path, params_file: str, report: RetrainReport) -> None:
    with recorded(report, INDEX_STEP) as step:
        summary = index_catalogue(str(project), params_file, params.profile, _timeout(params, "index"))
        if summary.get("skipped"):
            step.done(False, summary["skipped"])
        else:
            tagged = f"{summary.get('images', 0)} images, {summary.get('tagged', 0)} tagged now"
            step.done(bool(summary.get("tagged") or summary.get("removed")), tagged)


def _fill_report(
    params: Params,
    project: Path,
    report: RetrainReport,
    sources: Sequence[str],
    statuses: dict[str, str],
    registrations: dict[str, dict[str, Any]],
    components: Sequence[str],
) -> None:
    report.sources = [
        source_row(
            s,
            statuses.get(f"crawl:{s}", "not run"),
            read_json(project / "reports" / "crawl" / s / "crawl_summary.json"),
        )
        for s in sources
    ]
    summary = read_json(project / "reports" / "validation_summary.json")
    report.validation = (
        validation_row(summary, str(project / "reports" / "validation" / "index.html")) if summary else {}
    )
    metric = params.registry.gate_metric
    report.components = [
        component_row(c, statuses.get(c, "not run"), registrations.get(c, {}), metric, report.tracking_uri)
        for c in components
    ]
    report.finished = _now()


def _publish(report: RetrainReport, params: Params, project: Path) -> None:
    """The report as a Prefect Markdown artifact, reports/retrain/latest.{md,json}, and the log."""
    page = markdown(report, params.registry.gate_metric)
    folder = project / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.md").write_text(page, encoding="utf-8")
    (folder / "latest.json").write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    create_markdown_artifact(
        markdown=page, key="weekly-retrain-report", description="Weekly retrain: steps, sources, validation, models"
    )
    print(page)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.weekly_retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--params", default=str(DEFAULT_PARAMS_PATH))
    parser.add_argument("--source", action="append", help="crawl only these sources (repeatable)")
    parser.add_argument("--component", action="append", help="train only these components (repeatable)")
    parser.add_argument("--wait", action="store_true", help="wait for a retrain already running in this workspace")
    args = parser.parse_args(argv)
    # Stopped (SIGTERM from `kill` or a container runtime, Ctrl-C) outside a flow run: stop the
    # running stages with it and exit. Inside a run, Prefect's own SIGTERM handling raises into
    # run_command, which stops the stage the same way. DVC records only finished stages, so the
    # next run resumes there.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        load_params(Path(args.params), args.profile)
    except ParamsError as error:
        print(f"retrain: {error}", file=sys.stderr)
        return 2
    holder = None if args.wait else holder_if_held(retrain_lock(Path.cwd()))
    if holder:  # say so now, before Prefect starts; the flow takes the lock itself (a deployment's run too)
        print(
            f"retrain: {LockHeld('a weekly retrain of this workspace', retrain_lock(Path.cwd()), holder)}",
            file=sys.stderr,
        )
        return LOCKED
    try:
        weekly_retrain(
            profile=args.profile,
            root=".",
            params_file=args.params,
            sources=args.source,
            components=args.component,
            wait_for_lock=args.wait,
        )
    except RetrainFailed as error:
        print(f"retrain: {error}", file=sys.stderr)
        return 1
    except LockHeld as error:
        print(f"retrain: {error}", file=sys.stderr)
        return LOCKED
    return 0


LOCKED = 3  # exit status when another retrain holds the workspace


def _stop(signum: int, frame: Any) -> None:
    import os

    from flows.stages import stop_running_stages

    print(f"retrain: stopped by signal {signum}; stopping the running stage", file=sys.stderr, flush=True)
    stop_running_stages()
    stop_temporary_prefect_server()
    os._exit(128 + signum)


def stop_temporary_prefect_server() -> None:
    """Stop the temporary Prefect API server this process started, if any. Prefect stops it from an
    atexit hook, which `os._exit` skips: a weekly run stopped with `kill PID` left it running
    (tests/e2e/test_weekly_retrain.py caught one)."""
    if "prefect.server.api.server" not in sys.modules:  # never started one: nothing to import or stop
        return
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().stop()  # the port-less instance is the temporary one; Prefect's own test fixture stops it so


if __name__ == "__main__":
    raise SystemExit(main())
