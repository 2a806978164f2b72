"""MLflow tracking for every training stage: one place that resolves the tracking URI, creates
experiments with the configured artifact root, tags runs with the code and data versions, and
logs a trained classifier in MLflow's Keras flavour and the detector as a pyfunc model.

`MLFLOW_TRACKING_URI` in the environment wins over `registry.tracking_uri`, as MLflow users expect
(a shared server in production, the local SQLite file by default).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.config import RegistryParams

SNAPSHOT_PATH = Path("reports/data/snapshot.json")


def tracking_uri(registry: RegistryParams) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or registry.tracking_uri
    if uri.startswith("sqlite:///"):
        # A relative SQLite path is relative to the project root; make its folder exist.
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def artifact_location(registry: RegistryParams) -> str:
    root = registry.artifact_root
    return root if "://" in root else Path(root).resolve().as_uri()


def experiment_artifacts(registry: RegistryParams, uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: under `artifact_root` with a local tracking
    store; a tracking server picks its own (proxied) store unless `artifact_root` is a URI."""
    if uri.startswith(("http://", "https://")) and "://" not in registry.artifact_root:
        return None
    return f"{artifact_location(registry)}/{experiment}"


def git_commit(cwd: Path = Path(".")) -> str | None:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def data_version(snapshot: Path = SNAPSHOT_PATH) -> str | None:
    """A short hash of this week's data snapshot (reports/data/snapshot.json), None before one."""
    import hashlib

    if not snapshot.is_file():
        return None
    return hashlib.sha256(snapshot.read_bytes()).hexdigest()[:12]


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow's flat key → string params (MLflow caps a value at 6000 chars)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, name + "."))
        else:
            flat[name] = json.dumps(value)[:6000] if not isinstance(value, str) else value
    return flat


@contextmanager
def mlflow_run(
    registry: RegistryParams, experiment: str, run_name: str, tags: Mapping[str, str] | None = None
) -> Iterator[Any]:
    """An active MLflow run in `experiment`, tagged with the git commit and data version."""
    import mlflow

    uri = tracking_uri(registry)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=experiment_artifacts(registry, uri, experiment))
    mlflow.set_experiment(experiment)
    base_tags = {"seamline.git_commit": git_commit() or "unknown", "seamline.data_version": data_version() or "none"}
    with mlflow.start_run(run_name=run_name, tags={**base_tags, **(tags or {})}) as run:
        yield run


def log_classifier_model(model: Any, classifier: Mapping[str, Any]) -> None:
    """The model as the active run's `model` artifact in MLflow's keras flavour, with a signature,
    an input example and `classifier.json` (classes, thresholds, input size, crop mode) beside it,
    so `mlflow models predict/serve -m runs:/<run>/model` load it and the registry and
    `seamline predict` know what its outputs mean.

    Saved locally first: mlflow 3.17's `mlflow.keras.log_model` writes the input example before
    it creates the model folder and fails with FileNotFoundError.
    """
    import numpy as np
    from mlflow.models import infer_signature

    import mlflow
    from pipelines.classifier import CLASSIFIER_FILE

    size = int(classifier["image_size"])
    example = np.full((1, size, size, 3), 128.0, dtype=np.float32)
    signature = infer_signature(example, np.asarray(model.predict(example, verbose=0), dtype=np.float32))
    with tempfile.TemporaryDirectory(prefix="seamline-model-") as work:
        path = Path(work) / "model"
        path.mkdir()
        mlflow.keras.save_model(
            model, str(path), signature=signature, input_example=example, pip_requirements=model_requirements()
        )
        (path / CLASSIFIER_FILE).write_text(json.dumps(dict(classifier), indent=2) + "\n", encoding="utf-8")
        mlflow.log_artifacts(str(path), "model")


def log_detector_model(folder: Path, run_id: str | None = None) -> None:
    """The detector the stage saved in `folder` (checkpoint, detector.json) as a run's `model`
    artifact: an MLflow pyfunc model whose loader is `pipelines.detect`, with the folder as its
    data. MLflow registers only a folder with an MLmodel file, so this is what lets the registry
    version, alias and serve the detector like a classifier. The active run's, or `run_id`'s (a
    detector trained before the stage logged one, registered later).

    The loader module is Seamline's own, so whatever loads it needs Seamline installed, as every
    Seamline process and the serving image have."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="seamline-detector-model-") as work:
        path = Path(work) / "model"
        mlflow.pyfunc.save_model(
            str(path),
            loader_module="pipelines.detect",
            data_path=str(folder),
            pip_requirements=model_requirements(DETECTOR_PACKAGES),
        )
        if run_id is None:
            mlflow.log_artifacts(str(path), "model")
        else:
            mlflow.MlflowClient().log_artifacts(run_id, str(path), "model")


# What the keras flavour needs to load and run a classifier. Left to itself, mlflow infers this
# by loading the model in a child process, a quarter of a tiny training's time (docs/benchmarks.md).
MODEL_PACKAGES = ("keras", "tensorflow", "numpy")
# What the detector's loader (pipelines.detect) imports to rebuild and run Model Garden's Mask R-CNN.
DETECTOR_PACKAGES = ("tensorflow", "tf-models-official", "tf-keras", "numpy", "pandas", "pycocotools")


def model_requirements(packages: tuple[str, ...] = MODEL_PACKAGES) -> list[str] | None:
    """`packages` pinned to the versions installed here (mlflow adds itself); None, so mlflow
    infers them, where one is installed under another name (tensorflow-cpu, tf-nightly)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [f"{name}=={version(name)}" for name in packages]
    except PackageNotFoundError:
        return None
