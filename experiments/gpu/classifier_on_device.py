"""Seamline's own classifier training (`pipelines.classifier.train_classifier`, not a twin) on
whatever machine and Keras backend it runs on, with the throughput figures issue 32 asks for.

Per component, in one run:
1. the bare model step: `train_on_batch` on one batch already in memory, the recipe's fine-tune
   model (whole base trainable), at the recipe's batch and at --wide-batch: images/s;
2. the same model fed by the input path training uses (`make_dataset`: tf.data on TensorFlow,
   `CropBatches` elsewhere) for an epoch over the component's training crops: images/s, and its
   ratio to (1) at the same batch, which says whether the input keeps the model busy;
3. unless --no-train, the component's full two-phase training from params (the demo profile's
   base, frozen head, fine-tune), then accuracy / macro-F1 on its test split.
Each component's figures go to --out/<component>.json as soon as they exist, so a run cut short
still leaves what it measured.

Usage (from the repository root; the crops and labels of a `make demo` run):
  KERAS_BACKEND=torch python experiments/gpu/classifier_on_device.py --crops data/crops \\
      --labels data/labels --components jeans-fit --out out
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras
import numpy as np

from pipelines.classifier import (
    Examples,
    compile_classifier,
    component_classifier,
    load_examples,
    make_dataset,
    placement,
    set_trainable,
    train_classifier,
)
from pipelines.config import ComponentParams, load_params


def bare_step_rate(model: Any, image_size: int, classes: int, batch: int, steps: int) -> float:
    """Images/s of `train_on_batch` on one in-memory batch, after warm-up steps (compilation)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch, image_size, image_size, 3)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, size=batch)]
    for _ in range(3):
        model.train_on_batch(x, y)
    sync(model)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    sync(model)
    return batch * steps / (time.perf_counter() - started)


def sync(model: Any) -> None:
    """Wait for the device: reading a weight back forces queued work to finish."""
    keras.ops.convert_to_numpy(model.trainable_weights[0].value)


class EpochClock(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        sync(self.model)
        self.seconds.append(time.perf_counter() - self._started)


def fed_rate(model: Any, dataset: Any, images: int) -> float:
    """Images/s of `fit` over the training crops, the second of two epochs (the first compiles)."""
    clock = EpochClock()
    model.fit(dataset, epochs=2, verbose=0, callbacks=[clock], shuffle=False)
    return images / clock.seconds[-1]


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = float(np.sum((predicted == c) & (truth == c)))
        denominator = float(np.sum(predicted == c) + np.sum(truth == c))
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def measure(component_name: str, component: ComponentParams, args: argparse.Namespace, report: dict) -> None:
    training = component.training
    classes = len(component.classes)
    examples = load_examples(args.crops, args.labels, component_name, component.classes)
    report["examples"] = {split: len(chunk) for split, chunk in examples.items()}
    for batch in sorted({training.batch_size, args.wide_batch}):
        model = component_classifier(component)
        set_trainable(model, "fine_tune", training.fine_tune.unfreeze_from, training.batchnorm_trains)
        compile_classifier(model, training.loss, training.fine_tune.learning_rate)
        bare = bare_step_rate(model, training.image_size, classes, batch, args.steps)
        at_batch = training.model_copy(update={"batch_size": batch})
        # The training crops repeated, so that even the wide batch makes enough steps to time.
        repeated = Examples(examples["train"].paths * args.repeat, np.tile(examples["train"].labels, args.repeat))
        fed = fed_rate(model, make_dataset(repeated, classes, at_batch, False, shuffle=True), len(repeated))
        report.setdefault("throughput", []).append(
            {
                "batch": batch,
                "bare_images_per_s": round(bare, 1),
                "fed_images_per_s": round(fed, 1),
                "ratio": round(fed / bare, 3),
            }
        )
        write(args.out, component_name, report)
    if args.no_train:
        return
    started = time.perf_counter()
    result = train_classifier(
        component, examples, alpha=False, on_epoch=lambda row: print(component_name, json.dumps(row), flush=True)
    )
    report["train_seconds"] = round(time.perf_counter() - started, 1)
    report["phase_seconds"] = {k: round(v, 1) for k, v in result.phase_seconds.items()}
    report["kept_phase"] = result.kept_phase
    test = make_dataset(examples["test"], classes, training, False, shuffle=False)
    predicted = np.asarray(result.model.predict(test, verbose=0)).argmax(axis=1)
    truth = examples["test"].labels
    report["test_accuracy"] = round(float(np.mean(predicted == truth)), 4)
    report["test_macro_f1"] = round(macro_f1(truth, predicted, classes), 4)
    report["epochs"] = result.history
    write(args.out, component_name, report)


def write(out: Path, component: str, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{component}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(component, json.dumps({k: v for k, v in report.items() if k != "epochs"}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--components", nargs="+", default=["jeans-fit"])
    parser.add_argument("--wide-batch", type=int, default=256, help="a second batch for the throughput figures")
    parser.add_argument("--steps", type=int, default=20, help="timed bare steps per batch size")
    parser.add_argument("--repeat", type=int, default=8, help="passes over the training crops in a timed fed epoch")
    parser.add_argument("--no-train", action="store_true", help="throughput only")
    parser.add_argument("--out", type=Path, default=Path("device-out"))
    args = parser.parse_args()
    params = load_params(args.params, args.profile)
    where = placement(require_gpu=False)  # SEAMLINE_REQUIRE_GPU=1 makes a run without a GPU stop here
    machine = {"backend": keras.backend.backend(), "replicas": where.replicas, "precision": where.precision}
    print(json.dumps(machine), flush=True)
    for name in args.components:
        measure(name, params.component(name), args, {"component": name, **machine})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
