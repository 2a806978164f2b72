"""Classifier evaluation, pure: accuracy, macro-F1, per-class precision and recall, the confusion
matrix, and per-class decision thresholds below which a prediction is `unknown`.

Everything takes integer labels and probability rows; plots take the numbers these return.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

UNKNOWN = -1
HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy")  # plots/<c>/history.csv
THRESHOLD_CANDIDATES = tuple(round(t, 2) for t in np.arange(0.0, 0.96, 0.05))


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]; `unknown` predictions are left out."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    answered = predicted != UNKNOWN
    np.add.at(matrix, (truth[answered], predicted[answered]), 1)
    return matrix


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def classification_report(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support. An `unknown` prediction
    counts against recall and accuracy but is no false positive."""
    matrix = confusion_matrix(truth, predicted, len(classes))
    per_class: dict[str, dict[str, float]] = {}
    for index, name in enumerate(classes):
        tp = matrix[index, index]
        precision = _ratio(tp, matrix[:, index].sum())
        recall = _ratio(tp, int((truth == index).sum()))
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[name] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": int((truth == index).sum()),
        }
    return {
        "accuracy": round(_ratio(int((truth == predicted).sum()), len(truth)), 4),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def predict_with_thresholds(probabilities: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """argmax, or `unknown` where the winning class's probability is below its threshold."""
    best = probabilities.argmax(axis=1)
    confident = probabilities[np.arange(len(best)), best] >= np.asarray(thresholds)[best]
    return np.where(confident, best, UNKNOWN)


def tune_thresholds(
    truth: np.ndarray, probabilities: np.ndarray, candidates: Sequence[float] = THRESHOLD_CANDIDATES
) -> list[float]:
    """Per class, the threshold that maximises that class's F1 on validation when predictions
    of it below the threshold become `unknown` (fewer false positives, some lost recall); ties
    go to the lower threshold, so a class abstains only when that pays."""
    best = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(best)), best]
    thresholds = []
    for index in range(probabilities.shape[1]):
        support = int((truth == index).sum())
        scores = []
        for threshold in candidates:
            claimed = (best == index) & (top >= threshold)
            tp = int((claimed & (truth == index)).sum())
            precision, recall = _ratio(tp, int(claimed.sum())), _ratio(tp, support)
            scores.append(_ratio(2 * precision * recall, precision + recall))
        thresholds.append(float(candidates[int(np.argmax(scores))]))
    return thresholds


def abstention_summary(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """How often the thresholds abstain, and how accurate the answers that remain are."""
    answered = predicted != UNKNOWN
    return {
        "coverage": round(_ratio(int(answered.sum()), len(truth)), 4),
        "accuracy_answered": round(_ratio(int((truth[answered] == predicted[answered]).sum()), int(answered.sum())), 4),
    }


def evaluate(
    truth: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], thresholds: Sequence[float]
) -> dict[str, Any]:
    """The full test report: plain argmax metrics, and the same with the tuned thresholds."""
    plain = classification_report(truth, probabilities.argmax(axis=1), classes)
    gated = predict_with_thresholds(probabilities, thresholds)
    return {
        **plain,
        "thresholds": dict(zip(classes, thresholds)),
        "with_unknown": {**classification_report(truth, gated, classes), **abstention_summary(truth, gated)},
    }


def write_evaluation_files(
    folder: Path,
    component: str,
    history: Sequence[Mapping[str, Any]],
    report: Mapping[str, Any],
    classes: Sequence[str],
    truth: np.ndarray,
    predicted: np.ndarray,
) -> None:
    """The test evaluation as files for `dvc plots`: history.csv (both phases on one epoch axis),
    confusion.csv (actual, predicted) and the two PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(HISTORY_COLUMNS)
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


def write_skipped_files(folder: Path, component: str, reason: str) -> None:
    """The plot files of a component not trained this run: the last training's stay where they are
    (DVC persists them); where there are none yet, empty tables and a figure that says why."""
    folder.mkdir(parents=True, exist_ok=True)
    headers = {"history.csv": ",".join(HISTORY_COLUMNS) + "\n", "confusion.csv": "actual,predicted\n"}
    for name, header in headers.items():
        if not (folder / name).is_file():
            (folder / name).write_text(header, encoding="utf-8")
    for name in ("curves.png", "confusion.png"):
        if not (folder / name).is_file():
            plot_message(f"{component}: not trained yet", reason, folder / name)


# --- plots (matplotlib, headless) ------------------------------------------------------------


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.1 * len(classes) + 2))
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=35, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (row, column), value in np.ndenumerate(counts):
        axes.text(
            column, row, str(value), ha="center", va="center", color="white" if value > counts.max() / 2 else "black"
        )
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_curves(history: Sequence[dict[str, Any]], title: str, path: Path) -> None:
    """Loss and accuracy per epoch over both phases, the phase change marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [row["epoch"] for row in history]
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.plot(epochs, [row.get(metric) for row in history], label=f"train {metric}")
        axes.plot(epochs, [row.get(f"val_{metric}") for row in history], label=f"validation {metric}")
        changes = [row["epoch"] for previous, row in pairwise(history) if row["phase"] != previous["phase"]]
        for epoch in changes:
            axes.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=1)
        axes.set_xlabel("epoch (frozen, then fine-tune)")
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_message(title: str, message: str, path: Path) -> None:
    """A figure that says something instead of plotting it (a component not trained yet)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 2.5))
    axes.axis("off")
    axes.text(0.5, 0.5, textwrap.fill(message, 60), ha="center", va="center", wrap=True)
    axes.set_title(title)
    figure.savefig(path, dpi=90)
    plt.close(figure)
