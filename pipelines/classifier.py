"""Per-component classifiers, the paper's way: the model (a backbone → GAP → dropout → softmax),
its inputs (crop files → pixels → tf.data), and its two training phases (frozen base, then
fine-tuning), for the `train` stage and for anything that scores crops.

Models take raw 0–255 RGB pixels; each backbone's own input scaling is a layer of the model, so
a saved model needs no preprocessing code beside it.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from pipelines.config import ComponentParams, TrainingParams
from pipelines.crop_set import index_path as crop_index_path

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


# --- the model in each phase ---------------------------------------------------------------------


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

    Why: a DenseNet121 trained from scratch on a thousand crops swings widely in validation
    accuracy from one epoch to the next, so the epoch early stopping keeps is partly luck; the
    average of the last steps is steadier and better (docs/results.md, jeans-color).

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


# --- inputs: crop files → pixels → batches -----------------------------------------------------


SPLITS = ("train", "val", "test")
CLASSIFIER_FILE = "classifier.json"
MODEL_FILE = "model.keras"
SKIPPED_FILE = "skipped.json"  # beside a kept model when the last run did not train the component


class TrainingError(RuntimeError):
    """Why a component cannot be trained (missing inputs, a split without examples), in one line."""


class TooFewExamples(TrainingError):
    """A component whose crops leave a split empty: skipped for the run, not an error of the run."""


@dataclass(frozen=True)
class Examples:
    paths: list[str]
    labels: np.ndarray  # class indices

    def __len__(self) -> int:
        return len(self.paths)


def load_examples(
    crops: Path, labels: Path, component: str, classes: Sequence[str], splits: Sequence[str] = SPLITS
) -> dict[str, Examples]:
    """Per split, the crop files of `component` and their class indices (crop index ⋈ labels)."""
    index_path, labels_path = crop_index_path(crops, component), labels / f"{component}.csv"
    for path, stage in ((index_path, "crop"), (labels_path, "label")):
        if not path.is_file():
            raise TrainingError(f"{path}: missing (run the {stage} stage first)")
    with labels_path.open(newline="", encoding="utf-8") as handle:
        label_of = {row["sha256"]: row["label"] for row in csv.DictReader(handle)}
    position = {name: i for i, name in enumerate(classes)}
    found: dict[str, tuple[list[str], list[int]]] = {split: ([], []) for split in splits}
    with index_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = label_of.get(row["sha256"])
            if row["component"] != component or not row["file"] or label not in position or row["split"] not in found:
                continue
            found[row["split"]][0].append(str(crops / row["file"]))
            found[row["split"]][1].append(position[label])
    examples = {
        split: Examples(paths, np.asarray(indices, dtype=np.int64)) for split, (paths, indices) in found.items()
    }
    for split, chunk in examples.items():
        if not len(chunk):
            raise TooFewExamples(f"no cropped examples in the {split} split (see {index_path})")
    return examples


def classifier_pixels(image: Any, image_size: int) -> Any:
    """A crop (H, W, 3 or 4; any dtype) as a classifier's float32 0–255 RGB input at
    `image_size`: an RGBA crop (mask_alpha) is composited on black, which is what the
    background means there. Training (`decode_crop`) and serving (`predict.resize_crop`) both
    come through here, so a served crop gets exactly the pixels training saw."""
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    if image.shape[-1] == 4:
        image = image[..., :3] * (image[..., 3:] / 255.0)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    image.set_shape((image_size, image_size, 3))
    return image


def decode_crop(path: Any, image_size: int, alpha: bool) -> Any:
    """A crop PNG as `classifier_pixels`."""
    import tensorflow as tf

    return classifier_pixels(tf.io.decode_png(tf.io.read_file(path), channels=4 if alpha else 3), image_size)


def uses_tf_data(training: TrainingParams) -> bool:
    """tf.data on TensorFlow unless `input_pipeline` says arrays; arrays on every other backend."""
    if training.input_pipeline == "auto":
        return keras.backend.backend() == "tensorflow"
    if training.input_pipeline == "tf_data" and keras.backend.backend() != "tensorflow":
        raise TrainingError(
            f"training.input_pipeline: tf_data needs the TensorFlow backend, not {keras.backend.backend()}"
        )
    return training.input_pipeline == "tf_data"


def make_dataset(
    examples: Examples,
    classes: int,
    training: TrainingParams,
    alpha: bool,
    shuffle: bool,
    augment: Callable[..., Any] | None = None,
) -> Any:
    """The batches one split feeds a phase: tf.data, or a `CropBatches` where
    `uses_tf_data` says arrays."""
    if not uses_tf_data(training):
        targets = np.eye(classes, dtype=np.float32)[examples.labels]
        pixels = crop_arrays(examples.paths, training.image_size, alpha)
        return CropBatches(pixels, targets, training.batch_size, shuffle, training.seed, augment)
    return make_tf_dataset(examples, classes, training, alpha, shuffle, augment)


def make_tf_dataset(
    examples: Examples,
    classes: int,
    training: TrainingParams,
    alpha: bool,
    shuffle: bool,
    augment: Callable[..., Any] | None = None,
) -> Any:
    """tf.data: parallel decode → cache → shuffle → batch → augment → prefetch."""
    import tensorflow as tf

    targets = np.eye(classes, dtype=np.float32)[examples.labels]
    dataset = tf.data.Dataset.from_tensor_slices((examples.paths, targets))
    dataset = dataset.map(
        lambda path, target: (decode_crop(path, training.image_size, alpha), target),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if shuffle:
        dataset = dataset.shuffle(len(examples), seed=training.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(training.batch_size)
    if augment is not None:
        dataset = dataset.map(
            lambda images, target: (augment(images, training=True), target), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def crop_array(path: str, image_size: int, alpha: bool) -> np.ndarray:
    """A crop PNG as uint8 pixels at `image_size`, decoded without TensorFlow: the same
    composite and antialiased bilinear resize as `classifier_pixels`, through keras.ops."""
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGBA" if alpha else "RGB"), dtype=np.float32)
    if alpha:
        pixels = pixels[..., :3] * (pixels[..., 3:] / 255.0)
    if pixels.shape[:2] != (image_size, image_size):
        resized = keras.ops.image.resize(pixels, (image_size, image_size), interpolation="bilinear", antialias=True)
        pixels = keras.ops.convert_to_numpy(resized)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def crop_arrays(paths: Sequence[str], image_size: int, alpha: bool) -> np.ndarray:
    """Every crop of a split decoded once, (N, size, size, 3) uint8: a tenth of float32's memory."""
    pixels = np.zeros((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for row, path in enumerate(paths):
        pixels[row] = crop_array(path, image_size, alpha)
    return pixels


class CropBatches(keras.utils.PyDataset):
    """Batches of decoded crops for any Keras backend (what tf.data does on TensorFlow): float32
    0–255 pixels and one-hot targets, reshuffled every epoch from `seed`, augmented by the
    component's Keras augmentation layers when given."""

    def __init__(
        self,
        pixels: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int,
        augment: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.pixels, self.targets, self.batch_size = pixels, targets, batch_size
        self.shuffle, self.augment = shuffle, augment
        self._random = np.random.default_rng(seed)
        self._order = self._random.permutation(len(pixels)) if shuffle else np.arange(len(pixels))

    def __len__(self) -> int:
        return -(-len(self.pixels) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.pixels[rows].astype(np.float32)
        if self.augment is not None:
            images = keras.ops.convert_to_numpy(self.augment(images, training=True))
        return images, self.targets[rows]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._random.permutation(len(self.pixels))


def predict_probabilities(model: Any, dataset: Any) -> np.ndarray:
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float64)


def crop_probabilities(
    model: Any, paths: Sequence[str], image_size: int, alpha: bool, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities for crop files, decoded exactly as training decoded them."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(list(paths)).map(lambda path: decode_crop(path, image_size, alpha))
    return predict_probabilities(model, dataset.batch(batch_size))


# --- the two phases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a training runs: the scope models are built in, how many replicas share each batch
    (the global batch is `batch_size` per replica times this), and the float policy."""

    scope: Callable[[], Any]
    replicas: int
    precision: str


def placement(require_gpu: bool = False) -> Placement:
    """Every GPU the backend sees, in mixed precision (bfloat16 from compute capability 8.0,
    Ampere on; float16 before): TensorFlow's MirroredStrategy, Keras's DataParallel on the other
    backends. On a CPU, float32 on the one device, unless a GPU is required (`training.require_gpu`
    or the GPU image's SEAMLINE_REQUIRE_GPU): then NoGpu says what is missing."""
    import contextlib

    from pipelines.gpu import gpu_report, gpu_required
    from pipelines.gpu import require_gpu as check

    report = gpu_report()
    if gpu_required(require_gpu):
        check(report)
    backend = keras.backend.backend()
    if not report.devices:
        return Placement(contextlib.nullcontext, 1, "float32")
    precision = "mixed_bfloat16" if all(capability >= (8, 0) for capability in gpu_capabilities()) else "mixed_float16"
    keras.mixed_precision.set_global_policy(precision)
    replicas = len(report.devices)
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy() if replicas > 1 else tf.distribute.OneDeviceStrategy("/gpu:0")
        return Placement(strategy.scope, replicas, precision)
    if replicas > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel(keras.distribution.list_devices("gpu")))
    return Placement(contextlib.nullcontext, replicas, precision)


def gpu_capabilities() -> list[tuple[int, int]]:
    """CUDA compute capability of each GPU the backend sees (empty where it cannot say)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        details = [tf.config.experimental.get_device_details(g) for g in tf.config.list_physical_devices("GPU")]
        return [tuple(d["compute_capability"]) for d in details if "compute_capability" in d]
    if backend == "jax":
        import jax

        return [tuple(int(p) for p in str(d.compute_capability).split(".")) for d in jax.devices("gpu")]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    return []


@dataclass
class TrainResult:
    model: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    frozen_test: dict[str, Any] | None = None
    kept_phase: str = ""  # whose weights the model ends with: the phase with the lower validation loss


class EpochLog:
    """Collects per-epoch metrics of both phases on one epoch axis, and hands each to `on_epoch`."""

    def __init__(self, on_epoch: Callable[[dict[str, Any]], None]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.on_epoch = on_epoch

    def callback(self, phase: str) -> Any:
        log = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
                row = {"epoch": len(log.rows) + 1, "phase": phase, **{k: float(v) for k, v in (logs or {}).items()}}
                log.rows.append(row)
                log.on_epoch(row)

        return _Callback()


def component_classifier(component: ComponentParams) -> keras.Model:
    """`build_classifier` with the component's classes and its training's backbone and base."""
    training = component.training
    return build_classifier(
        backbone=training.backbone,
        classes=component.classes,
        image_size=training.image_size,
        dropout=training.dropout,
        weights=training.weights,
        batchnorm_momentum=training.batchnorm_momentum,
    )


def train_classifier(
    component: ComponentParams,
    examples: Mapping[str, Examples],
    alpha: bool,
    on_epoch: Callable[[dict[str, Any]], None] = lambda row: None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Phase 1 (frozen base; on cached features when `frozen.cached_features`), then phase 2
    (fine-tuning from `unfreeze_from`), each with early stopping on validation loss that keeps the
    best weights."""
    where = placement(component.training.require_gpu)
    # Each replica takes `batch_size`: the global batch grows with the GPUs, the step count shrinks.
    training = component.training.model_copy(update={"batch_size": component.training.batch_size * where.replicas})
    classes = len(component.classes)
    keras.utils.set_random_seed(training.seed)
    augment = augmentation_model(training.augmentation, training.seed)
    train_set = make_dataset(examples["train"], classes, training, alpha, shuffle=True, augment=augment)
    val_set = make_dataset(examples["val"], classes, training, alpha, shuffle=False)
    test_set = make_dataset(examples["test"], classes, training, alpha, shuffle=False)
    weights = (
        balanced_class_weights(examples["train"].labels, classes) if training.class_weights == "balanced" else None
    )
    log = EpochLog(on_epoch)

    with where.scope():
        model = component_classifier(component)
    result = TrainResult(model)
    if training.frozen.epochs:
        started = time.perf_counter()
        set_trainable(model, "frozen")
        if training.frozen.cached_features:
            _fit_head_on_cached_features(
                model,
                examples,
                train_set,
                val_set,
                training,
                classes,
                weights,
                alpha,
                augment,
                [*phase_callbacks(training), log.callback("frozen"), *callbacks],
            )
        else:
            compile_classifier(model, training.loss, training.frozen.learning_rate)
            model.fit(
                train_set,
                validation_data=val_set,
                epochs=training.frozen.epochs,
                class_weight=weights,
                callbacks=[*phase_callbacks(training), log.callback("frozen"), *callbacks],
                shuffle=False,
                verbose=0,
            )
        result.phase_seconds["frozen"] = time.perf_counter() - started
        if training.fine_tune.epochs:  # the frozen model's test score, to set beside the fine-tuned one's
            result.frozen_test = {"probabilities": predict_probabilities(model, test_set)}
        result.kept_phase = "frozen"
    frozen_weights = None
    if training.frozen.epochs and training.fine_tune.epochs:
        # Saved by name, not as a list: a list's order follows `trainable`, which fine-tuning changes.
        frozen_weights = Path(tempfile.mkdtemp(prefix="seamline-frozen-")) / "frozen.weights.h5"
        model.save_weights(frozen_weights)
    if training.fine_tune.epochs:
        started = time.perf_counter()
        set_trainable(model, "fine_tune", training.fine_tune.unfreeze_from, training.batchnorm_trains)
        compile_classifier(model, training.loss, training.fine_tune.learning_rate)
        model.fit(
            train_set,
            validation_data=val_set,
            epochs=training.fine_tune.epochs,
            class_weight=weights,
            callbacks=[*phase_callbacks(training), log.callback("fine_tune"), *callbacks],
            shuffle=False,
            verbose=0,
        )
        result.phase_seconds["fine_tune"] = time.perf_counter() - started
        result.kept_phase = "fine_tune"
        if frozen_weights is not None:
            if best_val_loss(log.rows, "frozen") <= best_val_loss(log.rows, "fine_tune"):
                # Fine-tuning never beat the frozen phase on validation: keep the frozen model.
                model.load_weights(frozen_weights)
                result.kept_phase = "frozen"
            frozen_weights.unlink(missing_ok=True)
            frozen_weights.parent.rmdir()
    result.history = log.rows
    return result


def phase_callbacks(training: TrainingParams) -> list[Any]:
    """Weight averaging (when `ema_decay` is set), then early stopping: in that order, so early
    stopping judges and keeps the averaged weights."""
    if training.ema_decay is not None and keras.backend.backend() != "tensorflow":
        raise TrainingError(f"training.ema_decay needs the TensorFlow backend, not {keras.backend.backend()}")
    averaging = [WeightAverage(training.ema_decay)] if training.ema_decay is not None else []
    return [*averaging, early_stopping(training)]


def early_stopping(training: TrainingParams) -> Any:
    """Stops a phase after `early_stopping_patience` epochs without a lower validation loss,
    counted from epoch `early_stopping_start` on, and restores its best weights. The epochs
    before that start are never kept: a from-scratch model's early val_loss minimum is noise."""
    return keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=training.early_stopping_patience,
        start_from_epoch=training.early_stopping_start,
        restore_best_weights=True,
    )


def best_val_loss(rows: Sequence[Mapping[str, Any]], phase: str) -> float:
    """The lowest validation loss a phase reached (inf if it logged none)."""
    return min(
        (float(row["val_loss"]) for row in rows if row.get("phase") == phase and "val_loss" in row),
        default=float("inf"),
    )


def _fit_head_on_cached_features(
    model: Any,
    examples: Mapping[str, Examples],
    train_set: Any,
    val_set: Any,
    training: TrainingParams,
    classes: int,
    weights: Mapping[int, float] | None,
    alpha: bool,
    augment: Any,
    callbacks: list[Any],
) -> None:
    """The frozen base is a fixed function: run it once per image (plus `augmented_views`
    augmented copies of each training image) and train the head on the cached features."""
    extractor = feature_extractor(model)
    plain_train = make_dataset(examples["train"], classes, training, alpha, shuffle=False)
    features = [extractor.predict(plain_train, verbose=0)]
    targets = [np.eye(classes, dtype=np.float32)[examples["train"].labels]]
    for _view in range(training.frozen.augmented_views if augment is not None else 0):
        views = make_dataset(examples["train"], classes, training, alpha, shuffle=False, augment=augment)
        features.append(extractor.predict(views, verbose=0))
        targets.append(targets[0])
    val_features = extractor.predict(val_set, verbose=0)
    val_targets = np.eye(classes, dtype=np.float32)[examples["val"].labels]
    head = head_for(model, training.dropout)
    compile_classifier(head, training.loss, training.frozen.learning_rate)
    head.fit(
        np.concatenate(features),
        np.concatenate(targets),
        batch_size=training.batch_size,
        epochs=training.frozen.epochs,
        validation_data=(val_features, val_targets),
        class_weight=weights,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
