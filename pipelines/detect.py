"""Garment detector: TensorFlow Model Garden's Mask R-CNN, configured from `params.detector`.

Model Garden builds on tf-keras (Keras 2) while the classifiers use Keras 3; both live in one
process without sharing layers. This module builds, saves, loads and runs the detector, and holds
its detection records and the pick rule; training is `pipelines.detector_training`. TensorFlow is
imported only when a detector is built or run, so the records and the rule cost nothing to import.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from pipelines.config import DetectorParams

if TYPE_CHECKING:
    import tensorflow as tf

# Class 0 is the background in Model Garden's detection heads.
BACKGROUND_CLASSES = 1
CHECKPOINT_NAME = "ckpt"
DETECTOR_FILE = "detector.json"


class DetectorError(RuntimeError):
    """A detector that cannot be configured, loaded or initialised, with the reason."""


def nested_overrides(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """`{"task.model.mask_head.num_convs": 2}` → `{"task": {"model": {"mask_head": {...}}}}`,
    the shape Model Garden's `override` takes."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def maskrcnn_experiment(params: DetectorParams) -> Any:
    """The Model Garden experiment config for `params`, starting from the named experiment.

    What params name is set here; `params.overrides` (dotted Model Garden keys) come last. The
    remaining fixed choices (no sync BatchNorm, float32 data) are the ones measured to train from
    scratch on a CPU (docs/architecture.md).
    """
    import official.vision  # noqa: F401  registers the vision experiments
    from official.core import exp_factory

    experiment = exp_factory.get_exp_config(params.experiment)
    model = experiment.task.model
    model.num_classes = len(params.categories) + BACKGROUND_CLASSES
    model.input_size = [params.image_size, params.image_size, 3]
    model.min_level = params.min_level
    model.max_level = params.max_level
    model.anchor.anchor_size = params.anchor_size
    if model.backbone.type == "resnet":
        model.backbone.resnet.model_id = params.resnet_depth
    model.decoder.fpn.num_filters = params.decoder_filters
    model.rpn_head.num_filters = params.decoder_filters
    model.norm_activation.use_sync_bn = False
    experiment.task.init_checkpoint = params.init_checkpoint or ""
    experiment.task.annotation_file = None
    # COCO metrics are computed by Seamline with pycocotools, on its own categories.
    experiment.task.use_coco_metrics = False
    for data in (experiment.task.train_data, experiment.task.validation_data):
        data.dtype = "float32"
        data.global_batch_size = params.batch_size
    try:
        experiment.override(nested_overrides(params.overrides), is_strict=True)
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise DetectorError(f"detector.overrides: {error}") from None
    return experiment


def build_maskrcnn(model_config: Any) -> Any:
    """A Model Garden `MaskRCNNModel` with random weights from `maskrcnn_experiment(...).task.model`."""
    import tf_keras
    from official.vision.modeling import factory

    input_specs = tf_keras.layers.InputSpec(shape=[None, *model_config.input_size])
    return factory.build_maskrcnn(input_specs=input_specs, model_config=model_config)


def anchor_boxes(model_config: Any, batch_size: int) -> dict[str, tf.Tensor]:
    """Multilevel anchors for a batch of inputs of the model config's `input_size`."""
    import tensorflow as tf
    from official.vision.ops import anchor

    height, width = model_config.input_size[:2]
    generator = anchor.Anchor(
        min_level=model_config.min_level,
        max_level=model_config.max_level,
        num_scales=model_config.anchor.num_scales,
        aspect_ratios=model_config.anchor.aspect_ratios,
        anchor_size=model_config.anchor.anchor_size,
        image_size=(height, width),
    )
    return {
        str(level): tf.tile(tf.expand_dims(boxes, 0), [batch_size, 1, 1, 1])
        for level, boxes in generator.multilevel_boxes.items()
    }


# --- detections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Detection:
    category: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the original image's pixels
    mask: np.ndarray | None  # (H, W) bool, the original image's size; None when not decoded

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, 0.0) * max(y1 - y0, 0.0)


def best_of_category(
    detections: Sequence[Detection], category: str, threshold: float, pick: str = "largest"
) -> Detection | None:
    """The detection of `category` scoring at least `threshold` that a crop uses: the largest
    (the paper's rule) or the most confident (`crop.pick`); None when there is none. The one pick
    rule: the crop stage, the tagger, `seamline detect` and the detector's evaluation use it."""
    candidates = [d for d in detections if d.category == category and d.score >= threshold]
    key = (lambda d: d.area) if pick == "largest" else (lambda d: d.score)
    return max(candidates, key=key, default=None)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a bool mask, JSON-ready."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: Mapping[str, Any]) -> np.ndarray:
    from pycocotools import mask as mask_util

    return mask_util.decode({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}).astype(bool)


def detection_record(detection: Detection) -> dict[str, Any]:
    return {
        "category": detection.category,
        "score": round(detection.score, 5),
        "box": [round(v, 2) for v in detection.box],
        "mask": encode_mask(detection.mask),
    }


def detection_from_record(record: Mapping[str, Any], with_mask: bool = True) -> Detection:
    """A cached detection record as a Detection; decoding the mask is the costly part, so a
    caller that only picks among detections can leave it out."""
    mask = decode_mask(record["mask"]) if with_mask else None
    return Detection(record["category"], float(record["score"]), tuple(record["box"]), mask)


# --- the trained detector -------------------------------------------------------------------


class Detector:
    """A trained Mask R-CNN ready for batched inference on RGB uint8 images of any size."""

    def __init__(self, params: DetectorParams, model: Any, version: str) -> None:
        self.params = params
        self.version = version  # the checkpoint's content hash: what detections are cached by
        # The registry's version number when loaded from the registry (None: from a folder).
        self.registered_version: str | None = None
        self._model = model
        self._config = maskrcnn_experiment(params).task.model
        import tensorflow as tf

        self._anchors: dict[int, dict[str, tf.Tensor]] = {}
        self._forward = tf.function(self._call, reduce_retracing=True)

    def _anchors_for(self, batch: int) -> dict[str, tf.Tensor]:
        if batch not in self._anchors:
            self._anchors[batch] = anchor_boxes(self._config, batch)
        return self._anchors[batch]

    def _call(self, images: tf.Tensor, image_shape: tf.Tensor, anchors: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = self._model(images, image_shape=image_shape, anchor_boxes=anchors, training=False)
        keys = ("detection_boxes", "detection_scores", "detection_classes", "num_detections", "detection_masks")
        return {key: outputs[key] for key in keys}

    def preprocess(self, image: np.ndarray) -> tuple[tf.Tensor, np.ndarray]:
        """Model Garden's own eval preprocessing: normalise, then scale to fit the square input
        keeping the aspect ratio and pad. Returns the input and its image_info (4, 2)."""
        import tensorflow as tf
        from official.vision.ops import preprocess_ops

        size = [self.params.image_size, self.params.image_size]
        normalised = preprocess_ops.normalize_image(tf.convert_to_tensor(image))
        resized, info = preprocess_ops.resize_and_crop_image(normalised, size, padded_size=size)
        return resized, info.numpy()

    def raw_forward(self, batch: tf.Tensor, image_shape: tf.Tensor) -> dict[str, np.ndarray]:
        """One padded batch through the model: the model-bound cost of detection."""
        anchors = self._anchors_for(int(batch.shape[0]))
        return {key: value.numpy() for key, value in self._forward(batch, image_shape, anchors).items()}

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Every detection (all scores) for each RGB image, in batches of `params.batch_size`;
        a single photo (an interactive request) runs as a batch of one, not padded."""
        import tensorflow as tf

        results: list[list[Detection]] = []
        size = 1 if len(images) == 1 else self.params.batch_size
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            inputs, infos = zip(*(self.preprocess(image) for image in chunk))
            batch = tf.stack(list(inputs) + [tf.zeros_like(inputs[0])] * (size - len(chunk)))
            info = np.stack(list(infos) + [infos[0]] * (size - len(chunk)))
            outputs = self.raw_forward(batch, tf.constant(info[:, 1, :], tf.float32))
            for i, image in enumerate(chunk):
                results.append(self._detections_of(outputs, i, info[i], image.shape[:2]))
        return results

    def _detections_of(
        self, outputs: Mapping[str, np.ndarray], i: int, info: np.ndarray, shape: tuple[int, int]
    ) -> list[Detection]:
        from official.vision.ops import mask_ops

        count = int(outputs["num_detections"][i])
        if count == 0:
            return []
        scale_y, scale_x = info[2]
        # Model boxes are (ymin, xmin, ymax, xmax) on the scaled input; back to original pixels.
        yx = outputs["detection_boxes"][i, :count] / np.array([scale_y, scale_x, scale_y, scale_x])
        height, width = shape
        boxes = np.stack(
            [yx[:, 1].clip(0, width), yx[:, 0].clip(0, height), yx[:, 3].clip(0, width), yx[:, 2].clip(0, height)],
            axis=1,
        )
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        masks = mask_ops.paste_instance_masks(outputs["detection_masks"][i, :count], xywh, height, width) > 0
        detections = []
        for j in range(count):
            category_id = int(outputs["detection_classes"][i, j])
            if not 1 <= category_id <= len(self.params.categories):
                continue
            detections.append(
                Detection(
                    self.params.categories[category_id - 1],
                    float(outputs["detection_scores"][i, j]),
                    tuple(float(v) for v in boxes[j]),
                    masks[j],
                )
            )
        return detections


def checkpoint_version(checkpoint_prefix: Path) -> str:
    """A short content hash of a saved checkpoint: the detector version crops are cached by."""
    digest = hashlib.sha256()
    for path in sorted(checkpoint_prefix.parent.glob(checkpoint_prefix.name + "*")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def save_detector(model: Any, params: DetectorParams, out: Path, extra: Mapping[str, Any]) -> str:
    """Write the weights and the params that rebuild the model to `out`; returns the version."""
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(CHECKPOINT_NAME + "*"):
        stale.unlink()
    prefix = out / CHECKPOINT_NAME
    tf.train.Checkpoint(model=model).write(str(prefix))
    version = checkpoint_version(prefix)
    record = {"version": version, "params": params.model_dump(mode="json"), **extra}
    (out / DETECTOR_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return version


def load_detector(folder: Path) -> Detector:
    """The detector the `detector` stage saved in `folder` (default models/detector)."""
    import tensorflow as tf

    record_path = folder / DETECTOR_FILE
    if not record_path.is_file():
        raise DetectorError(f"{folder}: no trained detector here (run `dvc repro detector` first)")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    params = DetectorParams.model_validate(record["params"])
    model = build_maskrcnn(maskrcnn_experiment(params).task.model)
    # Build the variables with one forward pass before restoring into them.
    detector = Detector(params, model, record["version"])
    detector.detect([np.zeros((params.image_size, params.image_size, 3), np.uint8)])
    tf.train.Checkpoint(model=model).read(
        str(folder / CHECKPOINT_NAME)
    ).expect_partial().assert_existing_objects_matched()
    return detector


class DetectionsPyfunc:
    """The detector as an MLflow pyfunc model: `mlflow.pyfunc.load_model("models:/detector@champion")`
    answers a list of RGB uint8 images (nested lists over `mlflow models serve`) with one row per
    detection. Seamline itself loads the checkpoint with `load_detector`; this is for MLflow's own
    clients, so the registered detector is a model MLflow can load, not only a folder of files."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector

    def predict(self, model_input: Any, params: Mapping[str, Any] | None = None) -> Any:
        import pandas as pd

        images = [np.asarray(image, dtype=np.uint8) for image in model_input]
        rows = [
            {"image": i, "category": d.category, "score": d.score, "x0": x0, "y0": y0, "x1": x1, "y1": y1}
            for i, found in enumerate(self.detector.detect(images))
            for d in found
            for x0, y0, x1, y1 in [d.box]
        ]
        return pd.DataFrame(rows, columns=["image", "category", "score", "x0", "y0", "x1", "y1"])


def _load_pyfunc(data_path: str) -> DetectionsPyfunc:
    """MLflow's pyfunc loader hook (`loader_module: pipelines.detect` in the logged model's MLmodel)."""
    return DetectionsPyfunc(load_detector(Path(data_path)))


def read_rgb(path: Path) -> np.ndarray | None:
    """An image file as RGB uint8, None when it cannot be decoded."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else np.empty(0, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
