"""The whole weekly retrain at toy scale, for real: the demo shop served on 127.0.0.1, the project
in a temporary git repository with a local DVC remote and a SQLite MLflow store, every stage run
by DVC from the Prefect flow (a tiny detector, 32 px classifiers).

1. A run is stopped (SIGTERM) while it trains; a second run, under Prefect's test harness, resumes:
   no re-crawl, no re-detection, only the unfinished training, then gate and register — every
   component gets a champion, the data snapshot is tagged, the report artifact lists every step.
2. A third run with no new data is a near no-op: every stage is skipped by DVC, and no new
   snapshot is tagged.
3. On a copy of that workspace, the catalogue stripped to shirts only (then jeans only): the run
   finishes, the other item's components are skipped with their reason and keep their champions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import run

# A whole weekly run, stopped, resumed and repeated, on 2 cores: well past the suite's 15-minute default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
BIN = Path(sys.executable).parent


def stop_during_training(root: Path, env: dict[str, str]) -> list[str]:
    """Run `seamline retrain` and stop it (SIGTERM to that process alone, as `kill PID` or a
    process supervisor does) once a training stage starts: every process it started must stop."""
    process = subprocess.Popen(
        [str(BIN / "seamline"), "retrain", "--profile", "tiny"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + 900
    for line in process.stdout:
        seen.append(line)
        if "train jeans-color: epoch 1" in line or time.monotonic() > deadline:
            break
    started = _descendants(process.pid)  # the flow, its stage, Prefect's temporary server
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("seamline retrain did not stop within 2 minutes of SIGTERM") from None
    time.sleep(2)
    stages = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_stage_in(p, root)]
    left = {pid: command for pid, command in started.items() if _alive(pid)}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not stages, "a stage outlived the stopped retrain"
    assert not left, f"outlived the stopped retrain: {left}"
    assert code == 128 + signal.SIGTERM, code  # the flow's own status, passed on
    assert len(started) >= 2, started  # the flow and its stage at least: the check above looked at something
    return seen


def statuses(report: dict) -> dict[str, str]:
    return {step["step"]: step["status"] for step in report["steps"]}


def test_weekly_retrain_resumes_after_a_stop_then_is_a_no_op(
    project: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, env = project
    from pipelines.config import write_file_profile

    # The file names another profile than the flag: the flag wins in every stage, and the file says
    # so (as `dvc exp run -S profile=tiny` would), so dvc.lock and the registry agree with it.
    write_file_profile(root / "params.yaml", "demo")
    seen = stop_during_training(root, env)
    assert any("train jeans-color: epoch 1" in line for line in seen), "".join(seen[-40:])
    assert any("params.yaml: profile demo → tiny" in line for line in seen), "".join(seen[:40])
    from pipelines.config import read_params_file

    assert read_params_file(root / "params.yaml")["profile"] == "tiny"
    resolved = json.loads((root / "reports" / "params" / "train-jeans-color.json").read_text())
    assert resolved["training"]["image_size"] == 32, resolved  # tiny's, not demo's
    assert (root / "models" / "detector" / "detector.json").is_file()
    assert not (root / "metrics" / "jeans-color.json").exists()  # stopped mid-way through this one

    from prefect.testing.utilities import prefect_test_harness

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    from flows.weekly_retrain import weekly_retrain

    with prefect_test_harness():
        resumed = weekly_retrain(profile="tiny", root=str(root))
        done = statuses(resumed)
        assert done["crawl@demo"] == "skipped"  # crawled within retrain.crawl_max_age_hours: not again
        assert done["detector"] == "skipped" and done["crop"] == "skipped"
        assert done["train@jeans-color"] == "ran"  # the one that was stopped
        assert done["train@shirt-collar"] == "skipped"  # finished before the stop
        assert all(status in ("ran", "skipped") for status in done.values()), done

        from pipelines.config import load_params
        from pipelines.registry import CHAMPION, Registry

        params = load_params(root / "params.yaml", "tiny")
        registry = Registry(params.registry)
        for component in params.components:
            assert registry.alias_version(component, CHAMPION) is not None, component
        assert resumed["snapshot"]["tag"] in run(["git", "tag", "--list", "data-*"], root, env).stdout.split()
        assert done["dvc push"] == "ran"

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["weekly-retrain-report"]))
            )
        page = artifacts[-1].data
        for step in done:
            assert step in page, step

        started = time.monotonic()
        again = weekly_retrain(profile="tiny", root=str(root))
        seconds = time.monotonic() - started
        print(f"no-op weekly run: {seconds:.1f} s; steps {statuses(again)}")
        repeated = statuses(again)
        stages = [
            s
            for s in repeated
            if s.startswith(("crawl@", "train@")) or s in ("validate", "label", "detector", "crop", "pretrain")
        ]
        assert all(repeated[s] == "skipped" for s in stages), repeated
        assert all(repeated[f"register {c}"] == "skipped" for c in params.components), repeated
        # The model stages rewrote dvc.lock after the last snapshot; the data did not change.
        assert repeated["snapshot tag"] == "skipped", repeated
        assert again["snapshot"]["tag"] == resumed["snapshot"]["tag"]


@pytest.fixture
def one_item_workspace(project: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the weekly workspace after its full run (one is made if none has run), so that
    stripping the shop down to one item leaves the workspace the search tests read untouched.
    Taken before the GPU-worker test below, which leaves a model trained elsewhere unregistered."""
    root, env = project
    if not (root / "data" / "catalogue" / "catalogue.db").is_file():
        run([sys.executable, "-m", "flows.weekly_retrain", "--profile", "tiny"], root, env)
    copy = tmp_path / "project"
    shutil.copytree(root, copy, symlinks=True, ignore=lambda folder, _: ["tmp"] if folder.endswith(".dvc") else [])
    return copy, env


@pytest.mark.parametrize("kept", ["shirt", "jeans"])
def test_a_shop_selling_one_item_runs_the_week_to_the_end(
    one_item_workspace: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, kept: str
) -> None:
    """A shirt-only (then a jeans-only) catalogue: the other item's components have no labels, so
    they are skipped with that reason, registered nothing and keep their champions; the run
    finishes. The kept item's crops did not change, so its components are up to date (their
    train stages depend on their own crops only)."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.weekly_retrain import weekly_retrain
    from pipelines.config import load_params
    from pipelines.manifest import read_manifest
    from pipelines.registry import CHAMPION, Registry

    root, env = one_item_workspace
    manifest = root / "data" / "raw" / "demo" / "manifest.jsonl"
    rows = [row for row in read_manifest(manifest).rows if row.item_hint == kept]
    manifest.write_text("".join(row.to_json() + "\n" for row in rows), encoding="utf-8")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)
    params = load_params(root / "params.yaml", "tiny")
    registry = Registry(params.registry)
    champions = {c: registry.alias_version(c, CHAMPION) for c in params.components}
    assert all(champions.values()), champions

    with prefect_test_harness():
        report = weekly_retrain(profile="tiny", root=str(root))

    steps = {step["step"]: step for step in report["steps"]}
    assert all(step["status"] in ("ran", "skipped") for step in steps.values()), steps
    assert steps["crawl@demo"]["status"] == "skipped"  # crawled within the hour: the stripped manifest stands
    assert steps["label"]["status"] == "ran" and steps["index catalogue"]["status"] == "ran"
    for component, settings in params.components.items():
        train, register = steps[f"train@{component}"], steps[f"register {component}"]
        if settings.item == kept:
            assert train["status"] == "skipped" and not train["message"], (component, train)  # up to date
        else:
            assert train["status"] == "skipped", (component, train)
            assert train["message"].startswith("not trained: no labelled images (0 images of its item)"), train
            assert register["message"] == "not trained: the champion stays", register
        assert Registry(params.registry).alias_version(component, CHAMPION) == champions[component], component


def _descendants(pid: int) -> dict[int, str]:
    """Every live process under `pid` (by parent links in /proc), with its command line."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child in (c for c, p in parents.items() if p == parent and c not in found):
            found[child] = _command_of(Path(f"/proc/{child}"))
            frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to read its status."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _command_of(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_text(errors="replace").replace("\0", " ").strip()
    except OSError:
        return "?"


def _is_stage_in(proc: Path, root: Path) -> bool:
    """A DVC or pipeline-stage process working in `root`."""
    try:
        command = (proc / "cmdline").read_text(errors="replace")
        return Path(os.readlink(proc / "cwd")) == root and ("dvc" in command or "pipelines." in command)
    except OSError:
        return False


def test_a_gpu_worker_trains_in_its_own_checkout_and_the_parent_takes_it_back(
    project: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """execution: distributed, without the Kubernetes part: the deployments registered by `seamline
    deploy` (prefect.yaml) on a Prefect server, the GPU pool served by a worker process with its own
    home and working directory; the parent runs the deployment as the weekly flow does
    (run_deployment), and the result comes back through the git and DVC remotes alone.
    jeans-washing: a frozen-phase-only training in the tiny profile, the quickest to repeat."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from flows.weekly_retrain import dispatch_training, publish_training_inputs

    root, env = project
    remote = tmp_path.parent / "shared-dvc-remote"
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    run(["git", "remote", "add", "origin", str(origin)], root, env)
    # Workers read the remote from the committed config, as they would an S3 remote; the
    # workspace's own (config.local) setting must name the same place.
    run(["dvc", "remote", "modify", "local", "url", str(remote)], root, env)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], root, env)
    run(["git", "commit", "-qam", "shared DVC remote"], root, env)
    old_cwd = os.getcwd()
    os.chdir(root)
    worker = None
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith(("GIT_", "PATH"))})
        with prefect_test_harness(server_startup_timeout=120):
            api = str(PREFECT_API_URL.value())
            client_env = {**env, "PREFECT_API_URL": api}
            _process_pool("gpu")  # params retrain.gpu_work_pool; a Kubernetes pool in production
            run([str(BIN / "seamline"), "deploy", "--project-dir", str(PROJECT_ROOT)], PROJECT_ROOT, client_env)
            home = tmp_path / "worker-home"
            (home / "cwd").mkdir(parents=True)
            worker_env = {**client_env, "HOME": str(home), "PREFECT_HOME": str(home / ".prefect")}
            worker_log = (tmp_path / "worker.log").open("w")  # a file, not a pipe nobody reads until the end
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "gpu", "--type", "process"],
                cwd=home / "cwd",
                env=worker_env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            worker_log.close()  # the worker has its own descriptor
            repo_url, revision = publish_training_inputs.fn(str(root), None)
            assert repo_url == str(origin)
            assert revision in run(["git", "ls-remote", str(origin)], root, env).stdout

            bundle = dispatch_training.fn("jeans-washing", str(root), repo_url, revision, None, 900)
            assert bundle["ran"] and bundle["stage"] == "train@jeans-washing"
            assert any(out["path"] == "models/jeans-washing" for out in bundle["lock"]["outs"])
            assert "metrics/jeans-washing.json" in bundle["files"]
            assert (
                f"seamline-results/{revision[:12]}/jeans-washing"
                in run(["git", "ls-remote", str(origin)], root, env).stdout
            )
            _stop(worker)  # while its API still answers, so it reports itself stopped

        from flows.train_worker import take_back

        shutil.rmtree(root / "models" / "jeans-washing")
        take_back(root, bundle, None)
        assert (root / "models" / "jeans-washing" / "model.keras").is_file()
        status = run(["dvc", "status", "train@jeans-washing"], root, env).stdout
        assert "up to date" in status or not status.strip(), status
    finally:
        os.chdir(old_cwd)
        if worker is not None and worker.returncode is None:
            _stop(worker)


def _stop(worker: subprocess.Popen[str]) -> None:
    """Stop the worker process and what it started (its whole group): SIGTERM, then SIGKILL if it
    is still flushing its events a minute later (on a loaded CI box it can be)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signum)
        try:
            worker.wait(timeout=60)
            return
        except subprocess.TimeoutExpired:
            continue


def _process_pool(name: str) -> None:
    """A `process` work pool of that name on the current Prefect API (`seamline deploy` leaves an
    existing pool as it is, so the GPU deployment lands on it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))
