"""Detector evaluation with pycocotools: box and mask mAP, mAP@0.5, and the mean IoU of the
largest predicted box against the ground truth (the paper reports 0.96 mAP and 0.94 IoU).

Pure functions over a COCO ground truth and per-image detections; no model in sight.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.detect import Detection, best_of_category, encode_mask


def coco_from_dict(dataset: Mapping[str, Any]) -> COCO:
    """A pycocotools COCO index over an in-memory instances dict, without its console chatter."""
    coco = COCO()
    coco.dataset = dict(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_results(
    image_ids: Sequence[int], detections: Sequence[Sequence[Detection]], category_ids: Mapping[str, int]
) -> list[dict[str, Any]]:
    """COCO results entries (box as x, y, w, h and mask as RLE) for every detection."""
    results = []
    for image_id, found in zip(image_ids, detections, strict=True):
        for detection in found:
            x0, y0, x1, y1 = detection.box
            results.append(
                {
                    "image_id": image_id,
                    "category_id": category_ids[detection.category],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": detection.score,
                    "segmentation": encode_mask(detection.mask),
                }
            )
    return results


def average_precision(ground_truth: COCO, results: Sequence[Mapping[str, Any]], kind: str) -> dict[str, float]:
    """COCOeval for `kind` ("bbox" or "segm"): mAP over IoU 0.50:0.95 and mAP at IoU 0.5."""
    if not results:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        predictions = ground_truth.loadRes(list(results))
        evaluation = COCOeval(ground_truth, predictions, kind)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats holds -1 where a category has no ground truth at all; that is not a score.
    return {"map": max(float(evaluation.stats[0]), 0.0), "map50": max(float(evaluation.stats[1]), 0.0)}


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two x0, y0, x1, y1 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def largest_box_ious(
    ground_truth: COCO,
    image_ids: Sequence[int],
    detections: Sequence[Sequence[Detection]],
    threshold: float,
    pick: str = "largest",
) -> dict[str, list[float]]:
    """Per category, the IoU of the box a crop would take (the largest, or the most confident,
    detection above `threshold`) against the largest ground-truth box, for every image that has
    that category. A missed garment scores 0, so misses pull the mean down as they hurt the
    classifier."""
    names = {c["id"]: c["name"] for c in ground_truth.dataset["categories"]}
    ious: dict[str, list[float]] = {name: [] for name in names.values()}
    for image_id, found in zip(image_ids, detections, strict=True):
        largest: dict[str, list[float]] = {}
        for ann in ground_truth.imgToAnns.get(image_id, []):
            x, y, w, h = ann["bbox"]
            name = names[ann["category_id"]]
            if name not in largest or w * h > _area(largest[name]):
                largest[name] = [x, y, x + w, y + h]
        for name, truth in largest.items():
            best = best_of_category(found, name, threshold, pick)
            ious[name].append(box_iou(truth, best.box) if best else 0.0)
    return ious


def _area(box: Sequence[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def detector_metrics(
    dataset: Mapping[str, Any], image_ids: Sequence[int], detections: Sequence[Sequence[Detection]], threshold: float
) -> dict[str, Any]:
    """Everything `metrics/detector.json` reports, for the held-out images `image_ids`."""
    subset = {
        **dataset,
        "images": [i for i in dataset["images"] if i["id"] in set(image_ids)],
        "annotations": [a for a in dataset["annotations"] if a["image_id"] in set(image_ids)],
    }
    ground_truth = coco_from_dict(subset)
    category_ids = {c["name"]: c["id"] for c in dataset["categories"]}
    results = coco_results(image_ids, detections, category_ids)
    boxes = average_precision(
        ground_truth, [{k: v for k, v in r.items() if k != "segmentation"} for r in results], "bbox"
    )
    masks = average_precision(ground_truth, [{k: v for k, v in r.items() if k != "bbox"} for r in results], "segm")
    ious = largest_box_ious(ground_truth, image_ids, detections, threshold)
    confident = largest_box_ious(ground_truth, image_ids, detections, threshold, "most_confident")
    every = [v for values in ious.values() for v in values]
    every_confident = [v for values in confident.values() for v in values]
    return {
        "images": len(image_ids),
        "box_map": round(boxes["map"], 4),
        "box_map50": round(boxes["map50"], 4),
        "mask_map": round(masks["map"], 4),
        "mask_map50": round(masks["map50"], 4),
        "mean_iou": round(float(np.mean(every)), 4) if every else 0.0,
        "mean_iou_per_category": {name: round(float(np.mean(v)), 4) for name, v in ious.items() if v},
        "missed_per_category": {name: sum(1 for x in v if x == 0.0) for name, v in ious.items() if v},
        # The same with the most confident box (crop.pick: most_confident).
        "mean_iou_most_confident": round(float(np.mean(every_confident)), 4) if every_confident else 0.0,
        "mean_iou_most_confident_per_category": {
            name: round(float(np.mean(v)), 4) for name, v in confident.items() if v
        },
    }
