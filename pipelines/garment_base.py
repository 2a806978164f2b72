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
import itertools
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


# The real photos' own slice: what garment a photo shows, the only label they come with.
PHOTO_SLICE = "garment-type"
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class Pack:
    """What the base trains on, decoded: per split, uint8 images and their targets over `slices`;
    and `data`, where every example came from (the card's `data`). Saved as one `.npz`, so the
    training can run where the crops and TensorFlow are not (a GPU machine with JAX)."""

    slices: list[Slice]
    images: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    data: dict[str, Any]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.images[name], self.targets[name]


def photo_examples(folder: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """`folder/<garment type>/<photo>`: the types, and per split (a tenth of each type, chosen by
    the hash of its name, is validation) the photos with their type's index."""
    if not folder.is_dir():
        raise GarmentBaseError(f"{folder}: no such folder of photos")
    kinds = tuple(sorted(entry.name for entry in folder.iterdir() if entry.is_dir()))
    if not kinds:
        raise GarmentBaseError(f"{folder}: no garment-type folders of photos in it")
    found: dict[str, list[tuple[Path, int]]] = {split: [] for split in SPLITS}
    for index, kind in enumerate(kinds):
        for photo in sorted((folder / kind).iterdir()):
            if photo.suffix.lower() in PHOTO_SUFFIXES:
                tenth = int(hashlib.sha256(photo.name.encode()).hexdigest(), 16) % 10
                found["val" if tenth == 0 else "train"].append((photo, index))
    return kinds, found


def padded(targets: np.ndarray, width: int) -> np.ndarray:
    return np.pad(targets, ((0, 0), (0, width - targets.shape[1])))


def pack_data(
    params: Params,
    crops: Sequence[Path],
    labels: Path,
    photos: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Pack:
    """Decode every labelled crop of each crop folder (a shop cut two ways teaches the base both),
    and the real photos by garment type if a folder is given, at the base's size."""
    size = params.garment_base.image_size
    slices = slices_of(params)
    kinds, by_split = photo_examples(photos) if photos is not None else ((), {})
    if kinds:
        slices.append(Slice(PHOTO_SLICE, slices[-1].stop, kinds))
    width = slices[-1].stop
    images: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    targets: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    sources: list[dict[str, Any]] = []
    for folder in crops:
        sets = multitask_sets(params, folder, labels)
        for split, chunk in sets.items():
            images[split].append(decode_images(chunk, size))
            targets[split].append(padded(chunk.targets, width))
        sources.append({"crops": str(folder), "examples": {split: len(chunk) for split, chunk in sets.items()}})
        progress(f"garment base: {folder}: {sum(len(chunk) for chunk in sets.values())} crops decoded")
    if kinds:
        for split, chosen in by_split.items():
            onehot = np.zeros((len(chosen), width), np.float32)
            onehot[np.arange(len(chosen)), np.array([slices[-1].start + k for _, k in chosen], dtype=int)] = 1.0
            images[split].append(decode_photos([photo for photo, _ in chosen], size))
            targets[split].append(onehot)
        counted = {split: len(chosen) for split, chosen in by_split.items()}
        sources.append({"photos": str(photos), "classes": list(kinds), "examples": counted})
        progress(f"garment base: {photos}: {sum(len(c) for c in by_split.values())} photos decoded")
    joined_targets = {split: np.concatenate(parts) for split, parts in targets.items()}
    data = {
        "shop": {
            "kind": "Seamline demo shop (synthetic, crawlers/demo_shop)",
            "seed": params.crawl.demo_shop.seed,
            "products": params.crawl.demo_shop.products,
            "difficulty": params.crawl.demo_shop.difficulty,
        },
        "labels": "the label stage's weak labels (titles and breadcrumbs), never the shop's truth",
        "crops": params.crop.mode,
        "sources": sources,
        "examples": labelled_counts(slices, joined_targets),
    }
    return Pack(slices, {split: np.concatenate(parts) for split, parts in images.items()}, joined_targets, data)


def encode_jpeg(images: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Each image as a JPEG with full-resolution colour (4:4:4), in one byte buffer with offsets."""
    import cv2

    flags = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    encoded = [cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), flags)[1] for image in images]
    offsets = np.cumsum([0, *(len(one) for one in encoded)])
    return (np.concatenate(encoded) if encoded else np.zeros(0, np.uint8)), offsets


def decode_jpeg(buffer: np.ndarray, offsets: np.ndarray, side: int) -> np.ndarray:
    import cv2

    images = [cv2.imdecode(buffer[a:b], cv2.IMREAD_COLOR)[..., ::-1] for a, b in itertools.pairwise(offsets)]
    return np.stack(images) if images else np.zeros((0, side, side, 3), np.uint8)


def save_pack(
    pack: Pack, path: Path, jpeg_quality: int | None = None, splits: Sequence[str] = SPLITS, command: str = ""
) -> None:
    """The pack as one `.npz`: the pixels as they are, or as JPEGs of `jpeg_quality` (a quarter
    of the size at 95, each pixel within a few levels) where the pack must travel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "slices": [[piece.component, piece.start, list(piece.classes)] for piece in pack.slices],
        "data": {
            **pack.data,
            "examples": {split: n for split, n in pack.data["examples"].items() if split in splits},
            "pixels": f"jpeg {jpeg_quality} (4:4:4)" if jpeg_quality else "as decoded",
            "packed_by": command,
        },
        "splits": list(splits),
    }
    arrays: dict[str, np.ndarray] = {}
    for split in splits:
        images, targets = pack.split(split)
        arrays[f"targets_{split}"] = targets
        if jpeg_quality:
            arrays[f"jpeg_{split}"], arrays[f"offsets_{split}"] = encode_jpeg(images, jpeg_quality)
        else:
            arrays[f"images_{split}"] = images
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, meta=np.array(json.dumps(meta)), **arrays)
    partial.replace(path)


def load_pack(path: Path, side: int) -> Pack:
    """A pack `save_pack` wrote; a split it left out is empty."""
    try:
        with np.load(path) as store:
            meta = json.loads(str(store["meta"]))
            images, targets = {}, {}
            for split in SPLITS:
                if split not in meta["splits"]:
                    images[split] = np.zeros((0, side, side, 3), np.uint8)
                    targets[split] = np.zeros((0, meta["slices"][-1][1] + len(meta["slices"][-1][2])), np.float32)
                    continue
                targets[split] = store[f"targets_{split}"]
                if f"jpeg_{split}" in store:
                    images[split] = decode_jpeg(store[f"jpeg_{split}"], store[f"offsets_{split}"], side)
                else:
                    images[split] = store[f"images_{split}"]
    except (OSError, KeyError, ValueError) as error:
        raise GarmentBaseError(f"{path}: not a garment-base pack ({error})") from error
    if any(image.shape[1:] != (side, side, 3) for image in images.values() if len(image)):
        raise GarmentBaseError(f"{path}: its images are not {side} px (params garment_base.image_size)")
    slices = [Slice(name, start, tuple(classes)) for name, start, classes in meta["slices"]]
    return Pack(slices, images, targets, meta["data"])


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


def decode_images(examples: MultiTaskSet, image_size: int) -> np.ndarray:
    """Every crop of a set as `image_size`² uint8 RGB, decoded by the classifiers' own
    `decode_crop` (TensorFlow), so the base sees the pixels a classifier will."""
    import tensorflow as tf

    if not len(examples):
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    data = tf.data.Dataset.from_tensor_slices(examples.paths).map(
        lambda path: decode_crop(path, image_size, alpha=False), num_parallel_calls=tf.data.AUTOTUNE
    )
    chunks = [batch.numpy() for batch in data.batch(256)]
    return np.clip(np.rint(np.concatenate(chunks)), 0, 255).astype(np.uint8)


def decode_photos(paths: Sequence[Path], image_size: int) -> np.ndarray:
    """Whole photos (JPEG or PNG) as `image_size`² uint8 RGB, resized as a crop is."""
    import tensorflow as tf

    from pipelines.classifier import classifier_pixels

    def decode(path: Path) -> Any:
        return tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)

    images = [classifier_pixels(decode(path), image_size) for path in paths]
    if not images:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    return np.clip(np.rint(np.stack([image.numpy() for image in images])), 0, 255).astype(np.uint8)


def batches(images: np.ndarray, targets: np.ndarray, batch_size: int, train: bool, seed: int, shift: float) -> Any:
    """A `keras.utils.PyDataset` over in-memory images: shuffled each epoch, flipped and shifted at
    random when training. Plain NumPy, so the same code feeds Keras on TensorFlow, JAX or PyTorch
    (a GPU machine need not have TensorFlow)."""
    import keras

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(images))
            if train:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return -(-len(images) // batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            chosen = self.order[index * batch_size : (index + 1) * batch_size]
            batch = augment(images[chosen], self.rng, shift) if train else images[chosen]
            return batch.astype(np.float32), targets[chosen]

        def on_epoch_end(self) -> None:
            if train:
                self.rng.shuffle(self.order)

    return _Batches()


def augment(batch: np.ndarray, rng: np.random.Generator, shift: float) -> np.ndarray:
    """Left-right flips, and a shift of up to `shift` of the side with the edge pixels repeated.
    Nothing else: colour, shade and the few pixels of a rip are the cues, so they stay as they are."""
    flipped = rng.random(len(batch)) < 0.5
    batch = np.where(flipped[:, None, None, None], batch[:, :, ::-1], batch)
    most = int(round(shift * batch.shape[1]))
    if most == 0:
        return batch
    padded = np.pad(batch, ((0, 0), (most, most), (most, most), (0, 0)), mode="edge")
    side = batch.shape[1]
    offsets = rng.integers(0, 2 * most + 1, size=(len(batch), 2))
    return np.stack([padded[i, y : y + side, x : x + side] for i, (y, x) in enumerate(offsets)])


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
    base_params: GarmentBaseParams,
    pack: Pack,
    on_epoch: Callable[[int, Mapping[str, float]], None] = lambda epoch, logs: None,
    minutes: float | None = None,
) -> tuple[Any, dict[str, dict[str, float | None]]]:
    """Train on the train split, keep the epoch with the lowest validation loss; returns the model
    and the per-slice accuracy of each split. Runs on whichever Keras backend is set. `minutes`:
    stop after the epoch that passes it (a lent GPU's time is counted)."""
    import keras

    keras.utils.set_random_seed(base_params.seed)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(base_params.precision)
    try:
        model = build_multitask(base_params, pack.slices[-1].stop)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    train, val = pack.split("train"), pack.split("val")
    size, seed, shift = base_params.batch_size, base_params.seed, base_params.shift
    steps = -(-len(train[0]) // size) * base_params.epochs
    schedule = keras.optimizers.schedules.CosineDecay(base_params.learning_rate, decay_steps=max(steps, 1))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=sliced_cross_entropy(pack.slices))

    started = time.perf_counter()

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            on_epoch(epoch + 1, dict(logs or {}))
            if minutes is not None and time.perf_counter() - started > minutes * 60:
                self.model.stop_training = True

    model.fit(
        batches(*train, size, train=True, seed=seed, shift=shift),
        validation_data=batches(*val, size, train=False, seed=seed, shift=0.0),
        epochs=base_params.epochs,
        callbacks=[
            # Never stops (patience = every epoch): it only hands back the best validation epoch's weights.
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=base_params.epochs, restore_best_weights=True),
            _Report(),
        ],
        verbose=0,
    )
    scores = {}
    for split in SPLITS:
        images, targets = pack.split(split)
        if len(images):
            logits = model.predict(batches(images, targets, size, train=False, seed=seed, shift=0.0), verbose=0)
            scores[split] = slice_accuracy(pack.slices, targets, np.asarray(logits, np.float32))
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


def labelled_counts(slices: Sequence[Slice], targets: Mapping[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Per split, how many examples carry each slice's label."""
    return {
        split: {piece.component: int((chunk[:, piece.start : piece.stop].sum(axis=1) > 0).sum()) for piece in slices}
        for split, chunk in targets.items()
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
    params: Params,
    pack: Pack,
    out: Path,
    progress: Callable[[str], None] = print,
    minutes: float | None = None,
    command: str = "make base",
) -> dict[str, Any]:
    """Train, save the backbone in float16, write the card; returns the card."""
    import keras

    base_params = params.garment_base
    counts = pack.data["examples"]
    per_slice = ", ".join(f"{c} {n}" for c, n in counts["train"].items())
    progress(
        f"garment base: {len(pack.images['train'])} training images ({per_slice}), {base_params.backbone} at "
        f"{base_params.image_size} px, {base_params.epochs} epochs, Keras on {keras.backend.backend()}"
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

    model, scores = train_garment_base(base_params, pack, on_epoch, minutes)
    save_half(model.get_layer("base"), out)
    card = {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "dtype": "float16",
        "backbone": base_params.backbone,
        "image_size": base_params.image_size,
        "recipe": {
            "command": command,
            "commit": source_commit(),
            "profile": params.profile,
            "params": base_params.model_dump(mode="json"),
            "keras_backend": keras.backend.backend(),
            "epochs_run": len(history),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "data": pack.data,
        "accuracy_by_split": scores,
        "history": history,
    }
    card_path(out).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card
