"""Shared test set-up: quiet TensorFlow logs, and paths to the shipped project files."""

import copy
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def shipped_params_path() -> Path:
    return PROJECT_ROOT / "params.yaml"


DEMO_SHOP_PRODUCTS = 60  # enough shirts and jeans for a second listing page


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo shop built for the whole test session (tests only read it)."""
    from crawlers.demo_shop.site import build_shop

    out = tmp_path_factory.mktemp("demo-shop") / "shop"
    build_shop(out, DEMO_SHOP_PRODUCTS, seed=11, difficulty="medium", workers=2)
    return out


@pytest.fixture
def moto_s3(tmp_path: Path) -> Iterator[str]:
    """A real S3 API (moto in server mode) on 127.0.0.1, with the remote's bucket created."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    import boto3
    import botocore.exceptions

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for _ in range(100):
        try:
            client.create_bucket(Bucket="seamline-data")
            break
        except botocore.exceptions.EndpointConnectionError:  # the server is still starting
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(autouse=True, scope="module")
def _no_mlflow_tracking_uri_from_an_earlier_module() -> Iterator[None]:
    """The same between modules: a module-scoped fixture is set up before any function-scoped
    one, and an earlier module's fixture teardown can export the URI of a server it then stops
    (a training stage run by the next module's fixture failed with "connection refused")."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def _no_inherited_mlflow_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI so that subprocesses inherit it; left
    behind by one test, it would send a later test's stage runs to that test's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.hookimpl(optionalhook=True)  # plain `pytest` (or -p no:xdist) runs without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs two pytest-xdist workers with `--dist loadscope`: each module goes whole to
    one worker, so its module-scoped fixtures (a trained model, a detector) are built once. Here
    the two e2e modules are one unit as well: they share one weekly-retrain workspace
    (tests/e2e/conftest.py), and split they would each build it. (xdist's own `loadgroup` marks
    do not reach its scheduler under pytest 9, whose node ids drop the group suffix.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "tests/e2e" if module.startswith("tests/e2e/") else module

    return ModuleScheduling(config, log)


def tiny_profile_base(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of the demo profile for a test to shrink: it keeps the demo's crop choices but drops
    its per-component training settings (pattern's 128 px), so the test's own sizes apply to all."""
    tiny = copy.deepcopy(tree["profiles"]["demo"])
    for entry in tiny.get("components", {}).values():
        entry.pop("training", None)
    return tiny


# A Mask R-CNN sized for a test (128 px, a handful of steps): it proves the plumbing, not the accuracy.
TINY_DETECTOR = {
    "resnet_depth": 18,
    "image_size": 128,
    "min_level": 3,
    "max_level": 6,
    "anchor_size": 4.0,
    "decoder_filters": 32,
    "batch_size": 2,
    "steps": 4,
    "warmup_steps": 1,
    "score_threshold": 0.0,
    "validation_fraction": 0.3,
}


def tiny_detector_project(root: Path, demo_shop: Path, tracking_uri: str | None = None) -> Path:
    """`root` as a working folder with the demo shop's annotations imported and params (profile
    `tiny`) for a tiny detector; MLflow on SQLite in `root` unless `tracking_uri` names a server."""
    import yaml

    from pipelines.annotations import import_labelme_dir

    tree = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    tiny = copy.deepcopy(tree["profiles"]["demo"])
    tiny["detector"] = {**tiny.get("detector", {}), **TINY_DETECTOR}
    tiny["crop"] = {"size": 32, "on_no_detection": "full_image"}
    tree["profiles"]["tiny"] = tiny
    tree["profile"] = "tiny"
    tree["registry"]["tracking_uri"] = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    tree["registry"]["artifact_root"] = str(root / "artifacts")
    tree["registry"]["ledger"] = str(root / "ledger.jsonl")
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    categories = tree["detector"]["categories"]
    result = import_labelme_dir(demo_shop / "annotations", root / "data" / "annotations", categories)
    assert result.imported and not result.problems
    return root


def train_tiny_detector(project: Path) -> dict[str, Any]:
    """Run the detector stage in `project` (a child process, as DVC would); its metrics/detector.json."""
    import json

    result = subprocess.run(
        [sys.executable, "-m", "pipelines.stages.detector", "--params", "params.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"detector: step {TINY_DETECTOR['steps']}/{TINY_DETECTOR['steps']}" in result.stdout
    return json.loads((project / "metrics" / "detector.json").read_text())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path, seconds: float = 90.0) -> None:
    """Poll `url` until it answers 200; fail early with the server's log if it died."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log.is_file() else ""
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered:\n{output[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def stop(process: subprocess.Popen) -> None:
    import signal

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (started by the project's mlflow/server.sh) on 127.0.0.1 with a
    SQLite store and proxied artifacts in a temp folder; yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_ARTIFACTS_DESTINATION": str(root / "artifacts"),
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_BIN": str(Path(sys.executable).with_name("mlflow")),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    log = root / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["bash", str(PROJECT_ROOT / "mlflow" / "server.sh")],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", process, log)
        yield url
    finally:
        stop(process)
