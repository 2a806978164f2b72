"""The garment base: a DenseNet121 Seamline pretrains once, supervised on every component at once,
and ships (weights/), so each component's classifier starts from a base that already knows what a
collar, a check or a rip looks like instead of learning it from zero on a CPU.

One shared backbone, one softmax slice per component over the concatenated classes. A crop that
several components label (the four jeans components cut the same jeans box) is one example with a
target in each of their slices; a slice without a label adds nothing to the loss. Only the
backbone is kept: the slices are thrown away, as SimCLR's projection head is.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from pipelines.classifier import SPLITS, decode_crop, input_scaling
from pipelines.config import GarmentBaseParams, Params
from pipelines.crop_set import index_path as crop_index_path


class GarmentBaseError(RuntimeError):
    """Why the base cannot be trained (missing crops or labels, an empty split), in one line."""


@dataclass(frozen=True)
class Slice:
    """One component's classes within the concatenated targets."""

    component: str
    start: int
    classes: tuple[str, ...]

    @property
    def stop(self) -> int:
        return self.start + len(self.classes)


@dataclass(frozen=True)
class MultiTaskSet:
    """One split: a crop file per example and its targets, one-hot in each labelled slice."""

    paths: list[str]
    targets: np.ndarray  # (examples, total classes), float32

    def __len__(self) -> int:
        return len(self.paths)


def slices_of(params: Params) -> list[Slice]:
    """Every component's slice, in params order."""
    slices, start = [], 0
    for name, component in params.components.items():
        slices.append(Slice(name, start, tuple(component.classes)))
        start += len(component.classes)
    return slices


def crop_key(params: Params, component: str) -> str:
    """Components whose crops are cut alike (same region and recipe) share one crop per image."""
    recipe = params.crop_for(component).model_dump(mode="json")
    return f"{params.components[component].crop_region}|{sorted(recipe.items())}"


def multitask_sets(params: Params, crops: Path, labels: Path) -> dict[str, MultiTaskSet]:
    """Per split, one example per image and crop recipe, with every component's label it has."""
    slices = slices_of(params)
    width = slices[-1].stop
    if alpha := [name for name in params.components if params.crop_for(name).mode == "mask_alpha"]:
        # The base reads RGB; a mask_alpha classifier composites on black, so the two would see other pixels.
        raise GarmentBaseError(f"{', '.join(alpha)}: mask_alpha crops are not a base's input (use bbox or mask)")
    examples: dict[tuple[str, str], dict[str, Any]] = {}
    for piece in slices:
        labels_path, index = labels / f"{piece.component}.csv", crop_index_path(crops, piece.component)
        if not labels_path.is_file() or not index.is_file():
            continue  # a component with no labels this run teaches the base nothing, and that is fine
        with labels_path.open(newline="", encoding="utf-8") as handle:
            label_of = {row["sha256"]: row["label"] for row in csv.DictReader(handle)}
        position = {name: i for i, name in enumerate(piece.classes)}
        key = crop_key(params, piece.component)
        with index.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                label = label_of.get(row["sha256"])
                if row["component"] != piece.component or not row["file"] or label not in position:
                    continue
                example = examples.setdefault(
                    (key, row["sha256"]),
                    {"path": str(crops / row["file"]), "split": row["split"], "target": np.zeros(width, np.float32)},
                )
                example["target"][piece.start + position[label]] = 1.0
    found: dict[str, MultiTaskSet] = {}
    for split in SPLITS:
        chosen = [e for e in examples.values() if e["split"] == split]
        targets = np.stack([e["target"] for e in chosen]) if chosen else np.zeros((0, width), np.float32)
        found[split] = MultiTaskSet([e["path"] for e in chosen], targets)
    for split in ("train", "val"):
        if not len(found[split]):
            raise GarmentBaseError(f"no labelled crops in the {split} split under {crops} (run label and crop first)")
    return found


def sliced_cross_entropy(slices: Sequence[Slice]) -> Callable[[Any, Any], Any]:
    """The sum over slices of each slice's softmax cross-entropy; an all-zero slice target adds 0."""
    import keras

    def loss(y_true: Any, y_pred: Any) -> Any:
        total = 0.0
        for piece in slices:
            logits = y_pred[:, piece.start : piece.stop]
            total = total - keras.ops.sum(y_true[:, piece.start : piece.stop] * keras.ops.log_softmax(logits), axis=-1)
        return total

    return loss


def build_multitask(base_params: GarmentBaseParams, width: int) -> Any:
    """pixels → the classifier's own scaling and base (named alike, so the base's weights load
    into a classifier as they are) → pooled features → logits over every slice."""
    import keras

    from pipelines.classifier import _APPLICATIONS, _INPUT_MODE

    shape = (base_params.image_size, base_params.image_size, 3)
    base = _APPLICATIONS[base_params.backbone](include_top=False, weights=None, input_shape=shape)
    base.name = "base"
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = base_params.batchnorm_momentum
    pixels = keras.Input(shape=shape, name="pixels")
    features = base(input_scaling(_INPUT_MODE[base_params.backbone])(pixels))
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    logits = keras.layers.Dense(width, name="slices", dtype="float32")(pooled)
    return keras.Model(pixels, logits, name="garment_base")


def dataset(examples: MultiTaskSet, base_params: GarmentBaseParams, shuffle: bool) -> Any:
    """tf.data: decode → cache → (shuffle, flip) → batch → prefetch. Flips only: colour, shade and
    the few pixels of a rip are the cues, so nothing else is varied."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((examples.paths, examples.targets))
    data = data.map(
        lambda path, target: (decode_crop(path, base_params.image_size, alpha=False), target),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if shuffle:
        data = data.shuffle(len(examples), seed=base_params.seed, reshuffle_each_iteration=True)
        data = data.map(lambda image, target: (tf.image.random_flip_left_right(image), target))
    return data.batch(base_params.batch_size).prefetch(tf.data.AUTOTUNE)


def slice_accuracy(slices: Sequence[Slice], targets: np.ndarray, logits: np.ndarray) -> dict[str, float | None]:
    """Per component, the share of its labelled examples whose slice argmax is the label."""
    scores: dict[str, float | None] = {}
    for piece in slices:
        truth = targets[:, piece.start : piece.stop]
        labelled = truth.sum(axis=1) > 0
        if not labelled.any():
            scores[piece.component] = None
            continue
        right = truth[labelled].argmax(axis=1) == logits[labelled, piece.start : piece.stop].argmax(axis=1)
        scores[piece.component] = round(float(right.mean()), 4)
    return scores


def train_garment_base(
    params: Params,
    sets: Mapping[str, MultiTaskSet],
    on_epoch: Callable[[int, Mapping[str, float]], None] = lambda epoch, logs: None,
) -> tuple[Any, dict[str, dict[str, float | None]]]:
    """Train on the train split, keep the epoch with the lowest validation loss; returns the model
    and the per-component accuracy of each split."""
    import keras

    base_params = params.garment_base
    keras.utils.set_random_seed(base_params.seed)
    slices = slices_of(params)
    model = build_multitask(base_params, slices[-1].stop)
    steps = -(-len(sets["train"]) // base_params.batch_size) * base_params.epochs
    schedule = keras.optimizers.schedules.CosineDecay(base_params.learning_rate, decay_steps=max(steps, 1))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=sliced_cross_entropy(slices))

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            on_epoch(epoch + 1, dict(logs or {}))

    model.fit(
        dataset(sets["train"], base_params, shuffle=True),
        validation_data=dataset(sets["val"], base_params, shuffle=False),
        epochs=base_params.epochs,
        callbacks=[
            # Never stops (patience = every epoch): it only hands back the best validation epoch's weights.
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=base_params.epochs, restore_best_weights=True),
            _Report(),
        ],
        verbose=0,
    )
    scores = {
        split: slice_accuracy(slices, chunk.targets, model.predict(dataset(chunk, base_params, False), verbose=0))
        for split, chunk in sets.items()
        if len(chunk)
    }
    return model, scores


def save_half(base: Any, path: Path) -> None:
    """The base's weights in float16, half the file; a classifier loads them into float32."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    full = path.with_name(f"{path.name}.float32.weights.h5")  # Keras insists on the suffix
    base.save_weights(full)
    partial = path.with_name(path.name + ".partial")

    def copy(source: Any, target: Any) -> None:
        target.attrs.update(dict(source.attrs))
        for name, node in source.items():
            if isinstance(node, h5py.Group):
                copy(node, target.create_group(name))
            else:
                values = node[()]
                if isinstance(values, np.ndarray) and values.dtype == np.float32:
                    values = values.astype(np.float16)
                target.create_dataset(name, data=values)
                target[name].attrs.update(dict(node.attrs))

    with h5py.File(full, "r") as source, h5py.File(partial, "w") as target:
        copy(source, target)
    full.unlink()
    partial.replace(path)


# --- the recipe's run and its card -------------------------------------------------------------


def card_path(weights: Path) -> Path:
    """`x.weights.h5` → `x.json`: the card beside the weights."""
    return weights.with_name(weights.name.removesuffix(".weights.h5") + ".json")


def labelled_counts(params: Params, sets: Mapping[str, MultiTaskSet]) -> dict[str, dict[str, int]]:
    """Per split, how many examples carry each component's label."""
    return {
        split: {
            piece.component: int((chunk.targets[:, piece.start : piece.stop].sum(axis=1) > 0).sum())
            for piece in slices_of(params)
        }
        for split, chunk in sets.items()
    }


def source_commit() -> str | None:
    """The commit the recipe ran at, `+dirty` when the checkout had changes; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
        changes = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=False)
    except OSError:  # no git on this machine
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if changes.stdout.strip() else "")


def build_base(
    params: Params, crops: Path, labels: Path, out: Path, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train, save the backbone in float16, write the card; returns the card."""
    base_params = params.garment_base
    sets = multitask_sets(params, crops, labels)
    counts = labelled_counts(params, sets)
    per_component = ", ".join(f"{c} {n}" for c, n in counts["train"].items())
    progress(
        f"garment base: {len(sets['train'])} training crops ({per_component}), "
        f"{base_params.backbone} at {base_params.image_size} px, {base_params.epochs} epochs"
    )
    history: list[dict[str, float]] = []
    started = time.perf_counter()

    def on_epoch(epoch: int, logs: Mapping[str, float]) -> None:
        elapsed = time.perf_counter() - started
        history.append({"epoch": epoch, **{k: round(float(v), 4) for k, v in logs.items()}})
        progress(
            f"garment base: epoch {epoch}/{base_params.epochs}  loss {logs.get('loss', float('nan')):.3f}  "
            f"val_loss {logs.get('val_loss', float('nan')):.3f}  ({elapsed / 60:.1f} min)"
        )

    model, scores = train_garment_base(params, sets, on_epoch)
    save_half(model.get_layer("base"), out)
    card = {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "dtype": "float16",
        "backbone": base_params.backbone,
        "image_size": base_params.image_size,
        "recipe": {
            "command": "make base",
            "commit": source_commit(),
            "profile": params.profile,
            "params": base_params.model_dump(mode="json"),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "data": {
            "shop": {
                "kind": "Seamline demo shop (synthetic, crawlers/demo_shop)",
                "seed": params.crawl.demo_shop.seed,
                "products": params.crawl.demo_shop.products,
                "difficulty": params.crawl.demo_shop.difficulty,
            },
            "labels": "the label stage's weak labels (titles and breadcrumbs), never the shop's truth",
            "crops": params.crop.mode,
            "examples": counts,
        },
        "accuracy_by_split": scores,
        "history": history,
    }
    card_path(out).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
