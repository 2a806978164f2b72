"""Time to the same validation accuracy: Seamline's `train_classifier` against the plain
Keras-guide recipe, side by side in one process on the same crops, model and schedule.

(a) Keras guide: the crops as class folders read by `keras.utils.image_dataset_from_directory`,
    augmentation layers inside the model, `fit` with the base frozen (every epoch runs the whole
    base), then unfrozen at the fine-tune learning rate — the transfer-learning guide's recipe;
(b) Seamline: `pipelines.classifier.train_classifier` (tf.data with a decode cache, the frozen
    phase on cached base features plus augmented views, early stopping, then fine-tuning).

Both start from the same base weights (the component's `training.weights`) with the same
epochs, learning rates and batch size. Reported: each one's validation accuracy after every
epoch against wall-clock seconds, and the seconds each needs to first reach the target — the
lower of the two best validation accuracies, so both reach it.

Needs crops and labels (and the pretrained base if params use it): run `make demo` first.

Usage: python bench/train_to_accuracy.py [--component jeans-color] [--profile demo]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from pipelines.classifier import (
    Examples,
    TrainingError,
    augmentation_model,
    build_classifier,
    compile_classifier,
    load_examples,
    set_trainable,
    train_classifier,
)
from pipelines.config import load_params


class Clock(keras.callbacks.Callback):
    """(seconds since `started`, val_accuracy) after every epoch, across fits."""

    def __init__(self, started: float) -> None:
        super().__init__()
        self.started = started
        self.points: list[tuple[float, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.points.append((time.perf_counter() - self.started, float((logs or {}).get("val_accuracy", 0.0))))


def class_folders(root: Path, examples: Examples, classes: list[str]) -> Path:
    """The split as <root>/<class>/<file> symlinks: the layout image_dataset_from_directory reads."""
    for path, label in zip(examples.paths, examples.labels):
        folder = root / classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / Path(path).name).symlink_to(Path(path).resolve())
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    return root


def keras_guide(component, examples: dict[str, Examples], scratch: Path, started: float) -> Clock:
    training = component.training
    classes = list(component.classes)
    read = {
        "image_size": (training.image_size, training.image_size),
        "batch_size": training.batch_size,
        "label_mode": "categorical",
        "class_names": classes,
        "seed": training.seed,
    }
    train = keras.utils.image_dataset_from_directory(
        class_folders(scratch / "train", examples["train"], classes), shuffle=True, **read
    )
    val = keras.utils.image_dataset_from_directory(
        class_folders(scratch / "val", examples["val"], classes), shuffle=False, **read
    )
    classifier = build_classifier(
        backbone=training.backbone,
        classes=classes,
        image_size=training.image_size,
        dropout=training.dropout,
        weights=training.weights,
        batchnorm_momentum=training.batchnorm_momentum,
    )
    inputs = keras.Input((training.image_size, training.image_size, 3))
    model = keras.Model(inputs, classifier(augmentation_model(training.augmentation, training.seed)(inputs)))
    clock = Clock(started)
    set_trainable(classifier, "frozen")
    compile_classifier(model, training.loss, training.frozen.learning_rate)
    model.fit(train, validation_data=val, epochs=training.frozen.epochs, callbacks=[clock], verbose=0)
    if training.fine_tune.epochs:
        set_trainable(classifier, "fine_tune", training.fine_tune.unfreeze_from, training.batchnorm_trains)
        compile_classifier(model, training.loss, training.fine_tune.learning_rate)
        model.fit(train, validation_data=val, epochs=training.fine_tune.epochs, callbacks=[clock], verbose=0)
    return clock


def first_reaching(points: list[tuple[float, float]], target: float) -> float | None:
    return next((seconds for seconds, accuracy in points if accuracy >= target - 1e-9), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--component", default="jeans-color")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    args = parser.parse_args()
    params = load_params(args.params, args.profile)
    component = params.components[args.component]
    training = component.training
    try:
        examples = load_examples(args.crops, args.labels, args.component, component.classes)
    except TrainingError as error:
        print(f"train_to_accuracy: {error} (run `make demo` first)", file=sys.stderr)
        return 2
    print(
        f"{args.component}: {len(examples['train'])} train / {len(examples['val'])} val crops; {training.backbone} "
        f"({training.weights or 'from scratch'}) at {training.image_size} px; frozen {training.frozen.epochs} + "
        f"fine-tune {training.fine_tune.epochs} epochs"
    )

    keras.utils.set_random_seed(training.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seamline-bench-") as scratch:
        guide = keras_guide(component, examples, Path(scratch), started)
    guide_total = time.perf_counter() - started

    keras.utils.set_random_seed(training.seed)
    started = time.perf_counter()
    ours = Clock(started)
    train_classifier(component, examples, alpha=False, callbacks=[ours])
    ours_total = time.perf_counter() - started

    target = min(max(a for _, a in guide.points), max(a for _, a in ours.points))
    guide_at, ours_at = first_reaching(guide.points, target), first_reaching(ours.points, target)
    print(f"\n{'':34}{'epochs':>7}{'best val acc':>13}{'total s':>9}{'s to target':>12}")
    for name, clock, total, at in (
        ("(a) Keras guide (dataset + fit)", guide, guide_total, guide_at),
        ("(b) Seamline train_classifier", ours, ours_total, ours_at),
    ):
        best = max(a for _, a in clock.points)
        print(f"{name:34}{len(clock.points):>7}{best:>13.3f}{total:>9.1f}{at:>12.1f}")
    print(
        f"target val accuracy {target:.3f} (the lower best): Seamline reaches it {guide_at / ours_at:.1f}× sooner "
        f"({ours_at:.1f} s vs {guide_at:.1f} s); whole schedule {guide_total / ours_total:.1f}× faster"
    )
    for name, clock in (("guide", guide), ("seamline", ours)):
        print(f"{name} curve (s, val acc): " + " ".join(f"{s:.0f}:{a:.2f}" for s, a in clock.points))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
