"""DVC runs the pipeline's stages for real: a temporary git repository holding the project's
dvc.yaml, params.yaml and sources, the demo shop served on 127.0.0.1, and a local remote."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines.manifest import read_manifest
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def shop_origin(demo_shop: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [str(BIN / "seamline"), "demo-shop", "serve", str(demo_shop), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    origin = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline()).group(0)
    yield origin
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def repo(tmp_path: Path, shop_origin: str) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    # The session's 60-product shop is smaller than the demo profile's class minimum allows.
    params = (PROJECT_ROOT / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("min_examples_per_class: 8", "min_examples_per_class: 1"))
    shutil.copytree(PROJECT_ROOT / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    shutil.copytree(PROJECT_ROOT / "crawlers" / "sources", root / "crawlers" / "sources")
    # The code files the data stages list as deps (DVC hashes them); the code itself runs from the install.
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for dep in (d for stage in ("validate", "label", "snapshot") for d in stages[stage]["deps"]):
        if dep.startswith("pipelines/"):
            (root / dep).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(PROJECT_ROOT / dep, root / dep)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SEAMLINE_DEMO_SHOP_URL": shop_origin}
    run(["git", "init", "-q"], root, env)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "remote")], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "project"], root, env)
    return root, env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


def test_repro_crawls_and_labels_then_skips_what_did_not_change(repo) -> None:
    root, env = repo
    # Up to the snapshot: the detector and training stages have their own tests.
    run(["dvc", "repro", "snapshot"], root, env)
    rows = read_manifest(root / "data" / "raw" / "demo" / "manifest.jsonl").rows
    assert rows and (root / "reports" / "crawl" / "demo" / "crawl_summary.json").is_file()
    assert all((root / "data" / "labels" / f"{c}.csv").is_file() for c in ("shirt-collar", "jeans-damage"))
    assert (root / "data" / "validated" / "manifest.parquet").is_file()
    assert (root / "reports" / "validation" / "index.html").is_file()  # Great Expectations Data Docs
    metrics = run(["dvc", "metrics", "show", "--json"], root, env).stdout
    assert '"new":' in metrics

    again = run(["dvc", "repro", "snapshot"], root, env).stdout
    assert "Running stage 'crawl@demo'" in again  # a shop can change any day: always crawled
    assert "Stage 'validate' didn't change, skipping" in again  # nothing new: nothing revalidated
    assert "Stage 'label' didn't change, skipping" in again


def test_weekly_snapshot_tag_and_history(repo) -> None:
    root, env = repo
    seamline = str(BIN / "seamline")
    git_identity = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    env = {**env, **git_identity}
    empty = run([seamline, "data", "history"], root, env).stdout
    assert "no snapshots yet" in empty
    refused = subprocess.run([seamline, "data", "snapshot"], cwd=root, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "run `dvc repro` first" in refused.stderr

    run(["dvc", "repro", "snapshot"], root, env)
    snapshot = json.loads((root / "reports" / "data" / "snapshot.json").read_text())
    rows = len(read_manifest(root / "data" / "raw" / "demo" / "manifest.jsonl").rows)
    assert snapshot["images"] == {"demo": rows}
    run([seamline, "data", "snapshot", "--tag", "data-2026-W48"], root, env)
    assert run(["git", "tag", "--list", "data-*"], root, env).stdout.split() == ["data-2026-W48"]
    assert "dvc.lock" in run(["git", "show", "--name-only", "data-2026-W48"], root, env).stdout
    again = subprocess.run(
        [seamline, "data", "snapshot", "--tag", "data-2026-W48"], cwd=root, env=env, capture_output=True, text=True
    )
    assert again.returncode == 2 and "already taken" in again.stderr
    unchanged = run([seamline, "data", "snapshot"], root, env).stdout
    assert "nothing changed since data-2026-W48" in unchanged
    assert run(["git", "tag", "--list", "data-*"], root, env).stdout.split() == ["data-2026-W48"]

    history = run([seamline, "data", "history"], root, env).stdout
    assert "data-2026-W48" in history and f"demo: {rows}" in history
    band = sum(snapshot["labels"]["shirt-collar"]["band"].values())
    assert f"band {band}" in history


def test_push_and_pull_through_the_local_remote(repo) -> None:
    root, env = repo
    run(["dvc", "repro", "crawl@demo"], root, env)
    manifest = (root / "data" / "raw" / "demo" / "manifest.jsonl").read_bytes()
    run(["dvc", "push"], root, env)
    shutil.rmtree(root / "data" / "raw")
    run(["dvc", "pull", "crawl@demo"], root, env)
    assert (root / "data" / "raw" / "demo" / "manifest.jsonl").read_bytes() == manifest
    assert len(list((root / "data" / "raw" / "demo" / "images").iterdir())) == manifest.count(b"\n")


def test_push_and_pull_through_s3_served_by_moto(repo, moto_s3: str) -> None:
    root, env = repo
    env = {
        **env,
        "AWS_ENDPOINT_URL": moto_s3,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    run(["dvc", "repro", "crawl@demo"], root, env)
    manifest = (root / "data" / "raw" / "demo" / "manifest.jsonl").read_bytes()
    run(["dvc", "push", "-r", "s3"], root, env)
    shutil.rmtree(root / "data" / "raw")
    shutil.rmtree(root / ".dvc" / "cache")
    run(["dvc", "pull", "-r", "s3", "crawl@demo"], root, env)
    assert (root / "data" / "raw" / "demo" / "manifest.jsonl").read_bytes() == manifest


def copy_ignore_files(root: Path) -> None:
    (root / "data").mkdir(exist_ok=True)
    for name in (".gitignore", "data/.gitignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)


def test_annotations_import_is_versioned_with_dvc_add(repo, demo_shop: Path) -> None:
    root, env = repo
    copy_ignore_files(root)
    run(
        [str(BIN / "seamline"), "annotations", "import", str(demo_shop / "annotations"), "--out", "data/annotations"],
        root,
        env,
    )
    pointer = root / "data" / "annotations.dvc"
    assert pointer.is_file() and "nfiles:" in pointer.read_text()
    # The pointer is for git (and not ignored by it); the folder itself is DVC's.
    assert subprocess.run(["git", "check-ignore", "-q", str(pointer)], cwd=root).returncode == 1
    assert subprocess.run(["git", "check-ignore", "-q", "data/annotations/instances.json"], cwd=root).returncode == 0
    run(["dvc", "push"], root, env)


def test_a_queued_experiment_finds_the_imported_annotations(tmp_path: Path) -> None:
    """`dvc exp run --queue` and `--temp` run in a copy under .dvc/tmp/exps; the copy must check out
    data/annotations (a `dvc add` pointer, as `seamline annotations import` writes) before a stage
    that reads it. With the ignore rules of the project's .gitignore files it does."""
    root = tmp_path / "project"
    root.mkdir()
    copy_ignore_files(root)
    shutil.copy(PROJECT_ROOT / ".dvcignore", root / ".dvcignore")
    shutil.copytree(PROJECT_ROOT / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.*"))
    (root / "data" / "annotations").mkdir()
    (root / "data" / "annotations" / "instances.json").write_text('{"images": [1, 2, 3]}')
    (root / "params.yaml").write_text("threshold: 1\n")
    count = (
        "import json; n = len(json.load(open('data/annotations/instances.json'))['images']); "
        "open('count.txt', 'w').write(str(n))"
    )
    stage = {
        "cmd": f'python -c "{count}"',
        "deps": ["data/annotations"],
        "params": ["threshold"],
        "outs": ["count.txt"],
    }
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"count": stage}}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run(["git", "init", "-q"], root, env)
    run(["dvc", "add", "data/annotations"], root, env)
    run(["dvc", "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "project"], root, env)
    run(["dvc", "exp", "run", "--temp", "-n", "copy", "-S", "threshold=2"], root, env)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    names = [e.get("name") for commit in shown for e in commit.get("experiments") or []]
    assert "copy" in names
