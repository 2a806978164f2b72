"""Training one component on a GPU worker (execution: distributed), and taking its result back.

The worker never shares a workspace: it clones the repository at the snapshot's revision into a
folder of its own, pulls the stage's inputs from the DVC remote, reproduces `train@<component>`,
pushes the model to the remote and returns the stage's dvc.lock entry and its small uncached
files (metrics, plots). The parent writes those into its own workspace and `dvc pull`s the model,
so its dvc.lock says the stage is up to date — no DVC lock is ever contended.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger

from flows.stages import StageFailed, project_env, repro, run_command

TRAIN_INPUTS = ("data/crops", "data/labels", "models/pretrain")


def uncached_files(root: Path, component: str) -> dict[str, str]:
    """metrics/<c>.json and plots/<c>/* (cache: false outputs), base64 by relative path."""
    paths = [root / "metrics" / f"{component}.json", *sorted((root / "plots" / component).glob("*"))]
    return {str(p.relative_to(root)): base64.b64encode(p.read_bytes()).decode() for p in paths if p.is_file()}


def lock_entry(lock_file: Path, stage: str) -> dict[str, Any]:
    entry = (yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}).get("stages", {}).get(stage)
    if entry is None:
        raise StageFailed(stage, f"{lock_file} has no entry for it after the run")
    return entry


def merge_lock_entry(lock_file: Path, stage: str, entry: Mapping[str, Any]) -> None:
    """Put one stage's entry into dvc.lock, keeping every other stage's as it is."""
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) if lock_file.is_file() else None
    lock = lock or {"schema": "2.0", "stages": {}}
    lock.setdefault("stages", {})[stage] = dict(entry)
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")


def train_in_checkout(
    component: str,
    repo_url: str,
    revision: str,
    remote: str | None,
    timeout_s: float,
    log: Callable[[str], None] = print,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Clone → pull inputs → `dvc repro --single-item train@<c>` → push outputs; the result bundle."""
    stage = f"train@{component}"
    scratch = Path(tempfile.mkdtemp(prefix=f"seamline-{component}-", dir=workdir))
    checkout = scratch / "repo"
    remote_args = ["-r", remote] if remote else []
    try:
        run_command(["git", "clone", "--quiet", repo_url, str(checkout)], scratch, "git clone", 600, log)
        run_command(["git", "checkout", "--quiet", revision], checkout, "git checkout", 120, log)
        run_command(
            ["dvc", "pull", *remote_args, *TRAIN_INPUTS], checkout, "dvc pull", 3600, log, env=project_env(checkout)
        )
        repro("resolve", checkout, 600, log)
        run = repro(stage, checkout, timeout_s, log)
        run_command(["dvc", "push", *remote_args, stage], checkout, "dvc push", 3600, log, env=project_env(checkout))
        return {
            "component": component,
            "stage": stage,
            "ran": run.ran,
            "seconds": run.seconds,
            "lock": lock_entry(checkout / "dvc.lock", stage),
            "files": uncached_files(checkout, component),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def take_back(root: Path, bundle: Mapping[str, Any], remote: str | None, log: Callable[[str], None] = print) -> None:
    """The parent's half: the worker's lock entry and files into this workspace, then the model."""
    merge_lock_entry(root / "dvc.lock", bundle["stage"], bundle["lock"])
    for relative, encoded in bundle["files"].items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(encoded))
    run_command(["dvc", "pull", *(["-r", remote] if remote else []), bundle["stage"]], root, "dvc pull", 3600, log)


@flow(name="train-component-on-worker", log_prints=True, persist_result=True)
def train_component_on_worker(
    component: str, repo_url: str, revision: str, remote: str | None = None, timeout_s: float = 4 * 3600
) -> dict[str, Any]:
    """The `train-component` deployment's flow, run by a worker of the `gpu` work pool."""
    return train_in_checkout(component, repo_url, revision, remote, timeout_s, get_run_logger().info)
