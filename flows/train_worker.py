"""Training one component on a GPU worker (execution: distributed), and taking its result back.

The worker never shares a workspace: it clones the repository at the snapshot's revision into a
folder of its own, pulls the stage's inputs from the DVC remote, reproduces `train@<component>`,
pushes the model to the DVC remote, and commits the stage's dvc.lock entry with its small uncached
files (metrics, plots) on a result branch of the git remote, `seamline-results/<revision>/<c>`.
The parent fetches that branch, writes those files into its own workspace and `dvc pull`s the
model, so its dvc.lock says the stage is up to date — no DVC lock is ever contended.

The result travels only through the two remotes both sides already share, never through Prefect's
result storage: a worker's default result storage is its own disk, which the parent on another
machine cannot read.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger

from flows.stages import StageFailed, project_env, repro, run_command
from pipelines.gpu import gpu_required, require_gpu

TRAIN_INPUTS = ("data/crops", "data/labels", "models/pretrain")
# Results beside the inputs' branch (seamline-retrain/<sha12>), not under it: git cannot hold a
# branch and branches below it with one name.
RESULT_BRANCHES = "seamline-results"
WORKER_RECORD = "reports/train-worker/{component}.json"  # how the worker's run went: ran, seconds, host


def result_branch(revision: str, component: str) -> str:
    """Where the worker leaves its result for the inputs at `revision`: both sides derive it."""
    return f"{RESULT_BRANCHES}/{revision[:12]}/{component}"


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
    """Clone → pull inputs → `dvc repro --single-item train@<c>` → push the model to the DVC remote
    and the result commit to the git remote; returns where the result is (branch, commit)."""
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
        record = {"component": component, "stage": stage, "ran": run.ran, "seconds": run.seconds}
        record["worker"] = socket.gethostname()
        branch = result_branch(revision, component)
        commit = commit_result(checkout, component, record, branch, log)
        return {**record, "branch": branch, "commit": commit}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def result_paths(root: Path, component: str) -> list[str]:
    """The stage's small files a result commit carries, relative to `root`."""
    paths = [root / "metrics" / f"{component}.json", *sorted((root / "plots" / component).glob("*"))]
    return [str(p.relative_to(root)) for p in paths if p.is_file()]


def commit_result(
    checkout: Path, component: str, record: Mapping[str, Any], branch: str, log: Callable[[str], None]
) -> str:
    """Commit dvc.lock, the stage's metrics and plots and the worker's record on top of the inputs'
    revision, and push it (forced: a retry of the same inputs replaces its earlier result)."""
    target = checkout / WORKER_RECORD.format(component=component)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    files = ["dvc.lock", str(target.relative_to(checkout)), *result_paths(checkout, component)]
    identity = ["-c", "user.name=Seamline worker", "-c", "user.email=seamline-worker@localhost"]
    run_command(["git", "add", "--force", *files], checkout, "git add", 120, log)
    message = f"{record['stage']}: trained on {record['worker']}"
    run_command(["git", *identity, "commit", "--quiet", "-m", message], checkout, "git commit", 120, log)
    run_command(
        ["git", "push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}"], checkout, "git push", 600, log
    )
    return _git_bytes(checkout, "rev-parse", "HEAD").decode().strip()


def fetch_result(root: Path, revision: str, component: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The parent's read of a worker's result from the git remote: the bundle `take_back` applies.
    Fails if the branch is missing or was not made from these inputs."""
    stage = f"train@{component}"
    branch = result_branch(revision, component)
    local = f"refs/seamline/results/{component}"
    run_command(
        ["git", "fetch", "--quiet", "--force", "origin", f"+refs/heads/{branch}:{local}"], root, "git fetch", 600, log
    )
    commit = _git_bytes(root, "rev-parse", local).decode().strip()
    parent = _git_bytes(root, "rev-parse", f"{commit}^").decode().strip()
    if parent != revision:
        raise StageFailed(
            stage, f"result branch {branch} holds a result for {parent[:12]}, not these inputs ({revision[:12]})"
        )
    lock = yaml.safe_load(_git_bytes(root, "show", f"{commit}:dvc.lock")) or {}
    entry = lock.get("stages", {}).get(stage)
    if entry is None:
        raise StageFailed(stage, f"the worker's dvc.lock ({branch}) has no entry for it")
    record = json.loads(_git_bytes(root, "show", f"{commit}:{WORKER_RECORD.format(component=component)}"))
    listed = _git_bytes(
        root, "ls-tree", "-r", "--name-only", commit, "--", f"metrics/{component}.json", f"plots/{component}"
    )
    files = {
        path: base64.b64encode(_git_bytes(root, "show", f"{commit}:{path}")).decode()
        for path in listed.decode().splitlines()
        if path
    }
    return {**record, "stage": stage, "lock": entry, "files": files, "branch": branch, "commit": commit}


def _git_bytes(root: Path, *arguments: str) -> bytes:
    """A git command's raw output (file contents may be binary: plots); a failure is StageFailed."""
    result = subprocess.run(["git", *arguments], cwd=root, capture_output=True, check=False)
    if result.returncode:
        raise StageFailed(f"git {arguments[0]}", result.stderr.decode(errors="replace").strip() or "failed")
    return result.stdout


def take_back(root: Path, bundle: Mapping[str, Any], remote: str | None, log: Callable[[str], None] = print) -> None:
    """The parent's half: the worker's lock entry and files into this workspace, then the model."""
    merge_lock_entry(root / "dvc.lock", bundle["stage"], bundle["lock"])
    for relative, encoded in bundle["files"].items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(encoded))
    run_command(["dvc", "pull", *(["-r", remote] if remote else []), bundle["stage"]], root, "dvc pull", 3600, log)


@flow(name="train-component-on-worker", log_prints=True)
def train_component_on_worker(
    component: str, repo_url: str, revision: str, remote: str | None = None, timeout_s: float = 4 * 3600
) -> dict[str, Any]:
    """The `train-component` deployment's flow, run by a worker of the `gpu` work pool. Its return
    value (where the result is) is for the Prefect UI; the parent reads the result branch.

    In the GPU image (SEAMLINE_REQUIRE_GPU=1) a run that finds no GPU fails here, before it clones
    or pulls anything, with the one line that names what is missing."""
    if gpu_required(False):
        get_run_logger().info("GPUs: %s", ", ".join(require_gpu().devices))
    return train_in_checkout(component, repo_url, revision, remote, timeout_s, get_run_logger().info)
