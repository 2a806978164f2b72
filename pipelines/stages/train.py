"""The `train@<component>` stage: one component's classifier trained the paper's way (frozen base,
then fine-tuning; `pipelines.classifier`), scored on the test split, written for DVC and tracked
in MLflow.

    python -m pipelines.stages.train --component shirt-collar --params params.yaml \
        --crops data/crops --labels data/labels --out models/shirt-collar \
        --metrics metrics/shirt-collar.json --plots plots/shirt-collar

Outputs: `model.keras` and `classifier.json` (classes, thresholds, input size) in --out; the test
report in --metrics; `history.csv`, `confusion.csv` (for `dvc plots`) and PNGs in --plots.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.classifier import (
    CLASSIFIER_FILE,
    MODEL_FILE,
    SKIPPED_FILE,
    TooFewExamples,
    TrainingError,
    load_examples,
    make_dataset,
    predict_probabilities,
    train_classifier,
)
from pipelines.config import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params
from pipelines.evaluate import (
    classification_report,
    evaluate,
    tune_thresholds,
    write_evaluation_files,
    write_skipped_files,
)
from pipelines.gpu import NoGpu, gpu_required, require_gpu
from pipelines.labels import GateError, read_gate
from pipelines.tracking import flat_params, log_classifier_model, mlflow_run
from pipelines.weights import WeightsError


def summary_line(component: str, metrics: Mapping[str, Any]) -> str:
    if metrics.get("skipped"):
        kept = "its last trained model stays" if "accuracy" in metrics else "no model yet"
        return f"train {component}: skipped ({kept})"
    frozen = metrics.get("frozen")
    before = f"frozen acc {frozen['accuracy']:.3f} F1 {frozen['macro_f1']:.3f} → " if frozen else ""
    return f"train {component}: {before}test acc {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"


def train_and_evaluate(
    params: Params,
    component_name: str,
    crops: Path,
    labels: Path,
    out: Path,
    metrics_path: Path,
    plots: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one component (`classifier.train_classifier`), tune its thresholds on validation, score
    it on the test split, and write the model, metrics and plots where dvc.yaml expects them, all
    inside one MLflow run; returns the metrics."""
    import mlflow

    component = params.component(component_name)
    training = component.training
    if gpu_required(training.require_gpu):
        require_gpu()  # before anything is read or written: a GPU worker without one stops here
    gate = read_gate(labels, component_name)
    if gate is not None and gate.skipped:
        return skip(params, component_name, gate.skipped, out, metrics_path, plots, progress)
    try:
        examples = load_examples(crops, labels, component_name, component.classes)
    except TooFewExamples as error:
        return skip(params, component_name, str(error), out, metrics_path, plots, progress)
    (out / SKIPPED_FILE).unlink(missing_ok=True)  # trained this run: the mark of an earlier skip goes
    crop = params.crop_for(component_name)
    alpha = crop.mode == "mask_alpha"
    progress(
        f"train {component_name}: {len(examples['train'])} train / {len(examples['val'])} val / "
        f"{len(examples['test'])} test crops; "
        f"{training.backbone} ({training.weights or 'from scratch'}) at {training.image_size} px; "
        f"frozen {training.frozen.epochs} + fine-tune {training.fine_tune.epochs} epochs "
        f"(BatchNorm {'trains' if training.batchnorm_trains else 'frozen'})"
    )
    tags = {
        "seamline.component": component_name,
        "seamline.profile": params.profile,
        "seamline.base_weights": str(training.weights),
        "seamline.crop_mode": crop.mode,
        "seamline.crop_margin": str(crop.margin),
    }
    with mlflow_run(params.registry, "classifiers", component_name, tags) as run:
        mlflow.log_params(flat_params(training.model_dump(mode="json"), "training."))
        mlflow.log_params({"classes": json.dumps(list(component.classes)), "train_examples": len(examples["train"])})

        def on_epoch(row: dict[str, Any]) -> None:
            mlflow.log_metrics({k: v for k, v in row.items() if isinstance(v, float)}, step=row["epoch"])
            progress(
                f"train {component_name}: epoch {row['epoch']} ({row['phase']}) loss {row.get('loss', 0):.3f} "
                f"acc {row.get('accuracy', 0):.3f}  val loss {row.get('val_loss', 0):.3f} acc "
                f"{row.get('val_accuracy', 0):.3f}"
            )

        result = train_classifier(component, examples, alpha, on_epoch)
        classes = len(component.classes)
        val_probabilities = predict_probabilities(
            result.model, make_dataset(examples["val"], classes, training, alpha, shuffle=False)
        )
        test_probabilities = predict_probabilities(
            result.model, make_dataset(examples["test"], classes, training, alpha, shuffle=False)
        )
        thresholds = tune_thresholds(examples["val"].labels, val_probabilities)
        truth = examples["test"].labels
        report = evaluate(truth, test_probabilities, component.classes, thresholds)
        metrics: dict[str, Any] = {
            "component": component_name,
            "profile": params.profile,
            "test_examples": len(truth),
            "accuracy": report["accuracy"],
            "macro_f1": report["macro_f1"],
            "phase_seconds": {k: round(v, 1) for k, v in result.phase_seconds.items()},
            "epochs": len(result.history),
            "kept_phase": result.kept_phase,
        }
        if result.frozen_test is not None:
            frozen = classification_report(truth, result.frozen_test["probabilities"].argmax(axis=1), component.classes)
            metrics["frozen"] = {"accuracy": frozen["accuracy"], "macro_f1": frozen["macro_f1"]}
        metrics["with_unknown"] = {
            k: report["with_unknown"][k] for k in ("accuracy", "macro_f1", "coverage", "accuracy_answered")
        }
        metrics["per_class"] = report["per_class"]

        out.mkdir(parents=True, exist_ok=True)
        result.model.save(out / MODEL_FILE)
        classifier = {
            "component": component_name,
            "classes": list(component.classes),
            "thresholds": report["thresholds"],
            "image_size": training.image_size,
            "item": component.item,
            "crop_region": component.crop_region,
            "crop_mode": crop.mode,
            "crop_margin": crop.margin,
            "base_weights": training.weights,
            "mlflow_run_id": run.info.run_id,
        }
        (out / CLASSIFIER_FILE).write_text(json.dumps(classifier, indent=2) + "\n", encoding="utf-8")
        write_evaluation_files(
            plots, component_name, result.history, report, component.classes, truth, test_probabilities.argmax(axis=1)
        )
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

        mlflow.log_metrics(
            {
                "test_accuracy": report["accuracy"],
                "test_macro_f1": report["macro_f1"],
                "test_coverage_with_unknown": report["with_unknown"]["coverage"],
            }
        )
        mlflow.set_tag("seamline.kept_phase", result.kept_phase)
        if "frozen" in metrics:
            mlflow.log_metrics(
                {
                    "frozen_test_accuracy": metrics["frozen"]["accuracy"],
                    "frozen_test_macro_f1": metrics["frozen"]["macro_f1"],
                }
            )
        mlflow.log_artifacts(str(plots), "plots")
        mlflow.log_artifact(str(out / "evaluation.json"))
        mlflow.log_artifact(str(out / CLASSIFIER_FILE))
        log_classifier_model(result.model, classifier)
        metrics["mlflow_run_id"] = run.info.run_id
    return metrics


def skip(
    params: Params,
    component: str,
    reason: str,
    out: Path,
    metrics_path: Path,
    plots: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Not this run: the component's last trained model stays in `out` (DVC persists it), marked
    with why, and its metrics keep that model's scores beside the reason. The registry's champion
    is untouched; every other component goes on."""
    out.mkdir(parents=True, exist_ok=True)
    mark = {"component": component, "profile": params.profile, "reason": reason}
    (out / SKIPPED_FILE).write_text(json.dumps(mark, indent=2) + "\n", encoding="utf-8")
    previous = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    metrics = {**previous, "component": component, "profile": params.profile, "skipped": reason}
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_skipped_files(plots, component, reason)
    progress(f"train {component}: skipped this run: {reason}")
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--component", required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--out", type=Path, default=None, help="default models/<component>")
    parser.add_argument("--metrics", type=Path, default=None, help="default metrics/<component>.json")
    parser.add_argument("--plots", type=Path, default=None, help="default plots/<component>")
    args = parser.parse_args(argv)
    name = args.component
    try:
        params = load_params(args.params, args.profile)
        metrics = train_and_evaluate(
            params,
            name,
            args.crops,
            args.labels,
            args.out or Path("models") / name,
            args.metrics or Path("metrics") / f"{name}.json",
            args.plots or Path("plots") / name,
            progress=lambda line: print(line, flush=True),
        )
    except (ParamsError, TrainingError, WeightsError, GateError, NoGpu) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    print(summary_line(name, metrics), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
