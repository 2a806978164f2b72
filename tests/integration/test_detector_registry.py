"""The detector in the registry, against a real `mlflow server` on 127.0.0.1 with a SQLite store: the
detector stage's tiny Mask R-CNN is registered as `detector`, gated on a COCO metric against the
champion on the held-out annotated images, promoted and rolled back by alias with the ledger; and
`seamline predict`, the search service and the index load whichever version is the champion.

The gate's verdicts are known before registering: the gate metric here is the crop box's mean IoU,
which the trained detector has above 0 and a detector that finds nothing (its background logit
always wins) has at exactly 0. (A 4-step detector's box AP may be 0 as well.) The trained one keeps
every box whatever its score, so each garment gets a largest box however little it learnt."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_detector_project, train_tiny_detector

pytestmark = pytest.mark.slow

SEAMLINE = str(Path(sys.executable).with_name("seamline"))
KEEP_EVERY_BOX = "task.model.detection_generator.pre_nms_score_threshold"  # Model Garden's default: 0.05


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, demo_shop: Path, mlflow_server: str) -> Path:
    root = tiny_detector_project(tmp_path_factory.mktemp("detector-registry"), demo_shop, mlflow_server)
    tree = yaml.safe_load((root / "params.yaml").read_text())
    tree["registry"]["detector_gate_metric"] = "mean_iou"
    tree["profiles"]["tiny"]["detector"]["overrides"][KEEP_EVERY_BOX] = 0.0
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def trained(project: Path) -> dict:
    metrics = train_tiny_detector(project)
    assert metrics["mean_iou"] > 0, "the tiny detector's boxes overlap no garment; the gate below needs some"
    return metrics


def params_of(project: Path) -> object:
    from pipelines.config import load_params

    return load_params(project / "params.yaml")


def blind_detector(project: Path, name: str) -> Path:
    """A detector that finds nothing, saved and tracked as the detector stage leaves one
    (models/<name>/ with detector.json naming its MLflow run, the run's `model`)."""
    import mlflow
    from pipelines.detect import Detector, build_maskrcnn, maskrcnn_experiment, save_detector
    from pipelines.tracking import log_detector_model, mlflow_run

    params = params_of(project)
    # Model Garden's own score floor, so that boxes scoring ~0 for every garment are dropped.
    overrides = {key: value for key, value in params.detector.overrides.items() if key != KEEP_EVERY_BOX}
    detector_params = params.detector.model_copy(update={"overrides": overrides})
    model = build_maskrcnn(maskrcnn_experiment(detector_params).task.model)
    Detector(detector_params, model, "unsaved").detect([np.zeros((128, 128, 3), np.uint8)])  # builds the variables
    classifier = model.detection_head[0]._classifier
    kernel, bias = classifier.get_weights()
    # Class 0 is the background: every box scores ~0 for every garment, under any score threshold.
    background = np.array([20.0] + [-20.0] * (len(bias) - 1), dtype=bias.dtype)
    classifier.set_weights([np.zeros_like(kernel), background])
    out = project / "models" / name
    with mlflow_run(params.registry, "detector", name) as run:
        version = save_detector(model, detector_params, out, {"mlflow_run_id": run.info.run_id})
        mlflow.set_tag("seamline.detector_version", version)
        log_detector_model(out)
    return out


def register(project: Path, folder: Path) -> object:
    from pipelines.registry import register_detector

    params = params_of(project)
    return register_detector(params, folder, project / "data" / "annotations", "ci-bot", progress=lambda line: None)


@pytest.fixture(scope="module")
def registered(project: Path, trained: dict) -> dict[str, object]:
    """The blind detector registered first, then the trained one, then another blind one."""
    first = register(project, blind_detector(project, "blind"))
    better = register(project, project / "models" / "detector")
    again = register(project, project / "models" / "detector")
    worse = register(project, blind_detector(project, "blind-again"))
    return {"blind": first, "trained": better, "again": again, "worse": worse}


def test_the_detector_is_gated_on_its_coco_metric_against_the_champion(
    project: Path, trained: dict, registered: dict[str, object]
) -> None:
    from pipelines.registry import CHALLENGER, CHAMPION, DETECTOR, Registry

    registry = Registry(params_of(project).registry)
    blind, better, again, worse = (registered[k] for k in ("blind", "trained", "again", "worse"))
    assert blind.decision.alias == CHAMPION and "first model to pass: mean_iou 0.0000" in blind.decision.reason
    assert blind.candidate.mean_iou == 0.0 and blind.candidate.box_map == 0.0
    assert better.decision.alias == CHALLENGER, better.decision.reason
    assert f"beats champion v{blind.version}'s 0.0000" in better.decision.reason
    assert better.champion_version == blind.version and better.champion.mean_iou == 0.0
    # Scored again now, on the same held-out images as the stage's own evaluation: the same answer.
    assert better.candidate.mean_iou == pytest.approx(trained["mean_iou"], abs=0.01)
    assert not again.new and again.version == better.version and "already registered" in again.decision.reason
    assert worse.decision.alias is None and "does not beat champion" in worse.decision.reason

    assert registry.aliases(DETECTOR) == {CHAMPION: blind.version, CHALLENGER: better.version}
    tags = registry.version(DETECTOR, better.version).tags
    assert tags["seamline.gate"] == "passed" and tags["seamline.gate_metric"] == "mean_iou"
    assert tags["seamline.detector_version"] == trained["version"]
    assert float(tags["seamline.eval_box_map"]) == pytest.approx(trained["box_map"], abs=1e-4)
    assert float(tags["seamline.gate_test_mean_iou"]) > 0 and int(tags["seamline.gate_test_images"]) > 0
    assert registry.version(DETECTOR, worse.version).tags["seamline.gate"] == "failed"
    record = json.loads((project / "models" / "detector" / "detector.json").read_text())
    assert registry.version(DETECTOR, better.version).run_id == record["mlflow_run_id"]


def test_promote_and_rollback_move_the_detector_alias_with_the_ledger(
    project: Path, registered: dict[str, object]
) -> None:
    from pipelines.registry import CHAMPION, DETECTOR, Registry, RegistryError, promote, rollback

    params = params_of(project)
    registry = Registry(params.registry)
    blind, better = registered["blind"].version, registered["trained"].version
    unused, annotations = project / "unused", project / "data" / "annotations"
    promote(params, DETECTOR, better, "finds garments", "lead@shop", unused, unused, annotations=annotations)
    assert registry.aliases(DETECTOR) == {CHAMPION: better}
    with pytest.raises(RegistryError, match="needs known images"):
        rollback(params, DETECTOR, "no annotations", "lead@shop", unused, unused, annotations=unused)
    rollback(params, DETECTOR, "crops look off", "lead@shop", unused, unused, annotations=annotations)
    assert registry.alias_version(DETECTOR, CHAMPION) == blind
    moves = [(e.alias, e.from_version, e.to_version, e.action, e.who) for e in registry.history(DETECTOR)]
    assert moves == [
        ("champion", None, blind, "register", "ci-bot"),
        ("challenger", None, better, "register", "ci-bot"),
        ("champion", blind, better, "promote", "lead@shop"),
        ("challenger", better, None, "retire", "lead@shop"),
        ("champion", better, blind, "rollback", "lead@shop"),
    ]
    ledger = [json.loads(line) for line in (project / "ledger.jsonl").read_text().splitlines()]
    assert [(e["model"], e["to_version"], e["action"]) for e in ledger if e["model"] == DETECTOR] == [
        (DETECTOR, to, action) for _, _, to, action, _ in moves
    ]


def classifier_champion(project: Path) -> None:
    """A jeans-color classifier champion (the registry tests' brightness reader): the tagger needs one."""
    from pipelines.registry import CHAMPION, Registry, register_trained
    from tests.integration.test_registry import COMPONENT, GOOD, brightness_classifier, train_and_log, write_grey_crops

    params = params_of(project)
    if Registry(params.registry).alias_version(COMPONENT, CHAMPION) is not None:
        return
    write_grey_crops(project)
    model_dir = train_and_log(project, params, brightness_classifier(*GOOD), "good")
    crops, labels = project / "data" / "crops", project / "data" / "labels"
    done = register_trained(params, COMPONENT, model_dir, crops, labels, "ci-bot", progress=lambda line: None)
    assert done.decision.alias == CHAMPION, done.decision.reason


def write_manifest(project: Path, count: int) -> Path:
    """A validated manifest of `count` annotated photos (all the index reads)."""
    images = sorted((project / "data" / "annotations" / "images").iterdir())[:count]
    rows = [
        {
            "sha256": path.stem,
            "source": "demo",
            "product_url": f"http://shop/{path.stem}",
            "title": "jeans",
            "path": f"annotations/images/{path.name}",
            "item_hint": None,
        }
        for path in images
    ]
    manifest = project / "data" / "validated" / "manifest.parquet"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(manifest)
    return manifest


def index(project: Path, manifest: Path, catalogue: Path) -> set[str]:
    """The weekly index step, in this process; the detector versions the catalogue's items came from."""
    from pipelines.stages.index import main

    arguments = ["--params", str(project / "params.yaml"), "--manifest", str(manifest)]
    arguments += ["--images", str(project / "data"), "--crops", str(project / "data" / "crops")]
    assert main([*arguments, "--catalogue", str(catalogue)]) == 0
    with sqlite3.connect(catalogue) as connection:
        return {row[0] for row in connection.execute("SELECT detector_version FROM items")}


def cli(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SEAMLINE, *arguments, "--params", "params.yaml"],
        cwd=project,
        env={**os.environ, "COLUMNS": "200"},  # rich tables one row per line
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_predict_search_and_index_serve_the_champion_detector(
    project: Path, trained: dict, registered: dict[str, object]
) -> None:
    from pipelines.predict import Tagger
    from pipelines.registry import CHAMPION, DETECTOR, Registry, promote
    from pipelines.serve import load_service

    params = params_of(project)
    registry = Registry(params.registry)
    blind, better = registered["blind"].version, registered["trained"].version
    blind_hash = registry.version(DETECTOR, blind).tags["seamline.detector_version"]
    classifier_champion(project)
    unused, annotations = project / "unused", project / "data" / "annotations"
    if registry.alias_version(DETECTOR, CHAMPION) != better:
        promote(params, DETECTOR, better, "the trained one", "lead@shop", unused, unused, annotations=annotations)

    tagger = Tagger.from_registry(params)
    assert (tagger.detector.registered_version, tagger.detector.version) == (better, trained["version"])
    manifest, catalogue = write_manifest(project, 3), project / "catalogue.db"
    assert index(project, manifest, catalogue) == {trained["version"]}

    # An ML lead rolls the detector back with the CLI; the models/detector folder still holds the trained one.
    rolled = cli(project, "models", "rollback", DETECTOR, "--reason", "crops look off", "--who", "lead@shop")
    assert rolled.returncode == 0, rolled.stderr
    assert f"{DETECTOR}: champion v{better} → v{blind}" in rolled.stdout
    assert index(project, manifest, catalogue) == {blind_hash}  # re-tagged, not judged current by models/detector

    service = load_service(params, project / "data", catalogue, manifest, None)
    assert service.tagger.detector.registered_version == blind
    promote(params, DETECTOR, better, "back to the trained one", "lead@shop", unused, unused, annotations=annotations)
    assert service.reload_moved_champions(lambda line: None) == {DETECTOR: better}
    assert service.tagger.detector.registered_version == better
    with sqlite3.connect(catalogue) as connection:
        assert {row[0] for row in connection.execute("SELECT detector_version FROM items")} == {trained["version"]}

    photo = sorted((annotations / "images").iterdir())[0]
    predicted = cli(project, "predict", str(photo))
    assert predicted.returncode == 0, predicted.stderr
    assert f"detector (champion) v{better}" in predicted.stdout
    listed = cli(project, "models", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if DETECTOR in line and "mean_iou" in line)
    assert f"v{better} (mean_iou" in row


def test_no_detector_champion_is_one_line(project: Path, tmp_path: Path) -> None:
    """A registry without a detector champion: predict says so in one line, and the index step skips."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    photo = sorted((project / "data" / "annotations" / "images").iterdir())[0]
    result = subprocess.run(
        [SEAMLINE, "predict", str(photo), "--params", str(project / "params.yaml")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stdout
    assert "no champion detector" in result.stderr and "seamline models register detector" in result.stderr
    assert "Traceback" not in result.stderr
