"""Baseline per fashion component: test accuracy (and macro-F1) of a small CNN trained for a few
minutes on square crops of synthetic garments from the demo-shop renderer.

Every component (shirt-collar, shirt-pattern, jeans-fit/color/washing/damage) gets its own
from-scratch CNN on crops of its Labelme region, split 70/15/15 into train/val/test. Later
models must beat these numbers; a component near chance means the renderer's cue is too weak.
Results are printed, never asserted.

With --models (a folder of trained <component>/ classifiers, e.g. `models` after `make demo`),
each component's pipeline classifier is also scored on the very same test garments: their
front views re-rendered and cut with the classifier's own crop recipe (mode and margin from its
classifier.json, size from params) around the exact region, so the two models meet on one test
set — though the pipeline's was trained on detector crops and weak labels, the small CNN here on
exact regions and true labels.

Usage: python experiments/demo_shop_baseline.py [--images-per-item 1200] [--size 80]
       [--difficulty medium] [--budget-s 90] [--seed 0] [--json PATH] [--models models --params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One fresh model per component retraces predict each time; TF's warning about it is noise here.
logging.getLogger("tensorflow").setLevel(logging.ERROR)

import numpy as np  # noqa: E402

from crawlers.demo_shop.garments import ATTRIBUTES, GarmentSpec, sample_garment  # noqa: E402
from crawlers.demo_shop.render import render_view  # noqa: E402
from pipelines.crop import box_of_points, crop_for_mode, crop_square  # noqa: E402

# component -> (item, attribute, region label, crop margin). The collar box is tight, so a
# wider margin keeps the neckline and placket that tell collar types apart.
COMPONENTS: dict[str, tuple[str, str, str, float]] = {
    "shirt-collar": ("shirt", "collar", "collar", 0.15),
    "shirt-pattern": ("shirt", "pattern", "shirt", 0.05),
    "jeans-fit": ("jeans", "fit", "jeans", 0.05),
    "jeans-color": ("jeans", "color", "jeans", 0.05),
    "jeans-washing": ("jeans", "washing", "jeans", 0.05),
    "jeans-damage": ("jeans", "damage", "jeans", 0.05),
}
# Region crops each item's render yields (one render serves every component of that item).
CROPS: dict[str, dict[str, float]] = {
    item: {region: margin for i, _, region, margin in COMPONENTS.values() if i == item} for item in ("shirt", "jeans")
}


@dataclass
class Result:
    component: str
    classes: int
    n_train: int
    n_val: int
    n_test: int
    epochs: int
    train_s: float
    val_acc: float
    test_acc: float
    test_f1: float
    chance: float
    pipeline_acc: float | None = None  # the pipeline's classifier on the same test garments (--models)
    pipeline_f1: float | None = None


def render_crops(job: tuple[GarmentSpec, str, int]) -> dict[str, np.ndarray]:
    """Worker: render the front view and return only its region crops, so the full 360x480
    images never cross the process boundary."""
    spec, difficulty, size = job
    image = render_view(spec, "front", difficulty)
    crops = {}
    for region in image.regions:
        margin = CROPS[spec.item].get(region.label)
        if margin is not None:
            crops[region.label] = crop_square(image.pixels, box_of_points(region.points), size, margin=margin)
    return crops


def render_for_classifier(job: tuple[GarmentSpec, str, str, str, int, float]) -> np.ndarray | None:
    """Worker: one garment's front view cut the way a pipeline classifier was trained to see it
    (RGB, as the crop stage decodes photos; the renderer draws BGR), or None without the region."""
    spec, difficulty, region_label, mode, size, margin = job
    image = render_view(spec, "front", difficulty)
    region = next((r for r in image.regions if r.label == region_label), None)
    if region is None:
        return None
    import cv2

    mask = np.zeros(image.pixels.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(region.points).astype(np.int32)], 1)
    rgb = np.ascontiguousarray(image.pixels[..., ::-1])
    return crop_for_mode(
        rgb, "bbox" if mode == "annotation" else mode, size, box_of_points(region.points), mask, margin
    )


def score_pipeline_classifier(
    name: str, specs: list[GarmentSpec], truth: np.ndarray, folder: Path, crop_size: int, difficulty: str
) -> tuple[float, float]:
    """Accuracy and macro-F1 of the trained classifier in `folder` on these garments' front views."""
    import keras

    from pipelines.classifier import classifier_pixels

    meta = json.loads((folder / "classifier.json").read_text(encoding="utf-8"))
    classes = list(ATTRIBUTES[COMPONENTS[name][0]][COMPONENTS[name][1]])
    if set(meta["classes"]) != set(classes):
        raise SystemExit(f"{folder}: classes {meta['classes']} are not the shop's {classes}")
    jobs = [
        (spec, difficulty, COMPONENTS[name][2], meta["crop_mode"], crop_size, float(meta["crop_margin"]))
        for spec in specs
    ]
    with Pool(os.cpu_count()) as pool:
        crops = pool.map(render_for_classifier, jobs, chunksize=8)
    pixels = np.stack([np.asarray(classifier_pixels(c, int(meta["image_size"]))) for c in crops if c is not None])
    model = keras.models.load_model(folder / "model.keras")
    predicted = model.predict(pixels, batch_size=64, verbose=0).argmax(axis=1)
    # The model's class order is its own; compare by name.
    predicted = np.array([classes.index(meta["classes"][k]) for k in predicted])
    truth = truth[[c is not None for c in crops]]
    return float(np.mean(predicted == truth)), macro_f1(truth, predicted)


def render_all(specs: list[GarmentSpec], difficulty: str, size: int) -> tuple[list[dict[str, np.ndarray]], float]:
    """Crops of every spec (in order) and the wall-clock seconds it took."""
    start = time.perf_counter()
    out: list[dict[str, np.ndarray]] = []
    step = max(1, len(specs) // 10)
    with Pool(os.cpu_count()) as pool:
        for crops in pool.imap(render_crops, [(s, difficulty, size) for s in specs], chunksize=8):
            out.append(crops)
            if len(out) % step == 0 or len(out) == len(specs):
                elapsed = time.perf_counter() - start
                print(f"  rendered {len(out)}/{len(specs)} ({len(out) / elapsed:.1f} img/s)", file=sys.stderr)
    return out, time.perf_counter() - start


def split_indices(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled 70/15/15 train/val/test index arrays."""
    order = rng.permutation(n)
    n_train, n_val = int(round(0.7 * n)), int(round(0.15 * n))
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes seen in either labels or predictions."""
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def build_model(size: int, classes: int):
    import keras  # imported late so the render pool forks a process without TensorFlow in it

    inputs = keras.Input((size, size, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    # Momentum 0.9, not Keras' 0.99: with ~26 steps an epoch the default moving statistics lag
    # for ~10 epochs, so inference-mode val_loss stays at chance and EarlyStopping keeps epoch 1.
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def budget_callback(budget_s: float, started: float | None = None):
    """Stops training at the first batch that ends past the wall-clock budget (the epoch it cuts
    short is still validated, so early stopping can keep it). Checking per batch, not per epoch,
    gives a slow model the whole budget too: an epoch-level rule stopped a 60-s epoch after one
    epoch of a 120-s budget.

    The clock starts at `started` (a `time.perf_counter()` reading) or at the first `fit` the
    callback sees; one callback passed to several fits (a frozen phase, then a fine-tune) shares
    one budget between them."""
    import keras

    class Budget(keras.callbacks.Callback):
        start = started

        def on_train_begin(self, logs=None) -> None:
            if self.start is None:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None) -> None:
            if time.perf_counter() - self.start > budget_s:
                self.model.stop_training = True

    return Budget()


def train_component(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    args: argparse.Namespace,
    specs: list[GarmentSpec] | None = None,
) -> Result:
    """The small CNN on one component's crops; with `specs` (one per crop, --models) the pipeline's
    classifier is scored on the same test split."""
    import keras

    train, val, test = split_indices(len(y), np.random.default_rng([args.seed, list(COMPONENTS).index(name)]))
    keras.backend.clear_session()  # drop the previous component's graphs (and retracing warnings)
    keras.utils.set_random_seed(args.seed)
    model = build_model(args.size, classes)
    # Patience is short because the budget allows only a few dozen epochs anyway.
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(
        x[train],
        y[train],
        validation_data=(x[val], y[val]),
        batch_size=32,
        epochs=1000,
        callbacks=[stop, budget_callback(args.budget_s)],
        verbose=0,
    )
    train_s = time.perf_counter() - start
    _, val_acc = model.evaluate(x[val], y[val], batch_size=128, verbose=0)
    pred = np.argmax(model.predict(x[test], batch_size=128, verbose=0), axis=1)
    result = Result(
        component=name,
        classes=classes,
        n_train=len(train),
        n_val=len(val),
        n_test=len(test),
        epochs=len(history.history["loss"]),
        train_s=train_s,
        val_acc=float(val_acc),
        test_acc=float(np.mean(pred == y[test])),
        test_f1=macro_f1(y[test], pred),
        chance=1 / classes,
    )
    if specs is not None:
        result.pipeline_acc, result.pipeline_f1 = score_pipeline_classifier(
            name, [specs[i] for i in test], y[test], args.models / name, args.crop_sizes[name], args.difficulty
        )
    return result


def print_table(results: list[Result]) -> None:
    scored = any(r.pipeline_acc is not None for r in results)
    print(
        f"{'component':<15}{'cls':>4}{'train/val/test':>16}{'epochs':>8}{'train_s':>9}"
        f"{'val_acc':>9}{'test_acc':>9}{'test_F1':>9}{'chance':>8}" + (f"{'pipeline acc / F1':>20}" if scored else "")
    )
    for r in results:
        split = f"{r.n_train}/{r.n_val}/{r.n_test}"
        pipeline = f"{r.pipeline_acc:>12.3f} / {r.pipeline_f1:.3f}" if r.pipeline_acc is not None else ""
        print(
            f"{r.component:<15}{r.classes:>4}{split:>16}{r.epochs:>8}{r.train_s:>9.1f}"
            f"{r.val_acc:>9.3f}{r.test_acc:>9.3f}{r.test_f1:>9.3f}{r.chance:>8.3f}{pipeline}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images-per-item", type=int, default=1200, help="garments rendered per item (shirt, jeans)")
    parser.add_argument("--size", type=int, default=80, choices=range(64, 97), metavar="64..96", help="crop side in px")
    parser.add_argument(
        "--difficulty", default="medium", choices=("easy", "medium", "hard"), help="renderer difficulty"
    )
    parser.add_argument("--budget-s", type=float, default=90.0, help="training wall-clock budget per component")
    parser.add_argument("--seed", type=int, default=0, help="seed for garments, splits and weights")
    parser.add_argument("--json", metavar="PATH", help="also write the results here as JSON")
    parser.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="also score the pipeline's trained classifiers (DIR/<component>/) on the same test garments",
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="with --models: the crop size comes from here"
    )
    parser.add_argument("--profile", help="with --models: the params profile (default: the file's own)")
    parser.add_argument("--components", nargs="+", choices=list(COMPONENTS), default=list(COMPONENTS))
    args = parser.parse_args()
    args.crop_sizes = {}
    if args.models is not None:
        from pipelines.config import load_params

        missing = [c for c in args.components if not (args.models / c / "classifier.json").is_file()]
        if missing:
            parser.error(
                f"no trained classifier for {', '.join(missing)} under {args.models} (run `seamline train` first)"
            )
        params = load_params(args.params, args.profile)
        args.crop_sizes = {c: params.crop_for(c).size for c in args.components}
    return args


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    # Uniform labels per attribute keep each component's classes roughly balanced.
    specs = [sample_garment(rng, item) for item in ATTRIBUTES for _ in range(args.images_per_item)]
    print(f"rendering {len(specs)} garments at {args.difficulty} on {os.cpu_count()} workers", file=sys.stderr)
    crops, render_s = render_all(specs, args.difficulty, args.size)

    results: list[Result] = []
    for name, (item, attribute, region, _) in COMPONENTS.items():
        if name not in args.components:
            continue
        classes = ATTRIBUTES[item][attribute]
        pairs = [
            (c[region], classes.index(s.labels[attribute]), s)
            for s, c in zip(specs, crops)
            if s.item == item and region in c
        ]
        x = np.stack([p[0] for p in pairs])
        y = np.array([p[1] for p in pairs])
        print(f"training {name} on {len(y)} crops (budget {args.budget_s:.0f}s)", file=sys.stderr)
        results.append(train_component(name, x, y, len(classes), args, [p[2] for p in pairs] if args.models else None))
        r = results[-1]
        against = f"; pipeline classifier {r.pipeline_acc:.3f}" if r.pipeline_acc is not None else ""
        print(
            f"  {name}: {r.epochs} epochs, test acc {r.test_acc:.3f} (chance {r.chance:.3f}){against}", file=sys.stderr
        )

    print(f"\ndifficulty={args.difficulty} size={args.size} images/item={args.images_per_item} seed={args.seed}")
    print(f"render: {len(specs)} images in {render_s:.1f}s ({len(specs) / render_s:.1f} images/s)\n")
    print_table(results)
    if args.json:
        payload = {
            "args": vars(args),
            "render_s": render_s,
            "images": len(specs),
            "results": [asdict(r) for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2, default=str)


if __name__ == "__main__":
    main()
