"""A GPU worker's result travels through the git remote (flows/train_worker.py): the worker's
result commit on `seamline-results/<inputs>/<component>`, read back by the parent, and refused
when it was made from other inputs. Real git repositories, no Prefect."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.stages import StageFailed
from flows.train_worker import commit_result, fetch_result, result_branch

ENV_IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@t"]


def git(root: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *ENV_IDENTITY, *arguments], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def remote_and_inputs(tmp_path: Path) -> tuple[Path, Path, str]:
    """(origin, the parent's workspace, the inputs' revision): what publish_training_inputs leaves."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    parent = tmp_path / "parent"
    parent.mkdir()
    git(parent, "init", "-q")
    (parent / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"label": {"cmd": "x"}}}))
    git(parent, "add", "dvc.lock")
    git(parent, "commit", "-qm", "inputs")
    git(parent, "remote", "add", "origin", str(origin))
    revision = git(parent, "rev-parse", "HEAD").strip()
    git(parent, "push", "-q", "origin", f"{revision}:refs/heads/seamline-retrain/{revision[:12]}")
    return origin, parent, revision


def worker_trains(origin: Path, tmp_path: Path, revision: str, component: str = "jeans-color") -> str:
    """A worker's side after `dvc repro`: its checkout's dvc.lock entry, metrics and a binary plot."""
    checkout = tmp_path / "worker"
    subprocess.run(["git", "clone", "-q", str(origin), str(checkout)], check=True)
    git(checkout, "checkout", "-q", revision)
    lock = yaml.safe_load((checkout / "dvc.lock").read_text())
    lock["stages"][f"train@{component}"] = {"cmd": "train", "outs": [{"path": f"models/{component}", "md5": "a.dir"}]}
    (checkout / "dvc.lock").write_text(yaml.safe_dump(lock))
    (checkout / "metrics").mkdir()
    (checkout / "metrics" / f"{component}.json").write_text(json.dumps({"macro_f1": 0.5}))
    (checkout / "plots" / component).mkdir(parents=True)
    (checkout / "plots" / component / "confusion.png").write_bytes(bytes(range(256)))
    record = {"component": component, "stage": f"train@{component}", "ran": True, "seconds": 12.5, "worker": "gpu-1"}
    return commit_result(checkout, component, record, result_branch(revision, component), lambda line: None)


def test_the_parent_reads_the_workers_result_from_the_git_remote(remote_and_inputs, tmp_path: Path) -> None:
    origin, parent, revision = remote_and_inputs
    commit = worker_trains(origin, tmp_path, revision)
    bundle = fetch_result(parent, revision, "jeans-color", lambda line: None)
    assert bundle["commit"] == commit and bundle["ran"] and bundle["seconds"] == 12.5 and bundle["worker"] == "gpu-1"
    assert bundle["lock"]["outs"][0]["path"] == "models/jeans-color"
    assert set(bundle["files"]) == {"metrics/jeans-color.json", "plots/jeans-color/confusion.png"}
    assert base64.b64decode(bundle["files"]["plots/jeans-color/confusion.png"]) == bytes(range(256))  # bytes intact


def test_a_result_made_from_other_inputs_is_refused(remote_and_inputs, tmp_path: Path) -> None:
    origin, parent, revision = remote_and_inputs
    worker_trains(origin, tmp_path, revision)
    (parent / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"label": {"cmd": "y"}}}))
    git(parent, "commit", "-qam", "newer inputs")
    newer = git(parent, "rev-parse", "HEAD").strip()
    # A result left under the newer inputs' branch name but made from the older ones (a stale
    # push, a reused name): the parent must not take it for this run's.
    git(parent, "fetch", "-q", "origin", f"refs/heads/{result_branch(revision, 'jeans-color')}")
    git(parent, "push", "-q", "origin", f"FETCH_HEAD:refs/heads/{result_branch(newer, 'jeans-color')}")
    with pytest.raises(StageFailed, match="not these inputs"):
        fetch_result(parent, newer, "jeans-color", lambda line: None)


def test_a_missing_result_is_one_failure_naming_git(remote_and_inputs) -> None:
    _, parent, revision = remote_and_inputs
    with pytest.raises(StageFailed, match="git fetch"):
        fetch_result(parent, revision, "jeans-damage", lambda line: None)
