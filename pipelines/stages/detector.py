"""The `detector` stage: train Model Garden's Mask R-CNN on the COCO annotations
(`pipelines.detector_training`), evaluate it with pycocotools on held-out images, and track both
in MLflow, the detector as the run's `model` for the registry (`seamline models register detector`).

    python -m pipelines.stages.detector --params params.yaml --annotations data/annotations \
        --out models/detector --metrics metrics/detector.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.coco_eval import detector_metrics
from pipelines.config import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params
from pipelines.detect import Detector, DetectorError, maskrcnn_experiment, save_detector
from pipelines.detector_training import (
    INSTANCES_FILE,
    check_init_checkpoint,
    detect_images,
    read_instances,
    split_coco,
    train_maskrcnn,
    write_tfrecords,
)
from pipelines.tracking import flat_params, log_detector_model, mlflow_run


def progress_printer(total: int) -> Callable[[int, dict[str, float], float], None]:
    def report(step: int, losses: Mapping[str, float], elapsed: float) -> None:
        rate = elapsed / step
        print(
            f"detector: step {step}/{total}  loss {losses.get('total_loss', float('nan')):.3f}  "
            f"({rate:.2f} s/step, {rate * (total - step) / 60:.1f} min left)",
            flush=True,
        )

    return report


def train_detector(params: Params, annotations: Path, out: Path, metrics_path: Path) -> dict[str, Any]:
    """Train, save and evaluate the detector; returns the metrics written to `metrics_path`."""
    import mlflow

    detector_params = params.detector
    maskrcnn_experiment(detector_params)  # bad overrides fail here, before any work
    check_init_checkpoint(detector_params.init_checkpoint)
    dataset = read_instances(annotations)
    names = [c["name"] for c in dataset["categories"]]
    if names != list(detector_params.categories):
        raise DetectorError(
            f"{annotations / INSTANCES_FILE}: categories {names} differ from detector.categories "
            f"{list(detector_params.categories)} (re-import the annotations)"
        )
    train_set, held_out = split_coco(dataset, detector_params.validation_fraction)
    if not held_out["images"] or not train_set["images"]:
        raise DetectorError(
            f"{len(dataset['images'])} annotated images are too few to hold out "
            f"{detector_params.validation_fraction:.0%} for evaluation"
        )
    print(
        f"detector: {len(train_set['images'])} training / {len(held_out['images'])} held-out images, "
        f"{detector_params.steps} steps of batch {detector_params.batch_size} at {detector_params.image_size} px",
        flush=True,
    )

    history: list[dict[str, float]] = []
    with (
        mlflow_run(
            params.registry, "detector", f"detector-{params.profile}", {"seamline.profile": params.profile}
        ) as run,
        tempfile.TemporaryDirectory(prefix="seamline-detector-") as work,
    ):
        mlflow.log_params(flat_params(detector_params.model_dump(mode="json"), "detector."))
        records = write_tfrecords(train_set, annotations, Path(work))
        report = progress_printer(detector_params.steps)

        def on_log(step: int, losses: dict[str, float], elapsed: float) -> None:
            report(step, losses, elapsed)
            history.append({"step": step, **losses})
            mlflow.log_metrics({f"train_{k}": v for k, v in losses.items()}, step=step)

        started = time.perf_counter()
        model = train_maskrcnn(detector_params, records, on_log)
        train_seconds = time.perf_counter() - started
        version = save_detector(
            model, detector_params, out, {"trained_images": len(train_set["images"]), "mlflow_run_id": run.info.run_id}
        )

        print(f"detector: evaluating on {len(held_out['images'])} held-out images", flush=True)
        detector = Detector(detector_params, model, version)
        image_ids = [image["id"] for image in held_out["images"]]
        found = detect_images(detector, [annotations / image["file_name"] for image in held_out["images"]])
        evaluation = detector_metrics(dataset, image_ids, found, detector_params.score_threshold)
        summary = {
            "version": version,
            "profile": params.profile,
            "steps": detector_params.steps,
            "train_images": len(train_set["images"]),
            "train_seconds": round(train_seconds, 1),
            "final_losses": {k: round(v, 4) for k, v in history[-1].items() if k != "step"} if history else {},
            **evaluation,
        }
        mlflow.log_metrics({k: v for k, v in evaluation.items() if isinstance(v, float)})
        mlflow.log_metrics({f"iou_{k}": v for k, v in evaluation["mean_iou_per_category"].items()})
        mlflow.set_tag("seamline.detector_version", version)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
        # As the run's `model` (an MLmodel folder), which the registry registers as `detector`.
        log_detector_model(out)
        mlflow.log_artifact(str(metrics_path))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stages.detector", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--annotations", type=Path, default=Path("data/annotations"))
    parser.add_argument("--out", type=Path, default=Path("models/detector"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/detector.json"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params, args.profile)
        summary = train_detector(params, args.annotations, args.out, args.metrics)
    except (ParamsError, DetectorError) as error:
        print(f"detector: {error}", file=sys.stderr)
        return 2
    print(
        f"detector: version {summary['version']}  box mAP {summary['box_map']:.3f}  mAP@0.5 "
        f"{summary['box_map50']:.3f}  "
        f"mask mAP {summary['mask_map']:.3f}  mean IoU {summary['mean_iou']:.3f} → {args.metrics}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
