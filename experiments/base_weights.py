"""Which base should the demo train from, with no ImageNet to download? Per component, at an
equal wall-clock training budget on this CPU, on the pipeline's own crops and splits:

(a) DenseNet121 from scratch (fine-tuning everything, BatchNorm training);
(b) the self-supervised (SimCLR) base, frozen, with a head trained on cached features;
(c) the self-supervised base, head first, then fine-tuned;
and the small CNN of experiments/demo_shop_baseline.py on the same crops. Test accuracy and macro-F1
are printed with the pretraining cost (paid once for all components).

Needs crops and labels: run `make demo` (or `dvc repro crop`) first.

Usage: python experiments/base_weights.py [--budget-s 120] [--components shirt-pattern,jeans-color]
       [--arms scratch,ssl_fine_tune] [--base models/pretrain/base.weights.h5] [--json PATH] [--verbose]

The budget covers each arm's whole training call (building the model, caching features, both
phases) and stops at the first batch past it, so a slow model gets the same seconds as a fast one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tensorflow").setLevel(logging.ERROR)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from pipelines.classifier import TrainingError, load_examples, make_dataset, predict_probabilities, train_classifier  # noqa: E402
from pipelines.config import ComponentParams, load_params  # noqa: E402
from pipelines.evaluate import classification_report  # noqa: E402
from pipelines.pretraining import pretrain_base, unlabelled_crops  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_shop_baseline import budget_callback, build_model  # noqa: E402

UNLIMITED = 1000  # epochs; the budget or early stopping ends training
ARMS = ("scratch", "ssl_frozen", "ssl_fine_tune", "small_cnn")


def arm(
    component: ComponentParams, weights: str | None, frozen_epochs: int, fine_tune_epochs: int, fine_tune_lr: float
) -> ComponentParams:
    training = component.training.model_copy(
        update={
            "weights": weights,
            "frozen": component.training.frozen.model_copy(update={"epochs": frozen_epochs, "learning_rate": 1e-3}),
            "fine_tune": component.training.fine_tune.model_copy(
                update={"epochs": fine_tune_epochs, "learning_rate": fine_tune_lr}
            ),
        }
    )
    return component.model_copy(update={"training": training})


def score(component: ComponentParams, model: keras.Model, examples: dict, alpha: bool) -> dict[str, float]:
    test = make_dataset(examples["test"], len(component.classes), component.training, alpha, shuffle=False)
    predicted = predict_probabilities(model, test).argmax(axis=1)
    report = classification_report(examples["test"].labels, predicted, component.classes)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def epoch_line(label: str, row: dict, seconds: float) -> str:
    """One epoch of one arm: whether it learns at all shows in the training accuracy."""
    return (
        f"    {label:<14} {row['phase']:<9} epoch {row['epoch']:>3}  accuracy {row.get('accuracy', float('nan')):.3f}  "
        f"val_accuracy {row.get('val_accuracy', float('nan')):.3f}  val_loss {row.get('val_loss', float('nan')):.3f}  "
        f"({seconds:.0f} s)"
    )


def run_arm(
    label: str, component: ComponentParams, examples: dict, alpha: bool, budget_s: float, verbose: bool
) -> dict[str, float]:
    keras.backend.clear_session()
    started = time.perf_counter()

    def on_epoch(row: dict) -> None:
        if verbose:
            print(epoch_line(label, row, time.perf_counter() - started), flush=True)

    # One clock for the whole call: building the model, caching features and both phases.
    result = train_classifier(component, examples, alpha, on_epoch, callbacks=[budget_callback(budget_s, started)])
    seconds = time.perf_counter() - started
    return {
        **score(component, result.model, examples, alpha),
        "seconds": round(seconds, 1),
        "epochs": len(result.history),
    }


def small_cnn(component: ComponentParams, examples: dict, alpha: bool, budget_s: float) -> dict[str, float]:
    keras.backend.clear_session()
    keras.utils.set_random_seed(component.training.seed)
    size, classes = component.training.image_size, len(component.classes)

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        data = make_dataset(examples[split], classes, component.training, alpha, shuffle=False)
        return np.concatenate([images.numpy() for images, _ in data]), examples[split].labels

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = arrays("train"), arrays("val"), arrays("test")
    model = build_model(size, classes)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)
    started = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        batch_size=32,
        epochs=UNLIMITED,
        callbacks=[stop, budget_callback(budget_s)],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    predicted = model.predict(x_test, verbose=0).argmax(axis=1)
    report = classification_report(y_test, predicted, component.classes)
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "seconds": round(seconds, 1),
        "epochs": len(history.history["loss"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=120.0, help="wall-clock training budget per model")
    parser.add_argument("--components", default=None, help="comma-separated (default: all)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)} (default: all)")
    parser.add_argument("--base", default=None, help="an existing SimCLR base weights file (default: pretrain one now)")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print every epoch of every DenseNet121 arm (training and validation accuracy)",
    )
    args = parser.parse_args()
    params = load_params(args.params, args.profile)
    names = args.components.split(",") if args.components else list(params.components)
    chosen = args.arms.split(",")
    unknown = sorted(set(names) - set(params.components)) + sorted(set(chosen) - set(ARMS))
    if unknown:
        print(
            f"base bench: unknown component or arm {', '.join(unknown)} (components: {', '.join(params.components)}; "
            f"arms: {', '.join(ARMS)})",
            file=sys.stderr,
        )
        return 2
    alpha = params.crop.mode == "mask_alpha"
    try:
        examples = {
            name: load_examples(args.crops, args.labels, name, params.components[name].classes) for name in names
        }
    except TrainingError as error:
        print(f"base bench: {error} (run `make demo` first)", file=sys.stderr)
        return 2

    work = tempfile.TemporaryDirectory(prefix="seamline-base-bench-")
    pretrain_seconds = 0.0
    base = args.base
    # Only the self-supervised arms use a base: the others should not wait minutes for one.
    if base is None and {"ssl_frozen", "ssl_fine_tune"} & set(chosen):
        files = unlabelled_crops(args.crops, params, params.pretrain.max_images)
        print(
            f"base bench: pretraining on {len(files)} unlabelled crops, {params.pretrain.epochs} epochs ...", flush=True
        )
        started = time.perf_counter()
        encoder = pretrain_base(
            params.pretrain,
            files,
            lambda epoch, loss, elapsed: print(
                f"  epoch {epoch}: contrastive loss {loss:.3f} ({elapsed:.0f} s)", flush=True
            ),
        )
        pretrain_seconds = time.perf_counter() - started
        base = str(Path(work.name) / "base.weights.h5")
        encoder.get_layer("base").save_weights(base)

    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        component = params.components[name]
        arms = {
            "scratch": arm(component, None, 0, UNLIMITED, 1e-3),
            "ssl_frozen": arm(component, base, UNLIMITED, 0, 1e-4),
            "ssl_fine_tune": arm(component, base, 30, UNLIMITED, 1e-4),
        }
        results[name] = {
            label: run_arm(label, c, examples[name], alpha, args.budget_s, args.verbose)
            for label, c in arms.items()
            if label in chosen
        }
        if "small_cnn" in chosen:
            results[name]["small_cnn"] = small_cnn(component, examples[name], alpha, args.budget_s)
        row = "  ".join(f"{label} {r['accuracy']:.3f}/{r['macro_f1']:.3f}" for label, r in results[name].items())
        print(f"{name:<14} {row}", flush=True)

    print(
        f"\nbudget {args.budget_s:.0f} s of training per model; pretraining {pretrain_seconds / 60:.1f} min once for "
        "all components"
    )
    labels = [label for label in ARMS if label in chosen]
    print(f"{'component':<15}" + "".join(f"{label + ' acc/F1 (s)':>28}" for label in labels))
    for name, arms_result in results.items():
        print(
            f"{name:<15}"
            + "".join(
                f"{arms_result[label]['accuracy']:>12.3f} / {arms_result[label]['macro_f1']:.3f} "
                f"({arms_result[label]['seconds']:>3.0f})"
                for label in labels
            )
        )
    if {"scratch", "ssl_fine_tune"} <= set(chosen):
        wins = sum(results[n]["ssl_fine_tune"]["macro_f1"] > results[n]["scratch"]["macro_f1"] for n in results)
        print(f"(c) self-supervised + fine-tune beats (a) from scratch on macro-F1 in {wins}/{len(results)} components")
    if args.json:
        args.json.write_text(
            json.dumps({"budget_s": args.budget_s, "pretrain_seconds": pretrain_seconds, "results": results}, indent=2)
        )
    work.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
