"""Classifier metrics and the `unknown` thresholds, on hand-checked numbers."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.classifier import balanced_class_weights
from pipelines.evaluate import (
    UNKNOWN,
    classification_report,
    confusion_matrix,
    evaluate,
    predict_with_thresholds,
    tune_thresholds,
)

CLASSES = ["band", "notched", "regular"]


def test_report_matches_hand_counts() -> None:
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    report = classification_report(truth, predicted, CLASSES)
    assert report["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert report["per_class"]["band"] == {
        "precision": 1.0,
        "recall": pytest.approx(0.6667, abs=1e-4),
        "f1": 0.8,
        "support": 3,
    }
    assert report["per_class"]["notched"]["precision"] == 0.5
    assert report["per_class"]["regular"]["recall"] == 1.0
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["macro_f1"] == pytest.approx(np.mean([0.8, 0.5, 0.6667]), abs=1e-3)


def test_unknown_is_no_false_positive_but_costs_recall() -> None:
    truth = np.array([0, 1])
    predicted = np.array([UNKNOWN, 1])
    assert confusion_matrix(truth, predicted, 2).tolist() == [[0, 0], [0, 1]]
    report = classification_report(truth, predicted, ["a", "b"])
    assert report["per_class"]["a"]["recall"] == 0.0 and report["per_class"]["b"]["precision"] == 1.0
    assert report["accuracy"] == 0.5


def test_thresholds_abstain_where_it_pays() -> None:
    # Class 0 is right when confident (0.9) and wrong when hesitant (0.5): a threshold between
    # them turns its false positives into `unknown`. Class 1 is always right: no threshold.
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5 - 1e-6], [0.5, 0.5 - 1e-6], [0.2, 0.8]])
    truth = np.array([0, 0, 1, 1, 1])
    thresholds = tune_thresholds(truth, probabilities)
    assert 0.5 < thresholds[0] <= 0.9 and thresholds[1] == 0.0
    assert predict_with_thresholds(probabilities, thresholds).tolist() == [0, 0, UNKNOWN, UNKNOWN, 1]


def test_evaluate_reports_plain_and_gated_metrics() -> None:
    probabilities = np.array([[0.7, 0.3], [0.4, 0.6], [0.55, 0.45]])
    report = evaluate(np.array([0, 1, 1]), probabilities, ["a", "b"], thresholds=[0.6, 0.0])
    assert report["accuracy"] == pytest.approx(0.6667, abs=1e-4)
    assert report["with_unknown"]["coverage"] == pytest.approx(0.6667, abs=1e-4)
    assert report["with_unknown"]["accuracy_answered"] == 1.0
    assert report["thresholds"] == {"a": 0.6, "b": 0.0}


def test_balanced_class_weights() -> None:
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), classes=3)
    assert weights[0] == pytest.approx(4 / 9) and weights[1] == pytest.approx(4 / 3) and weights[2] == 1.0


def test_best_val_loss_per_phase() -> None:
    from pipelines.classifier import best_val_loss

    rows = [
        {"phase": "frozen", "val_loss": 0.9},
        {"phase": "frozen", "val_loss": 0.7},
        {"phase": "fine_tune", "val_loss": 0.8},
        {"phase": "fine_tune"},
    ]
    assert best_val_loss(rows, "frozen") == 0.7
    assert best_val_loss(rows, "fine_tune") == 0.8
    assert best_val_loss(rows, "other") == float("inf")
