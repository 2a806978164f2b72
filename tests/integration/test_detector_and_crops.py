"""The detector stage trains a real (tiny) Model Garden Mask R-CNN on the demo shop's annotations,
evaluates it with COCOeval and tracks it in MLflow; the crop stage and `seamline detect` use it.

The detector is sized for a test (128 px, a handful of steps): it proves the plumbing, not the
accuracy, which the demo profile's run reports.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.crop_set import read_crop_set
from tests.conftest import tiny_detector_project, train_tiny_detector

pytestmark = pytest.mark.slow

SEAMLINE = str(Path(sys.executable).with_name("seamline"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, demo_shop: Path) -> Path:
    """A working folder with the shop's annotations imported and params for a tiny detector."""
    return tiny_detector_project(tmp_path_factory.mktemp("detector-project"), demo_shop)


@pytest.fixture(scope="module")
def trained(project: Path) -> dict:
    return train_tiny_detector(project)


def test_the_detector_stage_reports_coco_metrics_and_saves_a_versioned_model(project: Path, trained: dict) -> None:
    for key in ("box_map", "box_map50", "mask_map", "mask_map50", "mean_iou"):
        assert 0.0 <= trained[key] <= 1.0, key
    assert set(trained["mean_iou_per_category"]) == {"shirt", "collar", "jeans"}
    saved = json.loads((project / "models" / "detector" / "detector.json").read_text())
    assert saved["version"] == trained["version"] and len(saved["version"]) == 12
    assert saved["params"]["image_size"] == 128


def test_the_detector_run_is_in_mlflow_with_metrics_and_the_model(project: Path, trained: dict) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["detector"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["box_map"] == pytest.approx(trained["box_map"])
    assert "train_total_loss" in run.data.metrics
    assert run.data.params["detector.image_size"] == "128"
    assert run.data.tags["seamline.detector_version"] == trained["version"]
    # The detector is the run's `model`, an MLflow model the registry can register as `detector`.
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.metadata.flavors["python_function"]["loader_module"] == "pipelines.detect"
    client = mlflow.MlflowClient()
    data = model.metadata.flavors["python_function"]["data"]
    assert f"model/{data}/detector.json" in {a.path for a in client.list_artifacts(run.info.run_id, f"model/{data}")}
    image = np.zeros((96, 128, 3), np.uint8)
    assert list(model.predict([image]).columns) == ["image", "category", "score", "x0", "y0", "x1", "y1"]


def write_inputs(project: Path, images: list[Path], components: list[str]) -> None:
    """A validated manifest and label CSVs for `images` (the crop stage reads nothing else)."""
    rows = [{"sha256": path.stem, "path": f"annotations/images/{path.name}"} for path in images]
    (project / "data" / "validated").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(project / "data" / "validated" / "manifest.parquet")
    (project / "data" / "labels").mkdir(parents=True, exist_ok=True)
    for component in components:
        with (project / "data" / "labels" / f"{component}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sha256", "label", "split", "label_source"])
            writer.writerows([row["sha256"], "any", "train", "weak"] for row in rows)


def crop_labelled(project: Path) -> dict:
    from pipelines.stages.crop import main

    assert (
        main(
            [
                "--params",
                str(project / "params.yaml"),
                "--labels",
                str(project / "data/labels"),
                "--manifest",
                str(project / "data/validated/manifest.parquet"),
                "--images",
                str(project / "data"),
                "--detector",
                str(project / "models/detector"),
                "--annotations",
                str(project / "data/annotations"),
                "--out",
                str(project / "data/crops"),
                "--summary",
                str(project / "crop_summary.json"),
            ]
        )
        == 0
    )
    return json.loads((project / "crop_summary.json").read_text())


def test_the_crop_stage_reprocesses_only_new_images(project: Path, trained: dict) -> None:
    components = ["shirt-collar", "shirt-pattern", "jeans-fit", "jeans-color", "jeans-washing", "jeans-damage"]
    images = sorted((project / "data" / "annotations" / "images").iterdir())[:42]
    first, added = images[:40], images[40:42]  # 5% new next week
    write_inputs(project, first, components)
    full = crop_labelled(project)
    assert full["detected_images"] == 40 and full["processed_pairs"] == 40 * len(components)
    index = [row for c in components for row in csv.DictReader((project / "data" / "crops" / c / "index.csv").open())]
    assert len(index) == 40 * len(components)
    for row in index:  # with on_no_detection: full_image every pair has a file, and says why
        assert row["status"] in ("cropped", "full_image")
        assert (row["status"] == "full_image") == (row["reason"] == "no_detection")
        assert (project / "data" / "crops" / row["file"]).is_file()

    write_inputs(project, first + added, components)
    incremental = crop_labelled(project)
    assert incremental["detected_images"] == 2
    assert incremental["processed_pairs"] == 2 * len(components)
    assert incremental["reused_pairs"] == 40 * len(components)

    unchanged = crop_labelled(project)
    assert (unchanged["detected_images"], unchanged["processed_pairs"]) == (0, 0)

    # A component's own zoom or mode re-crops that component alone, from the cached detections.
    params_file = project / "params.yaml"
    original = params_file.read_text()
    tree = yaml.safe_load(original)
    own = tree["profiles"]["tiny"].setdefault("components", {})
    own.setdefault("shirt-pattern", {})["crop_margin"] = -0.3
    own.setdefault("jeans-color", {})["crop_mode"] = "mask"
    params_file.write_text(yaml.safe_dump(tree, sort_keys=False))
    try:
        recut = crop_labelled(project)
    finally:
        params_file.write_text(original)
    assert (recut["detected_images"], recut["processed_pairs"]) == (0, 2 * 42)
    recipes = recut["recipes"]
    assert recipes["shirt-pattern"] != recipes["shirt-collar"]
    assert recipes["jeans-color"].startswith("mask:") and recipes["jeans-fit"].startswith("bbox:")
    assert recipes["jeans-color"].split(":")[1:] == recipes["jeans-fit"].split(":")[1:]


def test_corrupt_and_missing_images_are_recorded_with_their_reason(project: Path, trained: dict) -> None:
    images = sorted((project / "data" / "annotations" / "images").iterdir())[:3]
    broken_dir = project / "data" / "broken"
    broken_dir.mkdir(exist_ok=True)
    corrupt = broken_dir / ("c" * 64 + ".jpg")
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    shutil.copy(images[0], broken_dir / images[0].name)
    write_inputs(
        project,
        [*images, corrupt],
        ["shirt-collar", "shirt-pattern", "jeans-fit", "jeans-color", "jeans-washing", "jeans-damage"],
    )
    manifest = pd.read_parquet(project / "data/validated/manifest.parquet")
    manifest.loc[manifest["sha256"] == corrupt.stem, "path"] = f"broken/{corrupt.name}"
    missing = pd.DataFrame([{"sha256": "d" * 64, "path": "broken/gone.jpg"}])
    pd.concat([manifest, missing]).to_parquet(project / "data/validated/manifest.parquet")
    with (project / "data/labels/shirt-pattern.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["d" * 64, "any", "test", "weak"])
    summary = crop_labelled(project)
    assert summary["reasons"]["corrupt_image"] == 6  # one image, six components
    assert summary["reasons"]["missing_image"] == 1
    rows = {(row.component, row.sha256): asdict(row) for row in read_crop_set(project / "data" / "crops").values()}
    assert rows[("shirt-pattern", "c" * 64)]["status"] == "skipped"
    assert len(rows) == 4 * 6 + 1  # pairs from the previous test are pruned with their files


def test_detect_cli_shows_detections_and_writes_the_crop(project: Path, trained: dict) -> None:
    photo = sorted((project / "data" / "annotations" / "images").iterdir())[0]
    result = subprocess.run(
        [
            SEAMLINE,
            "detect",
            str(photo),
            "--component",
            "shirt-pattern",
            "--mode",
            "none",
            "--out",
            "crop.png",
            "--sheet",
            "sheet.png",
            "--params",
            "params.yaml",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"detector {trained['version']}" in result.stdout
    assert (project / "crop.png").is_file() and (project / "sheet.png").is_file()

    (project / "bad.jpg").write_bytes(b"garbage")
    result = subprocess.run(
        # The whole photo as the crop: this short-trained detector may find nothing above the
        # threshold on it, and what is checked here is that the bad file does not stop the good.
        [SEAMLINE, "detect", "bad.jpg", str(photo), "-c", "shirt-pattern", "--mode", "none", "--out", "crops"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "bad.jpg: not a decodable image" in result.stderr
    assert len(list((project / "crops").glob("*.png"))) >= 1  # the good photo still ran


def test_detect_cli_without_a_trained_detector_says_what_to_run(project: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [SEAMLINE, "detect", "x.jpg", "--detector", str(tmp_path), "--params", str(project / "params.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "no trained detector" in result.stderr and "dvc repro detector" in result.stderr
