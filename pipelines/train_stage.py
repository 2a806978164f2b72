"""The `train@<component>` stage: one classifier per component, trained the paper's way (a frozen
base, then fine-tuning) from the crop stage's files and the label stage's splits, evaluated on
the test split and tracked in MLflow.

    python -m pipelines.train_stage --component shirt-collar --params params.yaml \
        --crops data/crops --labels data/labels --out models/shirt-collar \
        --metrics metrics/shirt-collar.json --plots plots/shirt-collar

Outputs: `model.keras` and `classifier.json` (classes, thresholds, input size) in --out; the test
report in --metrics; `history.csv`, `confusion.csv` (for `dvc plots`) and PNGs in --plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from pipelines.config import (
    DEFAULT_PARAMS_PATH,
    ComponentParams,
    Params,
    ParamsError,
    TrainingParams,
    load_params,
)
from pipelines.weights import WeightsError

SPLITS = ("train", "val", "test")
CLASSIFIER_FILE = "classifier.json"
MODEL_FILE = "model.keras"


class TrainingError(RuntimeError):
    """Why a component cannot be trained (missing inputs, a split without examples), in one line."""


@dataclass(frozen=True)
class Examples:
    paths: list[str]
    labels: np.ndarray  # class indices

    def __len__(self) -> int:
        return len(self.paths)


def load_examples(
    crops: Path, labels: Path, component: str, classes: Sequence[str], splits: Sequence[str] = SPLITS
) -> dict[str, Examples]:
    """Per split, the crop files of `component` and their class indices (crop index ⋈ labels)."""
    index_path, labels_path = crops / "index.csv", labels / f"{component}.csv"
    for path, stage in ((index_path, "crop"), (labels_path, "label")):
        if not path.is_file():
            raise TrainingError(f"{path}: missing (run the {stage} stage first)")
    with labels_path.open(newline="", encoding="utf-8") as handle:
        label_of = {row["sha256"]: row["label"] for row in csv.DictReader(handle)}
    position = {name: i for i, name in enumerate(classes)}
    found: dict[str, tuple[list[str], list[int]]] = {split: ([], []) for split in splits}
    with index_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = label_of.get(row["sha256"])
            if row["component"] != component or not row["file"] or label not in position or row["split"] not in found:
                continue
            found[row["split"]][0].append(str(crops / row["file"]))
            found[row["split"]][1].append(position[label])
    examples = {
        split: Examples(paths, np.asarray(indices, dtype=np.int64)) for split, (paths, indices) in found.items()
    }
    for split, chunk in examples.items():
        if not len(chunk):
            raise TrainingError(f"{component}: no cropped examples in the {split} split (see {index_path})")
    return examples


def classifier_pixels(image: Any, image_size: int) -> Any:
    """A crop (H, W, 3 or 4; any dtype) as a classifier's float32 0–255 RGB input at
    `image_size`: an RGBA crop (mask_alpha) is composited on black, which is what the
    background means there. Training (`decode_crop`) and serving (`predict.resize_crop`) both
    come through here, so a served crop gets exactly the pixels training saw."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    if image.shape[-1] == 4:
        image = image[..., :3] * (image[..., 3:] / 255.0)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    image.set_shape((image_size, image_size, 3))
    return image


def decode_crop(path: Any, image_size: int, alpha: bool) -> Any:
    """A crop PNG as `classifier_pixels`."""
    import tensorflow as tf

    return classifier_pixels(tf.io.decode_png(tf.io.read_file(path), channels=4 if alpha else 3), image_size)


def make_dataset(
    examples: Examples,
    classes: int,
    training: TrainingParams,
    alpha: bool,
    shuffle: bool,
    augment: Callable[..., Any] | None = None,
) -> Any:
    """tf.data: parallel decode → cache → shuffle → batch → augment → prefetch."""
    import tensorflow as tf

    targets = np.eye(classes, dtype=np.float32)[examples.labels]
    dataset = tf.data.Dataset.from_tensor_slices((examples.paths, targets))
    dataset = dataset.map(
        lambda path, target: (decode_crop(path, training.image_size, alpha), target),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if shuffle:
        dataset = dataset.shuffle(len(examples), seed=training.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(training.batch_size)
    if augment is not None:
        dataset = dataset.map(
            lambda images, target: (augment(images, training=True), target), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def distribution() -> Any:
    """MirroredStrategy with mixed precision across GPUs when there are any; the default
    (one-device) strategy in float32 on a CPU."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.OneDeviceStrategy("/gpu:0")


@dataclass
class TrainResult:
    model: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    frozen_test: dict[str, Any] | None = None
    kept_phase: str = ""  # whose weights the model ends with: the phase with the lower validation loss


class EpochLog:
    """Collects per-epoch metrics of both phases on one epoch axis, and hands each to `on_epoch`."""

    def __init__(self, on_epoch: Callable[[dict[str, Any]], None]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.on_epoch = on_epoch

    def callback(self, phase: str) -> Any:
        import keras

        log = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                row = {"epoch": len(log.rows) + 1, "phase": phase, **{k: float(v) for k, v in (logs or {}).items()}}
                log.rows.append(row)
                log.on_epoch(row)

        return _Callback()


def predict_probabilities(model: Any, dataset: Any) -> np.ndarray:
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float64)


def train_classifier(
    component: ComponentParams,
    examples: Mapping[str, Examples],
    alpha: bool,
    on_epoch: Callable[[dict[str, Any]], None] = lambda row: None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Phase 1 (frozen base; on cached features when `frozen.cached_features`), then phase 2
    (fine-tuning from `unfreeze_from`), each with early stopping on validation loss that keeps the
    best weights."""
    import keras

    from pipelines.train import (
        augmentation_model,
        balanced_class_weights,
        build_classifier,
        compile_classifier,
        set_trainable,
    )

    training = component.training
    classes = len(component.classes)
    keras.utils.set_random_seed(training.seed)
    augment = augmentation_model(training.augmentation, training.seed)
    train_set = make_dataset(examples["train"], classes, training, alpha, shuffle=True, augment=augment)
    val_set = make_dataset(examples["val"], classes, training, alpha, shuffle=False)
    test_set = make_dataset(examples["test"], classes, training, alpha, shuffle=False)
    weights = (
        balanced_class_weights(examples["train"].labels, classes) if training.class_weights == "balanced" else None
    )
    log = EpochLog(on_epoch)

    with distribution().scope():
        model = build_classifier(
            backbone=training.backbone,
            classes=component.classes,
            image_size=training.image_size,
            dropout=training.dropout,
            weights=training.weights,
            batchnorm_momentum=training.batchnorm_momentum,
        )
    result = TrainResult(model)
    if training.frozen.epochs:
        started = time.perf_counter()
        set_trainable(model, "frozen")
        if training.frozen.cached_features:
            _fit_head_on_cached_features(
                model,
                examples,
                train_set,
                val_set,
                training,
                classes,
                weights,
                alpha,
                augment,
                [*phase_callbacks(training), log.callback("frozen"), *callbacks],
            )
        else:
            compile_classifier(model, training.loss, training.frozen.learning_rate)
            model.fit(
                train_set,
                validation_data=val_set,
                epochs=training.frozen.epochs,
                class_weight=weights,
                callbacks=[*phase_callbacks(training), log.callback("frozen"), *callbacks],
                shuffle=False,
                verbose=0,
            )
        result.phase_seconds["frozen"] = time.perf_counter() - started
        if training.fine_tune.epochs:  # the frozen model's test score, to set beside the fine-tuned one's
            result.frozen_test = {"probabilities": predict_probabilities(model, test_set)}
        result.kept_phase = "frozen"
    frozen_weights = None
    if training.frozen.epochs and training.fine_tune.epochs:
        import tempfile

        # Saved by name, not as a list: a list's order follows `trainable`, which fine-tuning changes.
        frozen_weights = Path(tempfile.mkdtemp(prefix="seamline-frozen-")) / "frozen.weights.h5"
        model.save_weights(frozen_weights)
    if training.fine_tune.epochs:
        started = time.perf_counter()
        set_trainable(model, "fine_tune", training.fine_tune.unfreeze_from, training.batchnorm_trains)
        compile_classifier(model, training.loss, training.fine_tune.learning_rate)
        model.fit(
            train_set,
            validation_data=val_set,
            epochs=training.fine_tune.epochs,
            class_weight=weights,
            callbacks=[*phase_callbacks(training), log.callback("fine_tune"), *callbacks],
            shuffle=False,
            verbose=0,
        )
        result.phase_seconds["fine_tune"] = time.perf_counter() - started
        result.kept_phase = "fine_tune"
        if frozen_weights is not None:
            if best_val_loss(log.rows, "frozen") <= best_val_loss(log.rows, "fine_tune"):
                # Fine-tuning never beat the frozen phase on validation: keep the frozen model.
                model.load_weights(frozen_weights)
                result.kept_phase = "frozen"
            frozen_weights.unlink(missing_ok=True)
            frozen_weights.parent.rmdir()
    result.history = log.rows
    return result


def phase_callbacks(training: TrainingParams) -> list[Any]:
    """Weight averaging (when `ema_decay` is set), then early stopping: in that order, so early
    stopping judges and keeps the averaged weights."""
    from pipelines.train import WeightAverage

    averaging = [WeightAverage(training.ema_decay)] if training.ema_decay is not None else []
    return [*averaging, early_stopping(training)]


def early_stopping(training: TrainingParams) -> Any:
    """Stops a phase after `early_stopping_patience` epochs without a lower validation loss,
    counted from epoch `early_stopping_start` on, and restores its best weights. The epochs
    before that start are never kept: a from-scratch model's early val_loss minimum is noise."""
    import keras

    return keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=training.early_stopping_patience,
        start_from_epoch=training.early_stopping_start,
        restore_best_weights=True,
    )


def best_val_loss(rows: Sequence[Mapping[str, Any]], phase: str) -> float:
    """The lowest validation loss a phase reached (inf if it logged none)."""
    return min(
        (float(row["val_loss"]) for row in rows if row.get("phase") == phase and "val_loss" in row),
        default=float("inf"),
    )


def _fit_head_on_cached_features(
    model: Any,
    examples: Mapping[str, Examples],
    train_set: Any,
    val_set: Any,
    training: TrainingParams,
    classes: int,
    weights: Mapping[int, float] | None,
    alpha: bool,
    augment: Any,
    callbacks: list[Any],
) -> None:
    """The frozen base is a fixed function: run it once per image (plus `augmented_views`
    augmented copies of each training image) and train the head on the cached features."""
    from pipelines.train import compile_classifier, feature_extractor, head_for

    extractor = feature_extractor(model)
    plain_train = make_dataset(examples["train"], classes, training, alpha, shuffle=False)
    features = [extractor.predict(plain_train, verbose=0)]
    targets = [np.eye(classes, dtype=np.float32)[examples["train"].labels]]
    for view in range(training.frozen.augmented_views if augment is not None else 0):
        views = make_dataset(examples["train"], classes, training, alpha, shuffle=False, augment=augment)
        features.append(extractor.predict(views, verbose=0))
        targets.append(targets[0])
    val_features = extractor.predict(val_set, verbose=0)
    val_targets = np.eye(classes, dtype=np.float32)[examples["val"].labels]
    head = head_for(model, training.dropout)
    compile_classifier(head, training.loss, training.frozen.learning_rate)
    head.fit(
        np.concatenate(features),
        np.concatenate(targets),
        batch_size=training.batch_size,
        epochs=training.frozen.epochs,
        validation_data=(val_features, val_targets),
        class_weight=weights,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )


# --- the stage --------------------------------------------------------------------------------


def write_plots(
    folder: Path,
    component: str,
    history: Sequence[Mapping[str, Any]],
    report: Mapping[str, Any],
    classes: Sequence[str],
    truth: np.ndarray,
    predicted: np.ndarray,
) -> None:
    from pipelines.evaluate import plot_confusion, plot_curves

    folder.mkdir(parents=True, exist_ok=True)
    keys = ["epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy"]
    with (folder / "history.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    with (folder / "confusion.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        writer.writerows([classes[t], classes[p]] for t, p in zip(truth, predicted))
    plot_confusion(report["confusion_matrix"], classes, f"{component}: test confusion matrix", folder / "confusion.png")
    plot_curves(history, f"{component}: training curves", folder / "curves.png")


def summary_line(component: str, metrics: Mapping[str, Any]) -> str:
    frozen = metrics.get("frozen")
    before = f"frozen acc {frozen['accuracy']:.3f} F1 {frozen['macro_f1']:.3f} → " if frozen else ""
    return f"train {component}: {before}test acc {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"


def run_stage(
    params: Params,
    component_name: str,
    crops: Path,
    labels: Path,
    out: Path,
    metrics_path: Path,
    plots: Path,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    import mlflow
    from pipelines.evaluate import classification_report, evaluate, tune_thresholds
    from pipelines.tracking import flat_params, mlflow_run

    if component_name not in params.components:
        raise TrainingError(f"unknown component {component_name!r} (known: {', '.join(params.components)})")
    component = params.components[component_name]
    training = component.training
    examples = load_examples(crops, labels, component_name, component.classes)
    crop = params.crop_for(component_name)
    alpha = crop.mode == "mask_alpha"
    progress(
        f"train {component_name}: {len(examples['train'])} train / {len(examples['val'])} val / {len(examples['test'])} test crops; "
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
                f"acc {row.get('accuracy', 0):.3f}  val loss {row.get('val_loss', 0):.3f} acc {row.get('val_accuracy', 0):.3f}"
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
        write_plots(
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


def log_classifier_model(model: Any, classifier: Mapping[str, Any]) -> None:
    """The model as the active run's `model` artifact in MLflow's keras flavour, with a signature,
    an input example and `classifier.json` (classes, thresholds, input size, crop mode) beside it,
    so `mlflow models predict/serve -m runs:/<run>/model` load it and the registry and
    `seamline predict` know what its outputs mean.

    Saved locally first: mlflow 3.17's `mlflow.keras.log_model` writes the input example before
    it creates the model folder and fails with FileNotFoundError.
    """
    import tempfile

    from mlflow.models import infer_signature

    import mlflow

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


# What the keras flavour needs to load and run a classifier. Left to itself, mlflow infers this
# by loading the model in a child process: 18 of a tiny training's 70 s on 2 cores.
MODEL_PACKAGES = ("keras", "tensorflow", "numpy")


def model_requirements() -> list[str] | None:
    """MODEL_PACKAGES pinned to the versions installed here (mlflow adds itself); None, so mlflow
    infers them, where one is installed under another name (tensorflow-cpu, tf-nightly)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return [f"{name}=={version(name)}" for name in MODEL_PACKAGES]
    except PackageNotFoundError:
        return None


def crop_probabilities(
    model: Any, paths: Sequence[str], image_size: int, alpha: bool, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities for crop files, decoded exactly as training decoded them."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(list(paths)).map(lambda path: decode_crop(path, image_size, alpha))
    return predict_probabilities(model, dataset.batch(batch_size))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train_stage", description=__doc__.splitlines()[0])
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
        metrics = run_stage(
            params,
            name,
            args.crops,
            args.labels,
            args.out or Path("models") / name,
            args.metrics or Path("metrics") / f"{name}.json",
            args.plots or Path("plots") / name,
            progress=lambda line: print(line, flush=True),
        )
    except (ParamsError, TrainingError, WeightsError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    print(summary_line(name, metrics), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
