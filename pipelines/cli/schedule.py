"""`seamline retrain` and `seamline deploy`: run the weekly flow now, or register it on a Prefect
server. Both start the flows in a child process (nothing imports `flows`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ParamsFile, Profile, out_console, profile_arguments, run_module
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()

REPORT = Path("reports/retrain/latest.json")
LOCKED = 3  # flows.weekly_retrain's exit status when another retrain holds the workspace


@app.command("retrain")
def retrain(
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Crawl only these sources (repeatable; default: params crawl.sources)."),
    ] = None,
    component: Annotated[
        list[str] | None, typer.Option("--component", "-c", help="Train only these components (repeatable).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="If a retrain is running in this workspace, wait for it (else exit 3).")
    ] = False,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Run the weekly retrain now, in this process's workspace.

    Crawl → validate → label → snapshot (git tag, dvc push) → detector → crop → pretrain → train
    each component → gate and register → report, as the Prefect flow `weekly-retrain` (the
    ephemeral API unless PREFECT_API_URL names a server). Stages whose inputs did not change are
    skipped by DVC, so a run stopped half-way and started again redoes only what is unfinished.
    The report is printed and written to reports/retrain/latest.md.

    One retrain per workspace at a time: a second one names the first and exits 3 (or waits,
    with --wait). A --profile other than the params file's `profile:` is written into the file
    first, since every DVC stage reads the file. Stopping this command (SIGTERM, Ctrl-C) stops
    the flow, its running stage and Prefect's temporary server, and exits with the flow's status.
    """
    arguments = ["--params", str(params_file), *profile_arguments(profile), *(["--wait"] if wait else [])]
    arguments += [f"--source={name}" for name in source or []] + [f"--component={name}" for name in component or []]
    code = run_module("flows.weekly_retrain", arguments)
    if REPORT.is_file() and code != LOCKED:  # a refused run wrote no report: the one there is the holder's
        print_summary(json.loads(REPORT.read_text(encoding="utf-8")))
    if code != 0:
        raise typer.Exit(code)


def print_summary(report: dict) -> None:
    from rich.table import Table

    steps = Table("step", "status", "seconds", "message", title=f"weekly retrain ({report['profile']})")
    colour = {"ran": "green", "skipped": "dim", "failed": "bold red", "not run": "yellow"}
    for step in report["steps"]:
        steps.add_row(
            step["step"],
            f"[{colour.get(step['status'], 'white')}]{step['status']}[/]",
            f"{step['seconds']:.0f}",
            step["message"][:90],
        )
    out_console.print(steps)
    models = Table("component", "training", "champion before", "new", "gate", "MLflow run", title="models")
    for row in report["components"]:
        before = (
            f"v{row['old_version']} ({row['old_metric']:.3f})"
            if row["old_version"] and row["old_metric"] is not None
            else (f"v{row['old_version']}" if row["old_version"] else "-")
        )
        new = (
            f"v{row['new_version']} ({row['new_metric']:.3f})"
            if row["new_version"] and row["new_metric"] is not None
            else (f"v{row['new_version']}" if row["new_version"] else "-")
        )
        models.add_row(row["component"], row["trained"], before, new, row["decision"], row["run"])
    out_console.print(models)
    failed = report.get("failed_step")
    out_console.print(
        f"[bold red]failed at {failed}[/]" if failed else "[green]completed[/]",
        "— full report: reports/retrain/latest.md",
    )


@app.command("deploy")
def deploy(
    cpu_pool: Annotated[
        str, typer.Option("--cpu-pool", help="Work pool of the weekly flow (created as type process if missing).")
    ] = "seamline-cpu",
    project_dir: Annotated[
        Path | None, typer.Option("--project-dir", help="Where workers find this repository (default: here).")
    ] = None,
    image: Annotated[
        str, typer.Option("--image", help="Container image the GPU jobs run (infra/Dockerfile built with GPU=1).")
    ] = "seamline-gpu:latest",
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Register the deployments in prefect.yaml on the Prefect server at PREFECT_API_URL.

    `weekly-retrain` on the cron schedule from params `retrain.schedule` (Monday 02:00 by
    default) with a concurrency limit of 1, and `train-component` on the `retrain.gpu_work_pool`
    pool (created as a Kubernetes pool from infra/k8s/gpu-job-template.json if missing).
    """
    arguments = ["--params", str(params_file), "--cpu-pool", cpu_pool, "--image", image, *profile_arguments(profile)]
    arguments += ["--project-dir", str(project_dir)] if project_dir else []
    code = run_module("flows.deploy", arguments)
    if code != 0:
        raise typer.Exit(code)
