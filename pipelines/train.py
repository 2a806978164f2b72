"""Per-component classifiers: a backbone (DenseNet121 by default) → GAP → dropout → softmax.

Models take raw 0–255 RGB pixels; each backbone's own input scaling is a layer of the model, so
a saved model needs no preprocessing code beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import keras
import numpy as np

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


_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def input_scaling(mode: Literal["torch", "caffe"], name: str = "scaling") -> keras.layers.Dense:
    """A frozen per-pixel affine map that scales 0–255 RGB the way a backbone's ImageNet weights
    expect (keras.applications' `preprocess_input`). It is a plain Dense layer on the channel
    axis, so a saved model loads anywhere (`mlflow models serve` included) with no custom code.
    """
    if mode == "torch":
        kernel = np.diag([1.0 / (255.0 * s) for s in _TORCH_STD])
        bias = np.array([-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD)])
    elif mode == "caffe":
        kernel = np.eye(3)[::-1]  # RGB → BGR
        bias = -np.array(_CAFFE_BGR_MEAN)
    else:
        raise ValueError(f"unknown input mode {mode!r}")
    layer = keras.layers.Dense(3, name=name, trainable=False)
    layer.build((None, 3))
    layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return layer


def build_classifier(
    *,
    backbone: Backbone,
    classes: Sequence[str],
    image_size: int,
    dropout: float,
    weights: str | None,
    name: str = "classifier",
    batchnorm_momentum: float | None = None,
) -> keras.Model:
    """An uncompiled classifier with named layers: `pixels` → `scaling` → `base` → `gap` →
    `dropout` → `probabilities`.

    `weights` is `imagenet`, None, or a weights file path/URI (`pipelines.weights`).
    `batchnorm_momentum` (lower than Keras's 0.99) lets the moving averages of BatchNorm layers
    that train catch up in few steps; whether they train is `set_trainable`'s business.
    """
    from pipelines.weights import is_file_source, load_into

    shape = (image_size, image_size, 3)
    from_file = is_file_source(weights)
    base = _APPLICATIONS[backbone](include_top=False, weights=None if from_file else weights, input_shape=shape)
    base.name = "base"
    if from_file:
        load_into(base, weights, f"a {backbone} base")
    if batchnorm_momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = batchnorm_momentum
    pixels = keras.Input(shape=shape, name="pixels")
    scaled = input_scaling(_INPUT_MODE[backbone])(pixels)
    # No `base(scaled, training=False)`: in Keras 3 the outer model's `training=True` overrides it
    # (keras-team/keras#20285), so it would not keep BatchNorm in inference mode; a
    # non-trainable BatchNorm layer does, and `set_trainable` decides that.
    features = base(scaled)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    dropped = keras.layers.Dropout(dropout, name="dropout")(pooled)
    probabilities = keras.layers.Dense(len(classes), activation="softmax", name="probabilities", dtype="float32")(
        dropped
    )
    return keras.Model(pixels, probabilities, name=name)


# --- the paper's two phases --------------------------------------------------------------------


def set_trainable(
    model: keras.Model, phase: Literal["frozen", "fine_tune"], unfreeze_from: int = 0, batchnorm_trains: bool = True
) -> None:
    """Phase 1 trains the head on a frozen base; phase 2 unfreezes the base from layer
    `unfreeze_from` on (0: all of it). With `batchnorm_trains=False` the base's BatchNorm layers
    stay frozen, and so in inference mode with the statistics the base brought (the keras-io
    recipe for a pretrained base and a small data set); a base trained from scratch has none to
    keep."""
    base = model.get_layer("base")
    if phase == "frozen":
        base.trainable = False
        return
    base.trainable = True
    for index, layer in enumerate(base.layers):
        frozen_norm = isinstance(layer, keras.layers.BatchNormalization) and not batchnorm_trains
        layer.trainable = index >= unfreeze_from and not frozen_norm


def compile_classifier(model: keras.Model, loss: str, learning_rate: float) -> None:
    """Adam at `learning_rate` with the component's loss (cross-entropy, or MSE on the one-hot
    target as the paper chose for washing and damage); recompiling is what makes a change of
    trainable layers take effect."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])


def balanced_class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    """n / (k · count) per class, the usual 'balanced' weighting; classes absent from `labels`
    get weight 1."""
    counts = np.bincount(labels, minlength=classes)
    total = counts.sum()
    return {c: float(total / (classes * counts[c])) if counts[c] else 1.0 for c in range(classes)}


def augmentation_model(augmentation: Any, seed: int) -> keras.Sequential | None:
    """The authors' augmentation as Keras preprocessing layers (flips, shifts, zoom, rotation,
    `fill_mode`), or None when every one is off."""
    layers: list[keras.layers.Layer] = []
    if augmentation.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augmentation.shift:
        layers.append(
            keras.layers.RandomTranslation(
                augmentation.shift, augmentation.shift, fill_mode=augmentation.fill_mode, seed=seed
            )
        )
    if augmentation.zoom:
        layers.append(keras.layers.RandomZoom(augmentation.zoom, fill_mode=augmentation.fill_mode, seed=seed))
    if augmentation.rotation:
        layers.append(keras.layers.RandomRotation(augmentation.rotation, fill_mode=augmentation.fill_mode, seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


def feature_extractor(model: keras.Model) -> keras.Model:
    """pixels → pooled base features: everything the frozen phase keeps fixed."""
    return keras.Model(model.input, model.get_layer("gap").output, name="features")


def head_for(model: keras.Model, dropout: float) -> keras.Model:
    """The classifier's head alone (dropout → probabilities) over pooled features, sharing the
    `probabilities` layer, so training it trains the full model's head."""
    features = keras.Input(shape=model.get_layer("gap").output.shape[1:], name="features")
    dropped = keras.layers.Dropout(dropout, name="dropout")(features)
    return keras.Model(features, model.get_layer("probabilities")(dropped), name="head")


# --- weight averaging ----------------------------------------------------------------------------


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of every float weight, BatchNorm's moving statistics
    included, updated after each training step (`decay` per step). Validation, and whatever
    runs after this callback at the end of an epoch (early stopping's best-weights snapshot
    among them), sees the averaged weights; training steps see the raw ones. The model ends
    training holding the averaged weights, so list it before `EarlyStopping`, which then
    restores the best averaged epoch.

    Why: a DenseNet121 trained from scratch on ~1,000 crops swings by up to 0.2 in validation
    accuracy from one epoch to the next, so the epoch early stopping keeps is partly luck; the
    average of the last few hundred steps is steadier and better (jeans-color on the demo shop,
    eight seeds of the GPU twin `bench/gpu/input_size.py`: 0.824 → 0.866 on the truth).

    Keras's own `use_ema` averages trainable variables only and leaves the BatchNorm statistics
    of the raw weights beside the averaged ones."""

    def __init__(self, decay: float) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self._averaged_in = False  # whether the model holds the averaged weights right now

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        import tensorflow as tf

        live = [weight.value for weight in self.model.weights if "float" in str(weight.dtype)]
        shadow = [tf.Variable(tf.identity(weight), trainable=False) for weight in live]
        decay = self.decay

        # One traced graph each: the DenseNet121 has ~600 weights, too many for per-op eager calls.
        @tf.function
        def update() -> None:
            for average, weight in zip(shadow, live):
                average.assign(decay * average + (1.0 - decay) * weight)

        @tf.function
        def swap() -> None:
            for average, weight in zip(shadow, live):
                held = tf.identity(weight)
                weight.assign(average)
                average.assign(held)

        self._update, self._swap = update, swap
        self._averaged_in = False

    def _hold(self, averaged: bool) -> None:
        if self._averaged_in != averaged:
            self._swap()
            self._averaged_in = averaged

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._update()

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._hold(True)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        self._hold(False)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._hold(False)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._hold(True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._hold(True)
