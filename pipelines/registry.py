"""The model registry: register each trained component classifier and the garment detector in MLflow,
gate each against its champion on the same test data (a classifier on the test split, the detector
by a COCO metric on the held-out annotated images), and move the `champion`/`challenger` aliases
with an audit ledger. `seamline models …` and the weekly flow's `register` step
(`pipelines.stages.register`) call it; `seamline predict` and the search service load the champions.

MLflow keeps no alias history, so every move is written twice: as a `seamline.ledger.NNNN` tag on
the registered model (shared through the tracking server) and as a line in `registry.ledger`.
"""

from __future__ import annotations

import getpass
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from pipelines.config import (
    Params,
    RegistryParams,
)

CHAMPION, CHALLENGER = "champion", "challenger"
LEDGER_TAG = "seamline.ledger."
QUERY_IMAGES = 4  # known images the load-and-query check predicts on
# The detector's registered model. Classifiers are registered under their component's name, which
# params require to start with shirt- or jeans-, so this name cannot clash with one.
DETECTOR = "detector"
# What the detector stage's COCO evaluation reports (metrics/detector.json) and its gate may compare.
DETECTOR_METRICS = ("box_map", "box_map50", "mask_map", "mask_map50", "mean_iou")


class RegistryError(RuntimeError):
    """A registry operation that cannot go ahead (no such model or version, a model that cannot be
    served, an unreachable tracking server), in one line."""


class NoChampion(RegistryError):
    """No component, or no detector, has a version under the alias asked for: nothing to serve yet."""


def registered_names(params: Params) -> list[str]:
    """Every registered model Seamline keeps: one per component, then the detector."""
    return [*params.components, DETECTOR]


def check_name(params: Params, name: str) -> None:
    """A ParamsError naming the known components unless `name` is one of them or the detector."""
    if name != DETECTOR:
        params.component(name)


# --- pure rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """A model's test-split scores, as the gate compares them."""

    accuracy: float
    macro_f1: float
    recall: dict[str, float]

    def metric(self, name: str) -> float:
        return self.accuracy if name == "accuracy" else self.macro_f1


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    alias: str | None  # the alias the version gets: champion, challenger, or none
    reason: str


@dataclass(frozen=True)
class DetectorScores:
    """A detector's COCO scores on the held-out annotated images, as its gate compares them."""

    box_map: float
    box_map50: float
    mask_map: float
    mask_map50: float
    mean_iou: float

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


def detector_scores_from_metrics(metrics: Mapping[str, Any]) -> DetectorScores:
    """The gate's share of `coco_eval.detector_metrics` (what metrics/detector.json holds)."""
    return DetectorScores(*(float(metrics[name]) for name in DETECTOR_METRICS))


def stage_scores(run: Any, params: Params) -> DetectorScores | None:
    """The detector stage's own evaluation, where today's gate would score exactly that: the run
    held out the same share of the annotations (one split function) at today's score threshold,
    and logged every gate metric. None otherwise: then the gate scores the detector again."""
    logged, metrics = run.data.params, run.data.metrics
    same_split = logged.get("detector.validation_fraction") == json.dumps(params.detector.validation_fraction)
    same_threshold = logged.get("detector.score_threshold") == json.dumps(params.detector.score_threshold)
    if not (same_split and same_threshold) or any(name not in metrics for name in DETECTOR_METRICS):
        return None
    return detector_scores_from_metrics(metrics)


def scores_from_report(report: Mapping[str, Any]) -> Scores:
    return Scores(
        float(report["accuracy"]),
        float(report["macro_f1"]),
        {name: float(row["recall"]) for name, row in report["per_class"].items()},
    )


def gate(
    candidate: Scores, champion: Scores | None, champion_version: str | None, rules: RegistryParams
) -> GateDecision:
    """Whether a new version may take an alias: every class's recall at or above the floor, and
    the gate metric above the champion's (on the same test split) by more than the margin."""
    metric = rules.gate_metric
    weak = {name: recall for name, recall in candidate.recall.items() if recall < rules.min_class_recall}
    if weak:
        listed = ", ".join(f"{name} {recall:.2f}" for name, recall in sorted(weak.items()))
        return GateDecision(False, None, f"recall below the floor {rules.min_class_recall:.2f}: {listed}")
    old = champion.metric(metric) if champion is not None else None
    floor = f", every class recall ≥ {rules.min_class_recall:.2f}"
    return beats_champion(metric, candidate.metric(metric), old, champion_version, rules, floor)


def detector_gate(
    candidate: DetectorScores, champion: DetectorScores | None, champion_version: str | None, rules: RegistryParams
) -> GateDecision:
    """Whether a new detector version may take an alias: its `registry.detector_gate_metric` above the
    champion's (both scored on the same held-out images) by more than the margin. It has already
    loaded and detected on known images, the detector's counterpart of the classifiers' floor."""
    metric = rules.detector_gate_metric
    old = champion.metric(metric) if champion is not None else None
    return beats_champion(metric, candidate.metric(metric), old, champion_version, rules)


def beats_champion(
    metric: str, new: float, old: float | None, champion_version: str | None, rules: RegistryParams, note: str = ""
) -> GateDecision:
    """The comparison every gate ends with: the first passing model becomes champion; a later one
    must beat the champion's `metric` by more than `registry.min_improvement`."""
    if old is None:
        return GateDecision(True, CHAMPION, f"first model to pass: {metric} {new:.4f}{note}")
    if new - old <= rules.min_improvement:
        return GateDecision(
            False,
            None,
            f"{metric} {new:.4f} does not beat champion v{champion_version}'s {old:.4f} "
            f"by more than {rules.min_improvement:.4f}",
        )
    alias = CHAMPION if rules.auto_promote else CHALLENGER
    return GateDecision(
        True, alias, f"{metric} {new:.4f} beats champion v{champion_version}'s {old:.4f} by {new - old:.4f}"
    )


@dataclass(frozen=True)
class LedgerEntry:
    """One alias move. `from_version` is None when the alias was unset; `to_version` None when
    it was removed."""

    time: str
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    action: str  # register | promote | rollback | retire
    who: str
    why: str


def champion_lineage(entries: Sequence[LedgerEntry]) -> list[str]:
    """The champions in order, oldest first, with each rolled-back champion popped off: the last
    is the current champion and the one before it is what a rollback returns to."""
    lineage: list[str] = []
    for entry in entries:
        if entry.alias != CHAMPION or entry.to_version is None:
            continue
        if entry.action == "rollback":
            while lineage and lineage[-1] != entry.to_version:
                lineage.pop()
            if not lineage:
                lineage.append(entry.to_version)
        elif not lineage or lineage[-1] != entry.to_version:
            lineage.append(entry.to_version)
    return lineage


def check_outputs(probabilities: np.ndarray, images: int, expected: Sequence[str], declared: Sequence[str]) -> None:
    """The load-and-query check on a model's answers to known images: one probability row per
    image, one column per expected class, the class names the component expects."""
    if list(declared) != list(expected):
        raise RegistryError(f"declares classes {list(declared)}, the component expects {list(expected)}")
    if probabilities.shape != (images, len(expected)):
        raise RegistryError(
            f"answered shape {tuple(probabilities.shape)} for {images} images, expected ({images}, {len(expected)})"
        )
    if not np.all(np.isfinite(probabilities)) or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3):
        raise RegistryError("answers are not probability rows (non-finite, or rows that do not sum to 1)")


def check_detections(found: Sequence[Sequence[Any]], images: int, categories: Sequence[str]) -> None:
    """The load-and-query check on a detector's answers to known images: one list of detections per
    image, each of a category the crops expect (a detector trained on other categories would crop
    nothing), with a score in 0–1 and a finite box."""
    if len(found) != images:
        raise RegistryError(f"answered for {len(found)} of {images} images")
    for detection in (d for per_image in found for d in per_image):
        if detection.category not in categories:
            raise RegistryError(f"detects {detection.category!r}; detector.categories are {list(categories)}")
        if not 0.0 <= detection.score <= 1.0 or not np.all(np.isfinite(detection.box)):
            raise RegistryError("answers are not detections (a score outside 0–1 or a non-finite box)")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def who_is_acting() -> str:
    return os.environ.get("SEAMLINE_USER") or getpass.getuser()


# --- the registry, over MLflow ----------------------------------------------------------------


@dataclass
class LoadedClassifier:
    """A registered classifier loaded back: the Keras model and its classifier.json."""

    model: Any
    meta: dict[str, Any]
    version: str

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def probabilities(self, paths: Sequence[str], batch_size: int = 64) -> np.ndarray:
        from pipelines.classifier import crop_probabilities

        return crop_probabilities(
            self.model, paths, int(self.meta["image_size"]), self.meta.get("crop_mode") == "mask_alpha", batch_size
        )


class Registry:
    """Registered models, versions, aliases and their ledger, through MLflow's client."""

    def __init__(self, rules: RegistryParams) -> None:
        import mlflow
        from mlflow import MlflowClient
        from pipelines.tracking import tracking_uri

        # An unreachable tracking server should fail in seconds with one line, not retry for minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars flood the flow's log
        self.rules = rules
        self.uri = tracking_uri(rules)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)

    # reading

    def model_exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise
        return True

    def version(self, name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            raise RegistryError(f"{name}: no version {version} in the registry at {self.uri}") from None

    def versions(self, name: str) -> list[Any]:
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda v: int(v.version))

    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as error:
            if error.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):  # no such alias (or model)
                return None
            raise

    def aliases(self, name: str) -> dict[str, str]:
        return {alias: str(version) for alias, version in self.client.get_registered_model(name).aliases.items()}

    def history(self, name: str) -> list[LedgerEntry]:
        tags = self.client.get_registered_model(name).tags
        keys = sorted(key for key in tags if key.startswith(LEDGER_TAG))
        return [LedgerEntry(**json.loads(tags[key])) for key in keys]

    def load(self, name: str, version: str) -> LoadedClassifier:
        """The version's Keras model and classifier.json, downloaded by registry URI."""
        import mlflow
        from pipelines.classifier import CLASSIFIER_FILE

        uri = f"models:/{name}/{version}"
        try:
            with tempfile.TemporaryDirectory(prefix="seamline-registry-") as work:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=work))
                meta = json.loads((local / CLASSIFIER_FILE).read_text(encoding="utf-8"))
                model = mlflow.keras.load_model(str(local))
        except Exception as error:
            raise RegistryError(f"{uri} does not load: {one_line(error)}") from None
        return LoadedClassifier(model, meta, str(version))

    def load_detector(self, version: str) -> Any:
        """The detector version as a ready `pipelines.detect.Detector`, downloaded by registry URI;
        its `registered_version` says which version it is (its `version` stays the checkpoint's
        content hash, what detections are cached by)."""
        import mlflow
        from pipelines.detect import load_detector

        uri = f"models:/{DETECTOR}/{version}"
        try:
            with tempfile.TemporaryDirectory(prefix="seamline-registry-") as work:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=work))
                detector = load_detector(detector_data(local))
        except Exception as error:
            raise RegistryError(f"{uri} does not load: {one_line(error)}") from None
        detector.registered_version = str(version)
        return detector

    def query_check_detector(self, version: str, categories: Sequence[str], images: Sequence[Path]) -> Any:
        """Load the detector version back by URI and run it on a few known images; raise if it
        cannot be served. Nothing moves the detector's aliases without passing this."""
        from pipelines.detector_training import detect_images

        if not images:
            raise RegistryError(f"{DETECTOR}: no known images to query v{version} with")
        detector = self.load_detector(version)
        try:
            found = detect_images(detector, list(images[:QUERY_IMAGES]))
        except Exception as error:
            raise RegistryError(f"models:/{DETECTOR}/{version} fails on known images: {one_line(error)}") from None
        try:
            check_detections(found, min(len(images), QUERY_IMAGES), categories)
        except RegistryError as error:
            raise RegistryError(f"models:/{DETECTOR}/{version} {error}") from None
        return detector

    def query_check(self, name: str, version: str, classes: Sequence[str], images: Sequence[str]) -> LoadedClassifier:
        """Load the version back by URI and ask it about a few known images; raise if it cannot
        be served. Nothing moves an alias without passing this."""
        if not images:
            raise RegistryError(f"{name}: no known images to query v{version} with (run the crop stage first)")
        loaded = self.load(name, version)
        try:
            probabilities = loaded.probabilities(images[:QUERY_IMAGES])
        except Exception as error:
            raise RegistryError(f"models:/{name}/{version} fails on known images: {one_line(error)}") from None
        try:
            check_outputs(probabilities, min(len(images), QUERY_IMAGES), classes, loaded.classes)
        except RegistryError as error:
            raise RegistryError(f"models:/{name}/{version} {error}") from None
        return loaded

    # writing

    def register(self, name: str, run_id: str, tags: Mapping[str, str], description: str) -> str:
        import mlflow

        if not self.model_exists(name):
            self.client.create_registered_model(name, description=description)
        created = mlflow.register_model(f"runs:/{run_id}/model", name, tags=dict(tags))
        return str(created.version)

    def tag_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def move_alias(self, name: str, alias: str, to_version: str | None, action: str, who: str, why: str) -> LedgerEntry:
        """Point `alias` at `to_version` (None removes it) and record the move in both ledgers. A
        failure part-way puts the alias back where it was."""
        from_version = self.alias_version(name, alias)
        entry = LedgerEntry(now(), name, alias, from_version, to_version, action, who, why[:1000])
        if to_version is None:
            self.client.delete_registered_model_alias(name, alias)
        else:
            self.client.set_registered_model_alias(name, alias, to_version)
        tag = f"{LEDGER_TAG}{len(self.history(name)) + 1:05d}"
        try:
            self.client.set_registered_model_tag(name, tag, json.dumps(asdict(entry)))
            append_ledger(Path(self.rules.ledger), entry)
        except Exception as error:
            self._restore(name, alias, from_version, tag)
            raise RegistryError(
                f"{name}: moving {alias} to v{to_version} failed and was undone: {one_line(error)}"
            ) from None
        return entry

    def _restore(self, name: str, alias: str, version: str | None, tag: str) -> None:
        if version is None:
            self.client.delete_registered_model_alias(name, alias)
        else:
            self.client.set_registered_model_alias(name, alias, version)
        if tag in self.client.get_registered_model(name).tags:
            self.client.delete_registered_model_tag(name, tag)


def detector_data(model_folder: Path) -> Path:
    """The detector folder (checkpoint, detector.json) inside a downloaded `detector` model: the
    pyfunc flavour's data path in its MLmodel (`tracking.log_detector_model` put it there)."""
    from mlflow.models import Model

    return model_folder / Model.load(str(model_folder / "MLmodel")).flavors["python_function"]["data"]


def append_ledger(path: Path, entry: LedgerEntry) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(entry)) + "\n")


# --- what the CLI and the flow call -----------------------------------------------------------


def test_images(params: Params, component: str, crops: Path, labels: Path) -> Any:
    """The component's current test split (crop files and class indices), the gate's common ground;
    missing or empty inputs are a RegistryError, what every registry action raises."""
    from pipelines.classifier import TrainingError, load_examples

    try:
        return load_examples(crops, labels, component, params.components[component].classes, splits=("test",))["test"]
    except TrainingError as error:
        raise RegistryError(str(error)) from None


def score(loaded: LoadedClassifier, paths: Sequence[str], truth: np.ndarray) -> Scores:
    from pipelines.evaluate import classification_report

    probabilities = loaded.probabilities(paths)
    return scores_from_report(classification_report(truth, probabilities.argmax(axis=1), loaded.classes))


@dataclass(frozen=True)
class HeldOut:
    """The annotated images the detector stage held out of training (the same ones every week, by
    image hash): the detector gate's common ground, as the test split is the classifiers'."""

    dataset: dict[str, Any]
    image_ids: list[int]
    paths: list[Path]


def held_out_images(params: Params, annotations: Path) -> HeldOut:
    """The held-out images of the annotations in `annotations` (`detector.validation_fraction`)."""
    from pipelines.detect import DetectorError
    from pipelines.detector_training import read_instances, split_coco

    try:
        dataset = read_instances(annotations)
    except DetectorError as error:
        raise RegistryError(str(error)) from None
    _, held = split_coco(dataset, params.detector.validation_fraction)
    if not held["images"]:
        raise RegistryError(f"{annotations}: no held-out annotated images to score the detector on")
    return HeldOut(dataset, [i["id"] for i in held["images"]], [annotations / i["file_name"] for i in held["images"]])


def score_detector(detector: Any, held: HeldOut, params: Params) -> DetectorScores:
    """COCOeval on the held-out images, as the detector stage evaluates, at today's
    `detector.score_threshold` (the one serving crops with)."""
    from pipelines.coco_eval import detector_metrics
    from pipelines.detector_training import detect_images

    try:
        found = detect_images(detector, held.paths)
        metrics = detector_metrics(held.dataset, held.image_ids, found, params.detector.score_threshold)
    except Exception as error:
        raise RegistryError(f"cannot be scored on the held-out images: {one_line(error)}") from None
    return detector_scores_from_metrics(metrics)


@dataclass(frozen=True)
class Registration:
    """What registering one trained model did: its version, the gate's decision, and the scores
    both models got on the same test data (None where there was nothing to score). `component` is
    the registered model's name: a component, or `detector`."""

    component: str
    version: str
    run_id: str
    decision: GateDecision
    candidate: Scores | DetectorScores | None = None
    champion_version: str | None = None
    champion: Scores | DetectorScores | None = None
    new: bool = True  # False: this run was registered before, nothing changed

    def as_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "version": self.version,
            "run_id": self.run_id,
            "new": self.new,
            "alias": self.decision.alias,
            "passed": self.decision.passed,
            "reason": self.decision.reason,
            "candidate": asdict(self.candidate) if self.candidate else None,
            "champion_version": self.champion_version,
            "champion": asdict(self.champion) if self.champion else None,
        }


def _registered_before(registry: Registry, name: str, run_id: str) -> Registration | None:
    """The registration of a run registered earlier (a weekly run with nothing new is a no-op)."""
    if not registry.model_exists(name):
        return None
    earlier = [v for v in registry.versions(name) if v.tags.get("seamline.run_id") == run_id]
    if not earlier:
        return None
    version = earlier[-1]
    decision = GateDecision(
        version.tags.get("seamline.gate") == "passed",
        None,
        f"run {run_id} already registered as v{version.version}: {version.tags.get('seamline.gate_reason', '')}",
    )
    return Registration(
        name, str(version.version), run_id, decision, champion_version=registry.alias_version(name, CHAMPION), new=False
    )


def _failed_check(registry: Registry, name: str, version: str, run_id: str, error: RegistryError) -> Registration:
    """A version that does not load or answer: registered, tagged as failed, and given no alias."""
    decision = GateDecision(False, None, f"failed the load-and-query check: {error}")
    registry.tag_version(name, version, {"seamline.gate": "failed", "seamline.gate_reason": decision.reason})
    return Registration(name, version, run_id, decision, champion_version=registry.alias_version(name, CHAMPION))


def register_trained(
    params: Params, component: str, model_dir: Path, crops: Path, labels: Path, who: str, progress: Any = print
) -> Registration:
    """Register the classifier `train@component` produced (models/<c>/), gate it against the
    champion on the current test split, and give it the alias it earned. A run registered
    before is not registered again (a weekly run with nothing new is a no-op)."""
    from pipelines.classifier import CLASSIFIER_FILE, SKIPPED_FILE

    params.component(component)  # an unknown one is a ParamsError naming the known ones
    skipped = model_dir / SKIPPED_FILE
    if skipped.is_file():
        reason = json.loads(skipped.read_text(encoding="utf-8")).get("reason", "")
        raise RegistryError(f"{component}: not trained in the last run ({reason}); nothing new to register")
    info_path = model_dir / CLASSIFIER_FILE
    if not info_path.is_file():
        raise RegistryError(f"{info_path}: missing (train {component} first: seamline train {component})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    registry = Registry(params.registry)
    run = registry.client.get_run(info["mlflow_run_id"])
    earlier = _registered_before(registry, component, run.info.run_id)
    if earlier is not None:
        return earlier
    metrics = run.data.metrics
    tags = {key: value for key, value in run.data.tags.items() if key.startswith("seamline.")}
    tags.update(
        {
            "seamline.run_id": run.info.run_id,
            "seamline.registered_by": who,
            "seamline.test_accuracy": f"{metrics.get('test_accuracy', float('nan')):.4f}",
            "seamline.test_macro_f1": f"{metrics.get('test_macro_f1', float('nan')):.4f}",
        }
    )
    classes = params.components[component].classes
    version = registry.register(
        component,
        run.info.run_id,
        tags,
        f"{component} classifier ({', '.join(classes)}); aliases champion and challenger",
    )
    progress(f"register {component}: v{version} from run {run.info.run_id}")
    test = test_images(params, component, crops, labels)
    try:
        candidate = registry.query_check(component, version, classes, test.paths)
    except RegistryError as error:
        return _failed_check(registry, component, version, run.info.run_id, error)
    candidate_scores = score(candidate, test.paths, test.labels)
    champion_version = registry.alias_version(component, CHAMPION)
    champion_scores = None
    if champion_version is not None:
        try:
            champion_scores = score(registry.load(component, champion_version), test.paths, test.labels)
        except RegistryError as error:
            # A champion that no longer loads cannot hold the new model back, but the ledger says so.
            progress(
                f"register {component}: champion v{champion_version} cannot be scored ({error}); gating as if none"
            )
            champion_version = None
    decision = gate(candidate_scores, champion_scores, champion_version, params.registry)
    registry.tag_version(
        component,
        version,
        {
            "seamline.gate": "passed" if decision.passed else "failed",
            "seamline.gate_reason": decision.reason,
            "seamline.gate_metric": params.registry.gate_metric,
            "seamline.gate_test_macro_f1": f"{candidate_scores.macro_f1:.4f}",
            "seamline.gate_test_accuracy": f"{candidate_scores.accuracy:.4f}",
            "seamline.gate_test_recall": json.dumps(candidate_scores.recall),
            "seamline.gate_test_images": str(len(test.paths)),
        },
    )
    if decision.alias is not None:
        registry.move_alias(component, decision.alias, version, "register", who, decision.reason)
    return Registration(
        component, version, run.info.run_id, decision, candidate_scores, champion_version, champion_scores
    )


def register_detector(
    params: Params, model_dir: Path, annotations: Path, who: str, progress: Any = print
) -> Registration:
    """Register the detector the `detector` stage produced (models/detector/) as the `detector`
    model, gate it against the champion by `registry.detector_gate_metric` on the held-out
    annotated images, and give it the alias it earned, exactly as a classifier is. A run
    registered before is not registered again."""
    from pipelines.detect import DETECTOR_FILE

    info_path = model_dir / DETECTOR_FILE
    if not info_path.is_file():
        raise RegistryError(f"{info_path}: missing (train the detector first: dvc repro detector)")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if not info.get("mlflow_run_id"):
        raise RegistryError(f"{info_path}: names no MLflow run (train the detector again: dvc repro detector)")
    registry = Registry(params.registry)
    run = registry.client.get_run(info["mlflow_run_id"])
    earlier = _registered_before(registry, DETECTOR, run.info.run_id)
    if earlier is not None:
        return earlier
    _log_detector_if_missing(registry, run, model_dir, str(info.get("version")))
    metrics = run.data.metrics
    tags = {key: value for key, value in run.data.tags.items() if key.startswith("seamline.")}
    tags.update(
        {
            "seamline.run_id": run.info.run_id,
            "seamline.registered_by": who,
            "seamline.detector_version": str(info.get("version")),
            # What the stage's own evaluation found, beside what the gate scores now.
            **{f"seamline.eval_{name}": f"{metrics.get(name, float('nan')):.4f}" for name in DETECTOR_METRICS},
        }
    )
    categories = params.detector.categories
    held = held_out_images(params, annotations)  # before registering: no version without its gate
    version = registry.register(
        DETECTOR,
        run.info.run_id,
        tags,
        f"garment detector, Mask R-CNN ({', '.join(categories)}); aliases champion and challenger",
    )
    progress(f"register {DETECTOR}: v{version} from run {run.info.run_id}")
    champion_version = registry.alias_version(DETECTOR, CHAMPION)
    # With no champion to score on the same images, the stage's own evaluation of these very
    # held-out images is the candidate's score: scoring it again cost a minute of make demo.
    reused = stage_scores(run, params) if champion_version is None else None
    try:
        candidate = registry.query_check_detector(version, categories, held.paths)
        candidate_scores = reused or score_detector(candidate, held, params)
    except RegistryError as error:
        return _failed_check(registry, DETECTOR, version, run.info.run_id, error)
    del candidate  # one Mask R-CNN in memory at a time
    champion_scores = None
    if champion_version is not None:
        try:
            champion_scores = score_detector(registry.load_detector(champion_version), held, params)
        except RegistryError as error:
            # As for a classifier: a champion that cannot be scored does not hold the new one back.
            progress(f"register {DETECTOR}: champion v{champion_version} cannot be scored ({error}); gating as if none")
            champion_version = None
    decision = detector_gate(candidate_scores, champion_scores, champion_version, params.registry)
    registry.tag_version(
        DETECTOR,
        version,
        {
            "seamline.gate": "passed" if decision.passed else "failed",
            "seamline.gate_reason": decision.reason,
            "seamline.gate_metric": params.registry.detector_gate_metric,
            **{f"seamline.gate_test_{name}": f"{candidate_scores.metric(name):.4f}" for name in DETECTOR_METRICS},
            "seamline.gate_test_images": str(len(held.paths)),
            "seamline.gate_scored_by": "the detector stage's evaluation" if reused else "the gate",
        },
    )
    if decision.alias is not None:
        registry.move_alias(DETECTOR, decision.alias, version, "register", who, decision.reason)
    return Registration(
        DETECTOR, version, run.info.run_id, decision, candidate_scores, champion_version, champion_scores
    )


def _log_detector_if_missing(registry: Registry, run: Any, model_dir: Path, version: str) -> None:
    """A detector trained before the stage logged it as the run's `model` is logged now, from
    `model_dir`, if that folder holds the very checkpoint the run trained (same content hash)."""
    from pipelines.tracking import log_detector_model

    if "model/MLmodel" in {a.path for a in registry.client.list_artifacts(run.info.run_id, "model")}:
        return
    if run.data.tags.get("seamline.detector_version") != version:
        raise RegistryError(
            f"run {run.info.run_id} logged no detector model and {model_dir} holds another checkpoint "
            "(train the detector again: dvc repro detector)"
        )
    log_detector_model(model_dir, run.info.run_id)


def promote(
    params: Params,
    component: str,
    version: str,
    reason: str,
    who: str,
    crops: Path,
    labels: Path,
    alias: str = CHAMPION,
    annotations: Path = Path("data/annotations"),
) -> LedgerEntry:
    """An ML lead's promotion of a component's classifier or of the detector: the version must
    load and answer, then the alias moves; a challenger promoted to champion stops being the
    challenger."""
    registry = Registry(params.registry)
    _require_model(registry, component)
    registry.version(component, version)
    if registry.alias_version(component, alias) == str(version):
        raise RegistryError(f"{component}: v{version} already is {alias}")
    _check_servable(params, registry, component, version, crops, labels, annotations)
    entry = registry.move_alias(component, alias, str(version), "promote", who, reason)
    if alias == CHAMPION and registry.alias_version(component, CHALLENGER) == str(version):
        registry.move_alias(component, CHALLENGER, None, "retire", who, f"promoted to champion: {reason}")
    return entry


def rollback(
    params: Params,
    component: str,
    reason: str,
    who: str,
    crops: Path,
    labels: Path,
    annotations: Path = Path("data/annotations"),
) -> LedgerEntry:
    """Back to the champion before the current one (by the ledger), after the same load check."""
    registry = Registry(params.registry)
    _require_model(registry, component)
    lineage = champion_lineage(registry.history(component))
    current = registry.alias_version(component, CHAMPION)
    if current is None or len(lineage) < 2 or lineage[-1] != current:
        raise RegistryError(f"{component}: no earlier champion to roll back to (champion: {current or 'none'})")
    target = lineage[-2]
    _check_servable(params, registry, component, target, crops, labels, annotations)
    return registry.move_alias(component, CHAMPION, target, "rollback", who, reason or f"rollback from v{current}")


def _check_servable(
    params: Params, registry: Registry, name: str, version: str, crops: Path, labels: Path, annotations: Path
) -> None:
    """The load-and-query check before a hand move: a classifier on its test crops, the detector
    on its held-out annotated images."""
    if name != DETECTOR:
        registry.query_check(name, version, params.components[name].classes, _known_images(params, name, crops, labels))
        return
    try:
        images = held_out_images(params, annotations).paths
    except RegistryError as error:
        raise RegistryError(f"the load-and-query check needs known images: {error}") from None
    registry.query_check_detector(version, params.detector.categories, images)


def _require_model(registry: Registry, component: str) -> None:
    if not registry.model_exists(component):
        raise RegistryError(
            f"{component}: no registered model at {registry.uri} (register one: seamline models register {component})"
        )


def _known_images(params: Params, component: str, crops: Path, labels: Path) -> list[str]:
    try:
        return test_images(params, component, crops, labels).paths
    except RegistryError as error:
        raise RegistryError(f"the load-and-query check needs known images: {error}") from None


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]
