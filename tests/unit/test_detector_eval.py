"""COCO evaluation, detection records and the detector stage's pure helpers."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.coco_eval import box_iou, detector_metrics
from pipelines.detect import (
    Detection,
    best_of_category,
    decode_mask,
    detection_from_record,
    detection_record,
    nested_overrides,
)
from pipelines.detector_training import is_held_out, split_coco

CATEGORIES = [{"id": 1, "name": "shirt"}, {"id": 2, "name": "collar"}]


def polygon_of(box: tuple[int, int, int, int]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def dataset_with(boxes: dict[int, dict[str, tuple[int, int, int, int]]]) -> dict:
    ids = {c["name"]: c["id"] for c in CATEGORIES}
    images = [{"id": i, "file_name": f"images/{i:064x}.jpg", "width": 100, "height": 120} for i in boxes]
    annotations = []
    for image_id, per_category in boxes.items():
        for name, (x0, y0, x1, y1) in per_category.items():
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[name],
                    "iscrowd": 0,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "segmentation": polygon_of((x0, y0, x1, y1)),
                }
            )
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def detection(name: str, box: tuple[int, int, int, int], score: float = 0.9) -> Detection:
    mask = np.zeros((120, 100), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return Detection(name, score, tuple(float(v) for v in box), mask)


TRUTH = {1: {"shirt": (10, 10, 90, 110), "collar": (40, 10, 60, 30)}, 2: {"shirt": (5, 20, 95, 100)}}


def test_perfect_detections_score_one_everywhere() -> None:
    found = [[detection(name, box) for name, box in TRUTH[i].items()] for i in (1, 2)]
    metrics = detector_metrics(dataset_with(TRUTH), [1, 2], found, threshold=0.5)
    assert metrics["box_map"] == pytest.approx(1.0)
    assert metrics["mask_map"] == pytest.approx(1.0, abs=0.02)
    assert metrics["mean_iou"] == pytest.approx(1.0)
    assert metrics["missed_per_category"] == {"shirt": 0, "collar": 0}


def test_a_missed_garment_costs_iou_and_a_shifted_box_lowers_map() -> None:
    found = [[detection("shirt", (10, 10, 90, 110))], [detection("shirt", (25, 20, 115, 100))]]
    metrics = detector_metrics(dataset_with(TRUTH), [1, 2], found, threshold=0.5)
    shifted = box_iou((5, 20, 95, 100), (25, 20, 115, 100))
    assert metrics["mean_iou_per_category"]["shirt"] == pytest.approx((1.0 + shifted) / 2, abs=1e-3)
    assert metrics["mean_iou_per_category"]["collar"] == 0.0  # the collar was never found
    assert metrics["missed_per_category"]["collar"] == 1
    assert 0.0 < metrics["box_map"] < 1.0


def test_detections_below_the_threshold_do_not_make_the_crop() -> None:
    found = [[detection("shirt", (10, 10, 90, 110), score=0.3)], []]
    metrics = detector_metrics(dataset_with(TRUTH), [1, 2], found, threshold=0.5)
    assert metrics["mean_iou_per_category"]["shirt"] == 0.0
    assert metrics["box_map"] > 0.0  # COCO mAP still ranks the low-score box


def test_no_detections_at_all_score_zero_without_crashing() -> None:
    metrics = detector_metrics(dataset_with(TRUTH), [1, 2], [[], []], threshold=0.5)
    assert (metrics["box_map"], metrics["mask_map"], metrics["mean_iou"]) == (0.0, 0.0, 0.0)


def test_the_largest_confident_detection_is_the_crop() -> None:
    small, large = detection("shirt", (10, 10, 30, 30), 0.99), detection("shirt", (0, 0, 80, 80), 0.6)
    assert best_of_category([small, large, detection("collar", (0, 0, 100, 100))], "shirt", 0.5) is large
    assert best_of_category([small, large], "shirt", 0.7) is small
    assert best_of_category([small], "jeans", 0.0) is None


def test_detection_records_round_trip_through_json_rle() -> None:
    original = detection("collar", (12, 7, 40, 33), 0.812345)
    restored = detection_from_record(detection_record(original))
    assert restored.category == "collar" and restored.score == pytest.approx(0.81234, abs=1e-5)
    assert np.array_equal(restored.mask, original.mask)
    assert np.array_equal(decode_mask(detection_record(original)["mask"]), original.mask)


def test_overrides_become_the_nested_shape_model_garden_takes() -> None:
    assert nested_overrides(
        {"task.model.mask_head.num_convs": 2, "task.model.mask_head.num_filters": 64, "task.init_checkpoint": ""}
    ) == {"task": {"model": {"mask_head": {"num_convs": 2, "num_filters": 64}}, "init_checkpoint": ""}}


def test_held_out_images_are_stable_and_near_the_fraction() -> None:
    names = [f"images/{i:064x}.jpg" for i in range(2000)]
    held = [name for name in names if is_held_out(name, 0.15)]
    assert 0.12 < len(held) / len(names) < 0.18
    assert held == [name for name in names if is_held_out(name, 0.15)]
    dataset = {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"id": i, "image_id": i} for i in range(len(names))],
        "categories": CATEGORIES,
    }
    train, validation = split_coco(dataset, 0.15)
    assert len(train["images"]) + len(validation["images"]) == len(names)
    assert {a["image_id"] for a in validation["annotations"]} == {i["id"] for i in validation["images"]}
