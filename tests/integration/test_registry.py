"""The model registry against a real `mlflow server` on 127.0.0.1: the gate gives aliases only to
better models that load and answer, promote and rollback move aliases and write the ledger, a
failed move leaves the champion in place, and MLflow's own `mlflow models serve` answers for the
champion.

The classifiers are small real Keras models whose weights are set by hand to read a crop's
brightness, so each one's quality on the test split is known before it is registered."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT, free_port, stop, wait_for_http

pytestmark = pytest.mark.slow

COMPONENT = "jeans-color"  # classes light, middle, deep
SIZE = 32
BRIGHTNESS = {"light": 205, "middle": 130, "deep": 55}


def brightness_classifier(light_above: float, deep_below: float) -> object:
    """GAP → Dense(3) → softmax: `light` above one mean brightness, `deep` below another,
    `middle` between (logits 0.2·(b − light_above), 0, 0.2·(deep_below − b))."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    mean = keras.layers.GlobalAveragePooling2D(name="gap")(inputs)  # the name the tagger takes features from
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(mean)
    model = keras.Model(inputs, outputs)
    slope = 0.2 / 3  # per channel: the three channels add up to 0.2 × brightness
    kernel = np.array([[slope, 0.0, -slope]] * 3, dtype=np.float32)
    bias = np.array([-0.2 * light_above, 0.0, 0.2 * deep_below], dtype=np.float32)
    model.get_layer("predictions").set_weights([kernel, bias])
    return model


GOOD = (170, 90)  # every test crop right
FAIR = (170, 120)  # the darker third of `middle` reads as deep: passes the recall floor, F1 lower
ALL_MIDDLE = (999, -999)  # always `middle`: recall 0 for light and deep


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> tuple[Path, object]:
    """Grey crops of three brightness bands in test and val, label and crop-index files, and
    params pointing the registry at the server."""
    from pipelines.config import load_params

    root = tmp_path_factory.mktemp("registry-project")
    write_grey_crops(root)
    params = load_params(PROJECT_ROOT / "params.yaml", "demo")
    registry = params.registry.model_copy(
        update={
            "tracking_uri": mlflow_server,
            "ledger": str(root / "ledger.jsonl"),
            "min_class_recall": 0.5,
            "min_improvement": 0.0,
            "auto_promote": False,
        }
    )
    return root, params.model_copy(update={"registry": registry})


def write_grey_crops(root: Path) -> None:
    """COMPONENT's test and val crops (grey squares in three brightness bands) under root/data/crops,
    with the label and crop-index files the registry reads its test split from."""
    crops, labels = root / "data" / "crops", root / "data" / "labels"
    (crops / COMPONENT).mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(3)
    label_rows, index_rows = [], []
    for i in range(36):
        label = list(BRIGHTNESS)[i % 3]
        # The middle band spreads widely (105–150), so a boundary at 120 misreads its darker third.
        centre = BRIGHTNESS[label] + (rng.uniform(-25, 20) if label == "middle" else rng.uniform(-10, 10))
        pixels = np.clip(rng.normal(centre, 6, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        sha = hashlib.sha256(pixels.tobytes()).hexdigest()
        split = "test" if i < 24 else "val"
        cv2.imwrite(str(crops / COMPONENT / f"{sha}.png"), pixels)
        label_rows.append([sha, label, split, "keywords"])
        index_rows.append([COMPONENT, sha, split, f"{COMPONENT}/{sha}.png", "cropped", "", "", "", "test"])
    with (labels / f"{COMPONENT}.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["sha256", "label", "split", "label_source"], *label_rows])
    with (crops / COMPONENT / "index.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["component", "sha256", "split", "file", "status", "reason", "score", "box", "recipe"], *index_rows]
        )


def train_and_log(root: Path, params: object, model: object, name: str) -> Path:
    """What train@component leaves behind: an MLflow run with the model, and models/<c>/classifier.json."""
    import mlflow
    from pipelines.classifier import CLASSIFIER_FILE
    from pipelines.tracking import log_classifier_model, mlflow_run

    classes = list(params.components[COMPONENT].classes)
    meta = {
        "component": COMPONENT,
        "classes": classes,
        "thresholds": dict.fromkeys(classes, 0.0),  # as classifier.json stores them
        "image_size": SIZE,
        "item": "jeans",
        "crop_region": "jeans",
        "crop_mode": "bbox",
        "base_weights": None,
    }
    with mlflow_run(
        params.registry, "classifiers", name, {"seamline.component": COMPONENT, "seamline.base_weights": "none"}
    ) as run:
        mlflow.log_params({"training.name": name})
        mlflow.log_metrics({"test_accuracy": 0.5, "test_macro_f1": 0.5})
        log_classifier_model(model, meta)
    out = root / "models" / name / COMPONENT
    out.mkdir(parents=True)
    (out / CLASSIFIER_FILE).write_text(json.dumps({**meta, "mlflow_run_id": run.info.run_id}))
    return out


def register(root: Path, params: object, model: object, name: str) -> tuple[str, object]:
    from pipelines.registry import register_trained

    model_dir = train_and_log(root, params, model, name)
    done = register_trained(
        params,
        COMPONENT,
        model_dir,
        root / "data" / "crops",
        root / "data" / "labels",
        "ci-bot",
        progress=lambda line: None,
    )
    return done.version, done.decision


def test_gate_promote_rollback_and_ledger(project: tuple[Path, object]) -> None:
    from pipelines.registry import (
        CHALLENGER,
        CHAMPION,
        Registry,
        RegistryError,
        champion_lineage,
        promote,
        register_trained,
        rollback,
    )

    root, params = project
    crops, labels = root / "data" / "crops", root / "data" / "labels"
    registry = Registry(params.registry)

    fair, decision = register(root, params, brightness_classifier(*FAIR), "fair")
    assert decision.alias == CHAMPION and "first model to pass" in decision.reason
    assert registry.alias_version(COMPONENT, CHAMPION) == fair

    worse, decision = register(root, params, brightness_classifier(*ALL_MIDDLE), "all-middle")
    assert decision.alias is None and "recall below the floor" in decision.reason
    version = registry.version(COMPONENT, worse)
    assert (
        version.tags["seamline.gate"] == "failed" and "recall below the floor" in version.tags["seamline.gate_reason"]
    )
    assert set(registry.aliases(COMPONENT).values()) == {fair}

    _, decision = register(root, params, brightness_classifier(*FAIR), "fair-again")
    assert decision.alias is None and "does not beat champion" in decision.reason

    good, decision = register(root, params, brightness_classifier(*GOOD), "good")
    assert decision.alias == CHALLENGER, decision.reason
    again = register_trained(
        params, COMPONENT, root / "models" / "good" / COMPONENT, crops, labels, "ci-bot", progress=lambda line: None
    )
    assert not again.new and again.version == good and "already registered" in again.decision.reason
    assert float(registry.version(COMPONENT, good).tags["seamline.gate_test_macro_f1"]) == 1.0
    assert registry.aliases(COMPONENT) == {CHAMPION: fair, CHALLENGER: good}

    promote(params, COMPONENT, good, "better on every class", "lead@shop", crops, labels)
    assert registry.aliases(COMPONENT) == {CHAMPION: good}

    # Recording the move fails (the ledger path is a folder): the alias goes back.
    broken = params.model_copy(update={"registry": params.registry.model_copy(update={"ledger": str(root)})})
    with pytest.raises(RegistryError, match="undone"):
        rollback(broken, COMPONENT, "try", "lead@shop", crops, labels)
    assert registry.alias_version(COMPONENT, CHAMPION) == good

    rollback(params, COMPONENT, "complaints about deep denim", "lead@shop", crops, labels)
    assert registry.alias_version(COMPONENT, CHAMPION) == fair
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(params, COMPONENT, "again", "lead@shop", crops, labels)

    history = registry.history(COMPONENT)
    moves = [(e.alias, e.from_version, e.to_version, e.action, e.who) for e in history]
    assert moves == [
        (CHAMPION, None, fair, "register", "ci-bot"),
        (CHALLENGER, None, good, "register", "ci-bot"),
        (CHAMPION, fair, good, "promote", "lead@shop"),
        (CHALLENGER, good, None, "retire", "lead@shop"),
        (CHAMPION, good, fair, "rollback", "lead@shop"),
    ]
    assert history[-1].why == "complaints about deep denim"
    ledger = [json.loads(line) for line in (root / "ledger.jsonl").read_text().splitlines()]
    assert [(e["alias"], e["to_version"], e["action"]) for e in ledger] == [(a, t, act) for a, _, t, act, _ in moves]
    assert champion_lineage(history) == [fair]


def corrupt_model(root: Path, params: object) -> Path:
    """A run whose logged model bytes are garbage: registered fine, never loadable."""
    model_dir = train_and_log(root, params, brightness_classifier(*GOOD), "corrupt")
    import mlflow

    run_id = json.loads((model_dir / "classifier.json").read_text())["mlflow_run_id"]
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(root / "corrupt-download")))
    for keras_file in local.rglob("*.keras"):
        keras_file.write_bytes(b"not a keras archive")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifacts(str(local), "model")
    return model_dir


def test_a_model_that_does_not_load_is_never_promoted(project: tuple[Path, object]) -> None:
    from pipelines.registry import (
        CHAMPION,
        Registry,
        RegistryError,
        promote,
        register_trained,
    )

    root, params = project
    crops, labels = root / "data" / "crops", root / "data" / "labels"
    registry = Registry(params.registry)
    before = registry.aliases(COMPONENT) if registry.model_exists(COMPONENT) else {}
    done = register_trained(
        params, COMPONENT, corrupt_model(root, params), crops, labels, "ci-bot", progress=lambda line: None
    )
    version, decision = done.version, done.decision
    assert decision.alias is None and "load-and-query" in decision.reason
    assert registry.version(COMPONENT, version).tags["seamline.gate"] == "failed"
    with pytest.raises(RegistryError, match="does not load"):
        promote(params, COMPONENT, version, "force it", "lead@shop", crops, labels)
    assert registry.aliases(COMPONENT) == before
    assert registry.alias_version(COMPONENT, CHAMPION) != version


def test_cli_show_and_list_read_the_registry(project: tuple[Path, object], mlflow_server: str) -> None:
    root, _ = project
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    seamline = str(Path(sys.executable).with_name("seamline"))
    shown = subprocess.run(
        [seamline, "models", "show", COMPONENT, "--json", "--params", str(PROJECT_ROOT / "params.yaml"), "-p", "demo"],
        env=env,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["versions"] and report["versions"][0]["gate"] in ("passed", "failed")
    assert "champion" in report["aliases"]
    listed = subprocess.run(
        [seamline, "models", "list", "--params", str(PROJECT_ROOT / "params.yaml"), "-p", "demo"],
        env=env,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    # the registered component, and the others listed as not registered
    assert listed.returncode == 0 and COMPONENT in listed.stdout and "not registered" in listed.stdout
    missing = subprocess.run(
        [
            seamline,
            "models",
            "promote",
            COMPONENT,
            "999",
            "--reason",
            "x",
            "--params",
            str(PROJECT_ROOT / "params.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2 and "no version 999" in missing.stderr and "Traceback" not in missing.stderr


def test_unreachable_tracking_server_is_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    seamline = str(Path(sys.executable).with_name("seamline"))
    result = subprocess.run(
        [seamline, "models", "show", COMPONENT, "--params", str(PROJECT_ROOT / "params.yaml")],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout
    assert "MLflow at http://127.0.0.1" in result.stderr and "Traceback" not in result.stderr


def test_mlflow_models_serve_answers_for_the_champion(project: tuple[Path, object], mlflow_server: str) -> None:
    """MLflow's own scoring server (a client we did not write) loads models:/<c>@champion."""
    from pipelines.registry import CHAMPION, Registry

    root, params = project
    registry = Registry(params.registry)
    if registry.alias_version(COMPONENT, CHAMPION) is None:
        register(root, params, brightness_classifier(*GOOD), "serve-me")
    port = free_port()
    # MLflow starts uvicorn by name: the venv's bin must be on the PATH, as in an activated venv.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    log = root / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "models",
                "serve",
                "-m",
                f"models:/{COMPONENT}@{CHAMPION}",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, log, seconds=180)
        batch = np.stack([np.full((SIZE, SIZE, 3), BRIGHTNESS[c], np.float32) for c in ("light", "deep")])
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": batch.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
    finally:
        stop(server)
    classes = list(params.components[COMPONENT].classes)
    assert predictions.shape == (2, 3)
    assert [classes[i] for i in predictions.argmax(axis=1)] == ["light", "deep"]
