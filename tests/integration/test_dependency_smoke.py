"""Proof that the pinned dependency set works together in one process: Model Garden's Mask R-CNN
(tf-keras) builds and runs, and a Keras 3 DenseNet121 classifier takes a real training step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_densenet121_classifier_takes_a_training_step(shipped_params_path: Path) -> None:
    import keras

    from pipelines.train import build_classifier

    collar = load_params(shipped_params_path, "demo").component("shirt-collar")
    model = build_classifier(
        backbone="densenet121",
        classes=collar.classes,
        image_size=32,
        dropout=collar.training.dropout,
        weights=None,
    )
    assert [layer.name for layer in model.layers][1:] == ["scaling", "base", "gap", "dropout", "probabilities"]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")

    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, size=(8, 32, 32, 3)).astype("float32")
    targets = keras.utils.to_categorical(rng.integers(0, len(collar.classes), size=8), len(collar.classes))
    head_before = model.get_layer("probabilities").get_weights()[0].copy()
    loss = model.train_on_batch(pixels, targets)
    head_after = model.get_layer("probabilities").get_weights()[0]

    assert np.isfinite(loss)
    assert not np.allclose(head_before, head_after)
    probabilities = model.predict(pixels, verbose=0)
    assert probabilities.shape == (8, len(collar.classes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
