"""Proof that the pinned dependency set works together: Model Garden's Mask R-CNN (tf-keras)
builds and runs here, in the pytest process that also trains Keras 3 DenseNet121 classifiers
(tests/integration/test_weights.py takes a real training step with one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_params

pytestmark = pytest.mark.slow


def test_maskrcnn_builds_and_runs_a_forward_pass(shipped_params_path: Path) -> None:
    import tensorflow as tf

    from pipelines.detect import anchor_boxes, build_maskrcnn, maskrcnn_experiment

    demo = load_params(shipped_params_path, "demo").detector
    tiny = demo.model_copy(update={"image_size": 128, "resnet_depth": 18, "decoder_filters": 32})
    model_config = maskrcnn_experiment(tiny).task.model
    model = build_maskrcnn(model_config)

    images = tf.random.uniform([1, 128, 128, 3])
    outputs = model(
        images,
        image_shape=tf.constant([[128.0, 128.0]]),
        anchor_boxes=anchor_boxes(model_config, batch_size=1),
        training=False,
    )
    max_detections = model_config.detection_generator.max_num_detections
    assert outputs["detection_boxes"].shape == (1, max_detections, 4)
    assert outputs["detection_masks"].shape[:2] == (1, max_detections)
    assert model_config.num_classes == len(demo.categories) + 1
    assert model.count_params() > 1_000_000
