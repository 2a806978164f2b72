"""One tiny classifier trained end to end by the train stage, from crop files and split CSVs the
way the crop and label stages write them: the MLflow run holds its metrics, the confusion
matrix and a model that loads back and predicts; DVC's files are where DVC expects them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from crawlers.demo_shop.truth import products
from tests.conftest import PROJECT_ROOT, tiny_profile_base

pytestmark = pytest.mark.slow

SEAMLINE = str(Path(sys.executable).with_name("seamline"))
COMPONENT = "jeans-color"
TINY_TRAINING = {
    "weights": None,
    "image_size": 32,
    "batch_size": 8,
    "early_stopping_patience": 2,
    "early_stopping_start": 0,
    "augmentation": {"shift": 0.05},
    "ema_decay": 0.9,  # weight averaging in both phases
    "frozen": {"epochs": 2, "learning_rate": 1.0e-3, "cached_features": True, "augmented_views": 1},
    "fine_tune": {"epochs": 1, "learning_rate": 1.0e-3, "unfreeze_from": 0},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, demo_shop: Path) -> Path:
    """Whole-image crops (32 px) of the shop's jeans photos with their colour, split 60/20/20."""
    root = tmp_path_factory.mktemp("train-project")
    tree = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    tiny = tiny_profile_base(tree)
    tiny["training"] = {**tiny["training"], **TINY_TRAINING}
    tiny["crop"] = {"mode": "none", "size": 32}
    tree["profiles"]["tiny"] = tiny
    tree["profile"] = "tiny"
    tree["registry"]["tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    tree["registry"]["artifact_root"] = str(root / "artifacts")
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))

    crops, labels = root / "data" / "crops", root / "data" / "labels"
    (crops / COMPONENT).mkdir(parents=True)
    labels.mkdir(parents=True)
    rows = []
    for product in products(demo_shop):
        if product["item"] != "jeans":
            continue
        for image in (i for i in product["images"] if not i["fault"]):
            pixels = cv2.imread(str(demo_shop / "site" / image["url"].lstrip("/")))
            sha = f"{len(rows):064x}"
            cv2.imwrite(
                str(crops / COMPONENT / f"{sha}.png"), cv2.resize(pixels, (32, 32), interpolation=cv2.INTER_AREA)
            )
            split = ("train", "train", "train", "val", "test")[len(rows) % 5]
            rows.append((sha, product["labels"]["color"], split))
    with (labels / f"{COMPONENT}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "label", "split", "label_source"])
        writer.writerows([sha, label, split, "weak"] for sha, label, split in rows)
    with (crops / COMPONENT / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["component", "sha256", "split", "file", "status", "reason", "score", "box", "recipe"])
        writer.writerows(
            [COMPONENT, sha, split, f"{COMPONENT}/{sha}.png", "cropped", "", "", "", "none:32"]
            for sha, _, split in rows
        )
    return root


@pytest.fixture(scope="module")
def trained(project: Path) -> dict:
    result = subprocess.run(
        [SEAMLINE, "train", COMPONENT, "--params", "params.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 3 (fine_tune)" in result.stdout and f"train {COMPONENT}: frozen acc" in result.stdout
    return json.loads((project / "metrics" / f"{COMPONENT}.json").read_text())


def test_metrics_report_both_phases_and_every_class(trained: dict) -> None:
    assert 0.0 <= trained["accuracy"] <= 1.0 and 0.0 <= trained["macro_f1"] <= 1.0
    assert set(trained["frozen"]) == {"accuracy", "macro_f1"}
    assert set(trained["per_class"]) == {"light", "middle", "deep"}
    assert trained["epochs"] == 3 and set(trained["phase_seconds"]) == {"frozen", "fine_tune"}
    assert 0.0 <= trained["with_unknown"]["coverage"] <= 1.0
    assert set(trained["with_unknown"]) == {"accuracy", "macro_f1", "coverage", "accuracy_answered"}


def test_dvc_outputs_are_written(project: Path, trained: dict) -> None:
    classifier = json.loads((project / "models" / COMPONENT / "classifier.json").read_text())
    assert classifier["classes"] == ["light", "middle", "deep"] and set(classifier["thresholds"]) == set(
        classifier["classes"]
    )
    history = list(csv.DictReader((project / "plots" / COMPONENT / "history.csv").open()))
    assert [row["phase"] for row in history] == ["frozen", "frozen", "fine_tune"]
    confusion = list(csv.DictReader((project / "plots" / COMPONENT / "confusion.csv").open()))
    assert len(confusion) == trained["test_examples"]
    assert (project / "plots" / COMPONENT / "confusion.png").stat().st_size > 1000


def test_the_mlflow_run_holds_metrics_confusion_matrix_and_a_loadable_model(project: Path, trained: dict) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    classifier = json.loads((project / "models" / COMPONENT / "classifier.json").read_text())
    run = mlflow.get_run(classifier["mlflow_run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(trained["accuracy"])
    assert run.data.metrics["frozen_test_accuracy"] == pytest.approx(trained["frozen"]["accuracy"])
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]  # both phases on one epoch axis
    # The model ends with the weights of whichever phase reached the lower validation loss.
    expected = "frozen" if min(m.value for m in history[:2]) <= history[2].value else "fine_tune"
    assert trained["kept_phase"] == expected == run.data.tags["seamline.kept_phase"]
    if expected == "frozen":
        assert trained["accuracy"] == pytest.approx(trained["frozen"]["accuracy"])
    assert run.data.tags["seamline.component"] == COMPONENT and run.data.tags["seamline.git_commit"]
    assert run.data.params["training.ema_decay"] == "0.9"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert "plots/confusion.png" in artifacts
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    batch = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    probabilities = np.asarray(model.predict(batch))
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert model.metadata.signature is not None


def test_training_without_crops_says_which_stage_to_run(tmp_path: Path, project: Path) -> None:
    result = train_stage(project, "--crops", str(tmp_path / "none"))
    assert result.returncode == 2
    assert f"{COMPONENT}/index.csv: missing (run the crop stage first)" in result.stderr


def train_stage(project: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.stages.train",
            "--component",
            COMPONENT,
            "--params",
            "params.yaml",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=project,
    )


def test_a_component_short_of_labels_is_skipped_and_keeps_its_last_model(project: Path, trained: dict) -> None:
    """The label stage's gate says skip: the stage trains nothing, exits 0, keeps the last model
    (DVC persists it) and its scores, and says why; registering it is refused in one line."""
    model = project / "models" / COMPONENT / "model.keras"
    before = model.stat().st_mtime_ns
    gate = project / "data" / "labels" / f"{COMPONENT}.json"
    reason = "too few labels: deep 3 (validation.min_examples_per_class 8)"
    gate.write_text(
        json.dumps(
            {
                "component": COMPONENT,
                "labelled": 40,
                "candidates": 50,
                "conflicts": 0,
                "per_class": {"light": 20, "middle": 17, "deep": 3},
                "per_split": {"train": 30, "val": 5, "test": 5},
                "skipped": reason,
                "trains": False,
            }
        )
    )
    try:
        result = train_stage(project)
        assert result.returncode == 0, result.stderr
        assert f"train {COMPONENT}: skipped this run: {reason}" in result.stdout
        assert f"train {COMPONENT}: skipped (its last trained model stays)" in result.stdout
        assert model.stat().st_mtime_ns == before  # not retrained, not removed
        metrics = json.loads((project / "metrics" / f"{COMPONENT}.json").read_text())
        assert metrics["skipped"] == reason and metrics["accuracy"] == trained["accuracy"]
        mark = json.loads((project / "models" / COMPONENT / "skipped.json").read_text())
        assert mark["reason"] == reason
        refused = subprocess.run(
            [SEAMLINE, "models", "register", COMPONENT, "--params", "params.yaml"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert refused.returncode == 2
        assert f"{COMPONENT}: not trained in the last run ({reason}); nothing new to register" in refused.stderr
        # --all registers what was trained and names what was not, instead of stopping at it
        every = subprocess.run(
            [SEAMLINE, "models", "register", "--all", "--params", "params.yaml"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert every.returncode == 0, every.stderr
        assert f"{COMPONENT}: not trained in the last run ({reason}); the champion stays" in every.stdout
        assert "shirt-collar: no trained model in models/shirt-collar; nothing to register" in every.stdout
    finally:
        gate.unlink()


def test_a_component_never_trained_and_short_of_crops_is_skipped_with_files_dvc_expects(
    tmp_path: Path, project: Path
) -> None:
    """No gate file (labels from before gates) and a split left empty by the crops: skipped too,
    and its outputs exist for DVC to record though no model was ever trained."""
    crops = tmp_path / "crops"
    (crops / COMPONENT).mkdir(parents=True)
    rows = list(csv.DictReader((project / "data" / "crops" / COMPONENT / "index.csv").open()))
    with (crops / COMPONENT / "index.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if row["split"] != "test")  # nothing cropped in test
    out, metrics, plots = tmp_path / "model", tmp_path / "metrics.json", tmp_path / "plots"
    result = train_stage(
        project, "--crops", str(crops), "--out", str(out), "--metrics", str(metrics), "--plots", str(plots)
    )
    assert result.returncode == 0, result.stderr
    assert "skipped this run: no cropped examples in the test split" in result.stdout
    assert "skipped (no model yet)" in result.stdout
    assert json.loads((out / "skipped.json").read_text())["reason"].startswith("no cropped examples in the test")
    assert json.loads(metrics.read_text())["skipped"].startswith("no cropped examples")
    assert {p.name for p in plots.iterdir()} == {"history.csv", "confusion.csv", "curves.png", "confusion.png"}
