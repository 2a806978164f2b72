"""Base weights without ImageNet: a SimCLR-style contrastive objective trains the classifiers'
backbone on the **unlabelled** crops of every component — two random views of each crop must map
close together and away from the other crops in the batch. No component label is read. The
`pretrain` stage (`pipelines.stages.pretrain`) writes the result, a weights file components load
with `training.weights: models/pretrain/base.weights.h5`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from pipelines.classifier import build_classifier, decode_crop
from pipelines.config import Params, PretrainParams
from pipelines.crop_set import read_crop_set

BASE_WEIGHTS_FILE = "base.weights.h5"
RECORD_FILE = "pretrain.json"


class PretrainError(RuntimeError):
    """Why pretraining cannot run, in one line."""


def unlabelled_crops(crops: Path, params: Params, limit: int) -> list[str]:
    """One crop file per image and region (the jeans components share a region), from the
    train and validation splits only: the test images stay unseen until the test."""
    rows = read_crop_set(crops)
    if not rows:
        raise PretrainError(f"{crops}: no crop index (run the crop stage first)")
    seen: set[tuple[str, str]] = set()
    files: list[str] = []
    for row in rows.values():
        component = params.components.get(row.component)
        if component is None or not row.file or row.split == "test":
            continue
        key = (row.sha256, component.crop_region)
        if key not in seen:
            seen.add(key)
            files.append(str(crops / row.file))
    if len(files) < 16:
        raise PretrainError(f"{crops}: only {len(files)} usable crops; pretraining needs at least 16")
    return sorted(files)[:limit]


def view_model(pretrain: PretrainParams) -> Any:
    """One random view of a batch: zoomed-in crop, shift, flip, colour jitter, sometimes grey."""
    import keras

    layers = [
        keras.layers.RandomZoom((-pretrain.zoom, 0.0), fill_mode="reflect", seed=pretrain.seed),
        keras.layers.RandomTranslation(pretrain.shift, pretrain.shift, fill_mode="reflect", seed=pretrain.seed + 1),
        keras.layers.RandomFlip("horizontal", seed=pretrain.seed + 2),
    ]
    jitter = pretrain.color_jitter
    if jitter or pretrain.hue_jitter:
        # Keras's saturation factor is centred on 0.5 (no change); a single float would mean
        # (0, f), which greys nearly every view.
        layers.append(
            keras.layers.RandomColorJitter(
                value_range=(0, 255),
                brightness_factor=jitter or None,
                contrast_factor=jitter or None,
                saturation_factor=(0.5 - jitter / 2, 0.5 + jitter / 2) if jitter else None,
                hue_factor=pretrain.hue_jitter or None,
                seed=pretrain.seed + 3,
            )
        )
    if pretrain.grayscale:
        layers.append(keras.layers.RandomGrayscale(pretrain.grayscale, seed=pretrain.seed + 4))
    return keras.Sequential(layers, name="views")


def nt_xent(z1: Any, z2: Any, temperature: float) -> Any:
    """SimCLR's normalised temperature-scaled cross-entropy over the 2N views of a batch."""
    import tensorflow as tf

    z = tf.math.l2_normalize(tf.concat([z1, z2], axis=0), axis=1)
    n = tf.shape(z1)[0]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits -= tf.eye(2 * n) * 1e9  # a view is not its own positive
    positives = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits))


def encoder_and_projector(pretrain: PretrainParams) -> tuple[Any, Any]:
    """The classifier's own input scaling and base (so its weights transfer as they are), and a
    two-layer projection head that is thrown away after pretraining."""
    import keras

    classifier = build_classifier(
        backbone=pretrain.backbone,
        classes=["a", "b"],
        image_size=pretrain.image_size,
        dropout=0.0,
        weights=None,
        batchnorm_momentum=pretrain.batchnorm_momentum,
    )
    encoder = keras.Model(classifier.input, classifier.get_layer("gap").output, name="encoder")
    width = encoder.output.shape[-1]
    projector = keras.Sequential(
        [
            keras.Input((width,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(pretrain.projection_dim),
        ],
        name="projector",
    )
    return encoder, projector


def pretrain_base(pretrain: PretrainParams, files: Sequence[str], on_epoch: Callable[[int, float, float], None]) -> Any:
    """Contrastive training for `pretrain.epochs` epochs; returns the encoder (base inside)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(pretrain.seed)
    dataset = (
        tf.data.Dataset.from_tensor_slices(list(files))
        .map(lambda path: decode_crop(path, pretrain.image_size, alpha=True), num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .shuffle(len(files), seed=pretrain.seed)
        .batch(pretrain.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    steps_per_epoch = len(files) // pretrain.batch_size
    if steps_per_epoch == 0:
        raise PretrainError(f"{len(files)} crops are fewer than one batch of {pretrain.batch_size}")
    encoder, projector = encoder_and_projector(pretrain)
    views = view_model(pretrain)
    warmup = pretrain.warmup_epochs * steps_per_epoch
    total = pretrain.epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=pretrain.learning_rate / 10 if warmup else pretrain.learning_rate,
        decay_steps=max(total - warmup, 1),
        warmup_target=pretrain.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.Adam(schedule)
    variables = encoder.trainable_variables + projector.trainable_variables
    optimizer.build(variables)

    @tf.function
    def step(images: Any) -> Any:
        first, second = views(images, training=True), views(images, training=True)
        with tf.GradientTape() as tape:
            z1 = projector(encoder(first, training=True), training=True)
            z2 = projector(encoder(second, training=True), training=True)
            loss = nt_xent(z1, z2, pretrain.temperature)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    started = time.perf_counter()
    for epoch in range(1, pretrain.epochs + 1):
        losses = [float(step(batch)) for batch in dataset]
        on_epoch(epoch, float(np.mean(losses)), time.perf_counter() - started)
    return encoder


def components_using(params: Params, out: Path) -> list[str]:
    """The components whose `training.weights` is this stage's output."""
    target = (out / BASE_WEIGHTS_FILE).resolve()
    return [
        name
        for name, c in params.components.items()
        if c.training.weights not in (None, "imagenet") and Path(c.training.weights).resolve() == target
    ]
