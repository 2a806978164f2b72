"""The registry's pure rules: the classifiers' and the detector's gates, the champion lineage behind
rollback, the load-and-query checks on a model's answers, and how predict turns probabilities into
a label or `unknown`."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import RegistryParams
from pipelines.detect import Detection
from pipelines.predict import label_of, resize_crop
from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    DetectorScores,
    LedgerEntry,
    RegistryError,
    Scores,
    champion_lineage,
    check_detections,
    check_outputs,
    detector_gate,
    detector_scores_from_metrics,
    gate,
    scores_from_report,
)

RULES = RegistryParams(gate_metric="macro_f1", min_improvement=0.02, min_class_recall=0.5, auto_promote=False)


def scores(f1: float, recall: float = 0.8, accuracy: float = 0.5) -> Scores:
    return Scores(accuracy=accuracy, macro_f1=f1, recall={"band": recall, "regular": 0.9})


def test_first_passing_model_becomes_champion() -> None:
    decision = gate(scores(0.4), None, None, RULES)
    assert decision.passed and decision.alias == CHAMPION


@pytest.mark.parametrize(("new", "passed"), [(0.71, True), (0.72, True), (0.69, False), (0.60, False)])
def test_margin_over_the_champion(new: float, passed: bool) -> None:
    decision = gate(scores(new), scores(0.68), "3", RULES)
    assert decision.passed is passed
    assert decision.alias == (CHALLENGER if passed else None)
    assert "v3" in decision.reason


def test_auto_promote_makes_a_passing_model_champion() -> None:
    decision = gate(scores(0.9), scores(0.5), "1", RULES.model_copy(update={"auto_promote": True}))
    assert decision.alias == CHAMPION


def test_recall_floor_blocks_even_a_better_model_and_names_the_class() -> None:
    decision = gate(scores(0.95, recall=0.3), scores(0.5), "1", RULES)
    assert not decision.passed and decision.alias is None
    assert "band 0.30" in decision.reason and "regular" not in decision.reason


def test_gate_metric_accuracy() -> None:
    rules = RULES.model_copy(update={"gate_metric": "accuracy"})
    assert gate(scores(0.1, accuracy=0.9), scores(0.9, accuracy=0.5), "1", rules).passed
    assert not gate(scores(0.9, accuracy=0.5), scores(0.1, accuracy=0.9), "1", rules).passed


def test_scores_from_report() -> None:
    report = {"accuracy": 0.5, "macro_f1": 0.4, "per_class": {"a": {"recall": 1.0}, "b": {"recall": 0.0}}}
    assert scores_from_report(report) == Scores(0.5, 0.4, {"a": 1.0, "b": 0.0})


def move(alias: str, old: str | None, new: str | None, action: str) -> LedgerEntry:
    return LedgerEntry("t", "m", alias, old, new, action, "who", "why")


def test_champion_lineage_pops_rolled_back_champions() -> None:
    history = [
        move(CHAMPION, None, "1", "register"),
        move(CHALLENGER, None, "2", "register"),
        move(CHAMPION, "1", "2", "promote"),
        move(CHALLENGER, "2", None, "retire"),
        move(CHAMPION, "2", "4", "promote"),
    ]
    assert champion_lineage(history) == ["1", "2", "4"]
    history.append(move(CHAMPION, "4", "2", "rollback"))
    assert champion_lineage(history) == ["1", "2"]  # a second rollback goes to v1, not back to v4
    history.append(move(CHAMPION, "2", "1", "rollback"))
    assert champion_lineage(history) == ["1"]


def test_check_outputs_accepts_probability_rows() -> None:
    check_outputs(np.array([[0.2, 0.8], [0.5, 0.5]]), 2, ["a", "b"], ["a", "b"])


@pytest.mark.parametrize(
    ("answers", "declared", "message"),
    [
        (np.array([[0.2, 0.8]]), ["a", "b"], "shape"),
        (np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]), ["a", "b"], "shape"),
        (np.array([[2.0, 3.0], [1.0, 1.0]]), ["a", "b"], "probability rows"),
        (np.array([[np.nan, 1.0], [0.5, 0.5]]), ["a", "b"], "probability rows"),
        (np.array([[0.2, 0.8], [0.5, 0.5]]), ["b", "a"], "declares classes"),
    ],
)
def test_check_outputs_refuses_what_cannot_be_served(answers: np.ndarray, declared: list[str], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        check_outputs(answers, 2, ["a", "b"], declared)


def detector_scores(box_map: float, mean_iou: float = 0.5) -> DetectorScores:
    return DetectorScores(box_map=box_map, box_map50=0.9, mask_map=0.3, mask_map50=0.8, mean_iou=mean_iou)


def test_the_first_detector_to_load_and_answer_becomes_champion() -> None:
    decision = detector_gate(detector_scores(0.1), None, None, RULES)
    assert decision.passed and decision.alias == CHAMPION and "box_map 0.1000" in decision.reason


@pytest.mark.parametrize(("new", "alias"), [(0.53, CHALLENGER), (0.515, None), (0.40, None)])
def test_a_detector_must_beat_the_champions_box_map_by_the_margin(new: float, alias: str | None) -> None:
    decision = detector_gate(detector_scores(new), detector_scores(0.5), "2", RULES)
    assert decision.alias == alias and decision.passed is (alias is not None)
    assert "box_map" in decision.reason and "v2's 0.5000" in decision.reason


def test_the_detector_gate_metric_comes_from_the_registry_params() -> None:
    by_iou = RULES.model_copy(update={"detector_gate_metric": "mean_iou", "auto_promote": True})
    decision = detector_gate(detector_scores(0.1, mean_iou=0.9), detector_scores(0.9, mean_iou=0.5), "1", by_iou)
    assert decision.alias == CHAMPION and "mean_iou 0.9000" in decision.reason
    with pytest.raises(ValueError, match="detector_gate_metric"):
        RegistryParams(detector_gate_metric="ap")


def test_detector_scores_from_the_stages_metrics() -> None:
    metrics = {"images": 60, "box_map": 0.88, "box_map50": 1.0, "mask_map": 0.7, "mask_map50": 0.95, "mean_iou": 0.93}
    assert detector_scores_from_metrics(metrics) == DetectorScores(0.88, 1.0, 0.7, 0.95, 0.93)


def detection(category: str = "shirt", score: float = 0.9, box: tuple = (0.0, 0.0, 10.0, 10.0)) -> Detection:
    return Detection(category, score, box, None)


def test_check_detections_accepts_known_categories_and_no_detections() -> None:
    check_detections([[detection(), detection("collar", 0.0)], []], 2, ["shirt", "collar", "jeans"])


@pytest.mark.parametrize(
    ("found", "message"),
    [
        ([[detection()]], "answered for 1 of 2"),
        ([[detection("hat")], []], "detects 'hat'"),
        ([[detection(score=1.5)], []], "not detections"),
        ([[detection(box=(0.0, float("nan"), 1.0, 1.0))], []], "not detections"),
    ],
)
def test_check_detections_refuses_what_cannot_be_served(found: list, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        check_detections(found, 2, ["shirt", "collar", "jeans"])


def test_label_of_abstains_below_the_classes_threshold() -> None:
    classes = ["light", "middle", "deep"]
    thresholds = {"light": 0.5, "middle": 0.6, "deep": 0.5}  # as classifier.json stores them
    assert label_of(np.array([0.1, 0.7, 0.2]), classes, thresholds) == ("middle", "middle", 0.7)
    assert label_of(np.array([0.1, 0.55, 0.35]), classes, thresholds) == ("unknown", "middle", 0.55)
    assert label_of(np.array([0.1, 0.55, 0.35]), classes, {}) == ("middle", "middle", 0.55)


def test_resize_crop_composites_alpha_on_black() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:4, ..., 3] = 255
    out = resize_crop(rgba, 4)
    assert out.shape == (4, 4, 3) and out.dtype == np.float32
    assert out[0, 0, 0] == pytest.approx(200) and out[-1, -1, 0] == pytest.approx(0)


@pytest.mark.parametrize("size", [16, 32, 48])
def test_resize_crop_gives_the_pixels_training_decoded(tmp_path, size: int) -> None:
    # Serving must feed a classifier what training fed it, also when its image_size is not the
    # crop size (upsampled or downsampled): compare with the classifier's decode of the saved PNG.
    import cv2

    from pipelines.classifier import decode_crop

    crop = np.random.default_rng(size).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    crop[8:20, 4:28] = (250, 30, 90)  # an edge, where resampling methods differ most
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    decoded = decode_crop(str(path), size, alpha=False).numpy()
    served = resize_crop(crop, size)
    assert served.shape == decoded.shape == (size, size, 3)
    assert np.abs(served - decoded).max() < 1e-3


def test_the_detector_stage_s_own_scores_stand_in_only_where_the_gate_would_score_the_same() -> None:
    from types import SimpleNamespace

    from pipelines.config import load_params
    from pipelines.registry import stage_scores
    from pipelines.tracking import flat_params
    from tests.conftest import PROJECT_ROOT

    params = load_params(PROJECT_ROOT / "params.yaml", "demo")
    logged = flat_params(params.detector.model_dump(mode="json"), "detector.")  # as the stage logs them
    metrics = {"box_map": 0.55, "box_map50": 0.75, "mask_map": 0.56, "mask_map50": 0.7, "mean_iou": 0.72}

    def run(params_logged: dict, metrics_logged: dict) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(params=params_logged, metrics=metrics_logged))

    scores = stage_scores(run(logged, metrics), params)
    assert scores is not None and scores.box_map == 0.55 and scores.mean_iou == 0.72
    other_split = {**logged, "detector.validation_fraction": "0.3"}
    assert stage_scores(run(other_split, metrics), params) is None
    other_threshold = {**logged, "detector.score_threshold": "0.9"}
    assert stage_scores(run(other_threshold, metrics), params) is None
    assert stage_scores(run(logged, {"box_map": 0.55}), params) is None  # a run that logged no evaluation
