"""Per-component classifiers: a backbone (DenseNet121 by default) → GAP → dropout → softmax.

Models take raw 0–255 RGB pixels; each backbone's own input scaling is a layer of the model, so
a saved model needs no preprocessing code beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import keras

Backbone = Literal["densenet121", "vgg16", "resnet50"]

_APPLICATIONS: dict[str, Callable[..., keras.Model]] = {
    "densenet121": keras.applications.DenseNet121,
    "vgg16": keras.applications.VGG16,
    "resnet50": keras.applications.ResNet50,
}
# How each application's ImageNet weights expect pixels (see keras.applications.imagenet_utils).
_INPUT_MODE: dict[str, Literal["torch", "caffe"]] = {
    "densenet121": "torch",
    "vgg16": "caffe",
    "resnet50": "caffe",
}


@keras.saving.register_keras_serializable(package="seamline")
class BackboneInputScaling(keras.layers.Layer):
    """Scale 0–255 RGB pixels the way a backbone's ImageNet weights were trained to see them."""

    _TORCH_MEAN = (0.485, 0.456, 0.406)
    _TORCH_STD = (0.229, 0.224, 0.225)
    _CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

    def __init__(self, mode: Literal["torch", "caffe"], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("torch", "caffe"):
            raise ValueError(f"unknown input mode {mode!r}")
        self.mode = mode

    def call(self, pixels: Any) -> Any:
        ops = keras.ops
        if self.mode == "torch":
            mean = ops.convert_to_tensor(self._TORCH_MEAN, dtype=pixels.dtype)
            std = ops.convert_to_tensor(self._TORCH_STD, dtype=pixels.dtype)
            return (pixels / 255.0 - mean) / std
        bgr = ops.flip(pixels, axis=-1)
        return bgr - ops.convert_to_tensor(self._CAFFE_BGR_MEAN, dtype=pixels.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def build_classifier(
    *,
    backbone: Backbone,
    classes: Sequence[str],
    image_size: int,
    dropout: float,
    weights: str | None,
    name: str = "classifier",
) -> keras.Model:
    """An uncompiled classifier with named layers: `pixels` → `scaling` → `base` → `gap` →
    `dropout` → `probabilities`.

    The base is called with `training=False` so its BatchNorm layers stay in inference mode even
    when they are unfrozen for fine-tuning (the keras-io transfer-learning recipe).
    """
    shape = (image_size, image_size, 3)
    base = _APPLICATIONS[backbone](include_top=False, weights=weights, input_shape=shape)
    base.name = "base"
    pixels = keras.Input(shape=shape, name="pixels")
    scaled = BackboneInputScaling(_INPUT_MODE[backbone], name="scaling")(pixels)
    features = base(scaled, training=False)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    probabilities = keras.layers.Dense(len(classes), activation="softmax", name="probabilities")(dropped)
    return keras.Model(pixels, probabilities, name=name)
