"""Garment detector: TensorFlow Model Garden's Mask R-CNN, configured from `params.detector`.

Model Garden builds on tf-keras (Keras 2) while the classifiers use Keras 3; both live in one
process without sharing layers.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from pipelines.config import DetectorParams

# Class 0 is the background in Model Garden's detection heads.
BACKGROUND_CLASSES = 1


def maskrcnn_experiment(params: DetectorParams) -> Any:
    """The Model Garden experiment config for `params`, starting from the named experiment.

    Only what params set is changed; the remaining choices are the ones measured to train from
    scratch on a CPU in DESIGN.md (no sync BatchNorm, float32 data).
    """
    from official.core import exp_factory
    import official.vision  # noqa: F401  registers the vision experiments

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
    experiment.task.train_data.dtype = "float32"
    experiment.task.validation_data.dtype = "float32"
    return experiment


def build_maskrcnn(model_config: Any) -> Any:
    """A Model Garden `MaskRCNNModel` with random weights from `maskrcnn_experiment(...).task.model`."""
    import tf_keras
    from official.vision.modeling import factory

    input_specs = tf_keras.layers.InputSpec(shape=[None, *model_config.input_size])
    return factory.build_maskrcnn(input_specs=input_specs, model_config=model_config)


def anchor_boxes(model_config: Any, batch_size: int) -> dict[str, tf.Tensor]:
    """Multilevel anchors for a batch of inputs of the model config's `input_size`."""
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
