"""Training the garment detector: COCO annotations → TFRecords through Model Garden's own converter
and Mask R-CNN parser, a held-out split by image hash, and the train loop (Adam, warm-up, cosine
decay, global-norm clipping under `tf.function`). The `detector` stage (`pipelines.stages.detector`)
runs it; `pipelines.detect` builds, saves and runs the model.

Data reach the model through Model Garden's own path: the COCO JSON becomes TFRecords with
`official.vision.data.create_coco_tf_record`, read by the Mask R-CNN task's parser (its flips and
scale jitter included). Initial weights come from `detector.init_checkpoint` when set.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.config import DetectorParams
from pipelines.detect import DetectorError, chunks, maskrcnn_experiment, read_rgb

INSTANCES_FILE = "instances.json"
TFRECORD_SHARDS = 2
LOG_EVERY = 10


def is_held_out(file_name: str, fraction: float) -> bool:
    """Stable train/validation choice by the image's name (its content hash): the same image is
    held out every week, whatever else is added."""
    digest = hashlib.sha256(f"detector-validation:{Path(file_name).stem}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_coco(dataset: Mapping[str, Any], fraction: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The instances dict split into (train, validation) by image."""
    held = {image["id"] for image in dataset["images"] if is_held_out(image["file_name"], fraction)}

    def subset(keep: Callable[[int], bool]) -> dict[str, Any]:
        return {
            **dataset,
            "images": [i for i in dataset["images"] if keep(i["id"])],
            "annotations": [a for a in dataset["annotations"] if keep(a["image_id"])],
        }

    return subset(lambda i: i not in held), subset(lambda i: i in held)


def read_instances(folder: Path) -> dict[str, Any]:
    path = folder / INSTANCES_FILE
    if not path.is_file():
        raise DetectorError(
            f"{path}: no COCO instances file (import Labelme files with `seamline annotations import DIR`)"
        )
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DetectorError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not dataset.get("images") or not dataset.get("annotations"):
        raise DetectorError(f"{path}: no annotated images to train on")
    return dataset


def check_init_checkpoint(path: str | None) -> None:
    """Fail before training, in one line, when the configured initial weights are not there."""
    import tensorflow as tf

    if not path:
        return
    if tf.io.gfile.isdir(path):
        if tf.train.latest_checkpoint(path) is None:
            raise DetectorError(f"detector.init_checkpoint: {path} holds no TensorFlow checkpoint")
    elif not tf.io.gfile.exists(path + ".index"):
        raise DetectorError(
            f"detector.init_checkpoint: {path} not found (expected a checkpoint prefix with {path}.index, or its "
            "folder)"
        )


DECODABLE_IN_GRAPH = {".jpg", ".jpeg", ".png"}


def decodable_copy(dataset: Mapping[str, Any], image_dir: Path, work: Path) -> dict[str, Any]:
    """`dataset` with every image the TF example decoder cannot take as a still (WebP decodes
    as a one-frame animation, 4-D) transcoded losslessly to PNG under `work`."""
    import cv2

    images = []
    for image in dataset["images"]:
        source = image_dir / image["file_name"]
        if source.suffix.lower() in DECODABLE_IN_GRAPH:
            images.append({**image, "file_name": str(source.resolve())})
            continue
        pixels = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if pixels is None:
            raise DetectorError(f"{source}: annotated image cannot be decoded")
        target = work / "png" / (Path(image["file_name"]).stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), pixels)
        images.append({**image, "file_name": str(target)})
    return {**dataset, "images": images}


def write_tfrecords(dataset: Mapping[str, Any], image_dir: Path, work: Path) -> str:
    """TFRecords for `dataset` with Model Garden's converter (masks included); returns the glob."""
    instances = work / "train_instances.json"
    instances.write_text(json.dumps(decodable_copy(dataset, image_dir, work)), encoding="utf-8")
    prefix = work / "train"
    # File names are absolute now, so the converter's image_dir join leaves them as they are.
    command = [
        sys.executable,
        "-m",
        "official.vision.data.create_coco_tf_record",
        f"--image_dir={work}",
        f"--object_annotations_file={instances}",
        f"--output_file_prefix={prefix}",
        f"--num_shards={TFRECORD_SHARDS}",
        "--include_masks=True",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DetectorError(f"create_coco_tf_record failed: {tail}")
    return f"{prefix}-*"


def training_dataset(experiment: Any, records: str) -> Any:
    """Batches for the Mask R-CNN task from TFRecords, through Model Garden's own example
    decoder and Mask R-CNN parser (random flips, scale jitter, anchor labelling, mask targets).

    The plumbing around them is ours: with TF 2.20, Model Garden's `input_reader` hands the
    parser images that fail in `resize_and_crop_image` ("input must be 4-dimensional
    [1,1,H,W,3]"), while the same decoder and parser mapped here work.
    """
    import tensorflow as tf
    from official.vision.dataloaders import maskrcnn_input, tf_example_decoder

    model, data = experiment.task.model, experiment.task.train_data
    parser_params = data.parser
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=model.include_mask)
    parser = maskrcnn_input.Parser(
        output_size=model.input_size[:2],
        min_level=model.min_level,
        max_level=model.max_level,
        num_scales=model.anchor.num_scales,
        aspect_ratios=model.anchor.aspect_ratios,
        anchor_size=model.anchor.anchor_size,
        rpn_match_threshold=parser_params.rpn_match_threshold,
        rpn_unmatched_threshold=parser_params.rpn_unmatched_threshold,
        rpn_batch_size_per_im=parser_params.rpn_batch_size_per_im,
        rpn_fg_fraction=parser_params.rpn_fg_fraction,
        aug_rand_hflip=parser_params.aug_rand_hflip,
        aug_rand_vflip=parser_params.aug_rand_vflip,
        aug_scale_min=parser_params.aug_scale_min,
        aug_scale_max=parser_params.aug_scale_max,
        skip_crowd_during_training=parser_params.skip_crowd_during_training,
        max_num_instances=parser_params.max_num_instances,
        include_mask=model.include_mask,
        outer_boxes_scale=model.outer_boxes_scale,
        mask_crop_size=parser_params.mask_crop_size,
        dtype=data.dtype,
    )
    parse = parser.parse_fn(is_training=True)
    files = tf.data.Dataset.list_files(records, shuffle=True)
    return (
        files.interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE)
        .shuffle(data.shuffle_buffer_size)
        .repeat()
        .map(lambda record: parse(decoder.decode(record)), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(data.global_batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def train_maskrcnn(params: DetectorParams, records: str, on_log: Callable[[int, dict[str, float], float], None]) -> Any:
    """Model Garden's Mask R-CNN task trained for `params.steps` steps with Adam, a linear warm-up
    and cosine decay, and global-norm clipping, the train step compiled with `tf.function`."""
    import tensorflow as tf
    import tf_keras
    from official.vision.tasks.maskrcnn import MaskRCNNTask

    experiment = maskrcnn_experiment(params)
    data = experiment.task.train_data
    data.input_path = records
    data.is_training = True
    data.shuffle_buffer_size = 1000
    task = MaskRCNNTask(experiment.task)
    model = task.build_model()
    task.initialize(model)
    dataset = training_dataset(experiment, records)
    schedule = tf_keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=params.learning_rate / 100 if params.warmup_steps else params.learning_rate,
        decay_steps=params.steps - params.warmup_steps,
        warmup_target=params.learning_rate if params.warmup_steps else None,
        warmup_steps=params.warmup_steps,
    )
    optimizer = tf_keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=params.clip_norm)
    metrics = task.build_metrics(training=True)

    @tf.function
    def train_step(inputs: Any) -> Any:
        return task.train_step(inputs, model, optimizer, metrics=metrics)

    started = time.perf_counter()
    for step, inputs in enumerate(dataset.take(params.steps), start=1):
        train_step(inputs)
        if step % LOG_EVERY == 0 or step == params.steps:
            losses = {m.name: float(m.result()) for m in metrics}
            for m in metrics:
                m.reset_state()
            on_log(step, losses, time.perf_counter() - started)
    return model


def detect_images(detector: Any, paths: Sequence[Path]) -> list[list[Any]]:
    """Detections for image files (an undecodable file yields no detections)."""
    found: list[list[Any]] = []
    for batch in chunks(list(paths), detector.params.batch_size * 4):
        images = [read_rgb(path) for path in batch]
        usable = [image for image in images if image is not None]
        detected = iter(detector.detect(usable))
        found.extend(next(detected) if image is not None else [] for image in images)
    return found
