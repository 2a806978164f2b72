"""The model registry: register each trained component classifier in MLflow, gate it against the
champion on the same test split, and move the `champion`/`challenger` aliases with an audit ledger.
`seamline models …` and the weekly flow's `register` step (`pipelines.stages.register`) call it.

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


class RegistryError(RuntimeError):
    """A registry operation that cannot go ahead (no such model or version, a model that cannot be
    served, an unreachable tracking server), in one line."""


class NoChampion(RegistryError):
    """No component has a version under the alias asked for: nothing to serve yet."""


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
    new = candidate.metric(metric)
    if champion is None:
        return GateDecision(
            True,
            CHAMPION,
            f"first model to pass: {metric} {new:.4f}, every class recall ≥ {rules.min_class_recall:.2f}",
        )
    old = champion.metric(metric)
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
class Registration:
    """What registering one trained model did: its version, the gate's decision, and the scores
    both models got on the same test split (None where there was nothing to score)."""

    component: str
    version: str
    run_id: str
    decision: GateDecision
    candidate: Scores | None = None
    champion_version: str | None = None
    champion: Scores | None = None
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
    if registry.model_exists(component):
        earlier = [v for v in registry.versions(component) if v.tags.get("seamline.run_id") == run.info.run_id]
        if earlier:
            version = earlier[-1]
            decision = GateDecision(
                version.tags.get("seamline.gate") == "passed",
                None,
                f"run {run.info.run_id} already registered as v{version.version}: "
                f"{version.tags.get('seamline.gate_reason', '')}",
            )
            return Registration(
                component,
                str(version.version),
                run.info.run_id,
                decision,
                champion_version=registry.alias_version(component, CHAMPION),
                new=False,
            )
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
        decision = GateDecision(False, None, f"failed the load-and-query check: {error}")
        registry.tag_version(component, version, {"seamline.gate": "failed", "seamline.gate_reason": decision.reason})
        return Registration(
            component, version, run.info.run_id, decision, champion_version=registry.alias_version(component, CHAMPION)
        )
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


def promote(
    params: Params,
    component: str,
    version: str,
    reason: str,
    who: str,
    crops: Path,
    labels: Path,
    alias: str = CHAMPION,
) -> LedgerEntry:
    """An ML lead's promotion: the version must load and answer, then the alias moves; a
    challenger promoted to champion stops being the challenger."""
    registry = Registry(params.registry)
    _require_model(registry, component)
    registry.version(component, version)
    if registry.alias_version(component, alias) == str(version):
        raise RegistryError(f"{component}: v{version} already is {alias}")
    registry.query_check(
        component, version, params.components[component].classes, _known_images(params, component, crops, labels)
    )
    entry = registry.move_alias(component, alias, str(version), "promote", who, reason)
    if alias == CHAMPION and registry.alias_version(component, CHALLENGER) == str(version):
        registry.move_alias(component, CHALLENGER, None, "retire", who, f"promoted to champion: {reason}")
    return entry


def rollback(params: Params, component: str, reason: str, who: str, crops: Path, labels: Path) -> LedgerEntry:
    """Back to the champion before the current one (by the ledger), after the same load check."""
    registry = Registry(params.registry)
    _require_model(registry, component)
    lineage = champion_lineage(registry.history(component))
    current = registry.alias_version(component, CHAMPION)
    if current is None or len(lineage) < 2 or lineage[-1] != current:
        raise RegistryError(f"{component}: no earlier champion to roll back to (champion: {current or 'none'})")
    target = lineage[-2]
    registry.query_check(
        component, target, params.components[component].classes, _known_images(params, component, crops, labels)
    )
    return registry.move_alias(component, CHAMPION, target, "rollback", who, reason or f"rollback from v{current}")


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
