"""Trained classifiers scored on the hand-labelled real photos (eval/real-photos/): per component,
accuracy and macro-F1 against the labels settled by eye, next to the paper's figure.

Each photo goes the way a shopper's upload goes (`pipelines.predict.Tagger`): the detector finds
the garment, the component's region is cut in the crop recipe the classifier was trained on, and
the classifier's best class is its answer. A photo whose garment or region the detector misses
counts as wrong (`coverage` says how many were cut at all). Photos a model was trained or
validated on (the train and val rows of `--labels`) are left out of its score, so a model trained
on the real-photo shop is scored on photos it never saw; the demo shop's models are scored on all.

`--small-cnn` also trains the small CNN of experiments/demo_shop_baseline.py on the component's own
training crops (`--crops`, `--labels`: the same crops and weak labels the classifier had) and
scores it on the same photos, cut the same way.

The hand labels are read here and in tests only, never by the pipeline.

Usage: python -m experiments.real_photos [--models models] [--detector models/detector]
       [--labels data/labels] [--crops data/crops] [--components C ...] [--small-cnn]
       [--root ../shared/real-photos] [--leave-out-under FOLDER ...] [--out metrics/real-photos.json]
Run from the repository root after `seamline train` (or a `dvc exp run`). SEAMLINE_REAL_PHOTOS, where
set, replaces --root's default: a queued `dvc exp run --queue` runs in a copy of the repository under
.dvc/tmp/exps, from which ../shared is not the photos' folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from pipelines.config import DEFAULT_PARAMS_PATH, Params, load_params
from pipelines.evaluate import UNKNOWN, classification_report

EVAL_SET = Path("eval/real-photos")
REAL_PHOTOS = Path("../shared/real-photos")
REAL_PHOTOS_VARIABLE = "SEAMLINE_REAL_PHOTOS"


def default_root() -> Path:
    """The photos' folder when --root is not given: SEAMLINE_REAL_PHOTOS, else ../shared/real-photos."""
    return Path(os.environ.get(REAL_PHOTOS_VARIABLE) or REAL_PHOTOS)


# The paper's fine-tuned test accuracy per component (shared/paper-notes.md); jeans fit's 4-class
# figure (81.59%), its 3-class variant 91.73%.
PAPER = {
    "shirt-collar": 0.9328,
    "shirt-pattern": 0.9810,
    "jeans-fit": 0.8159,
    "jeans-color": 0.9391,
    "jeans-washing": 0.9120,
    "jeans-damage": 0.9296,
}
PAPER_FIT_3_CLASSES = 0.9173
# The splits a model learnt or chose its epoch on; only `test` and unlabelled photos are fair.
SEEN_SPLITS = ("train", "val")


@dataclass(frozen=True)
class HandLabel:
    sha256: str
    component: str
    label: str
    path: str  # under the real-photos folder


def read_hand_labels(folder: Path = EVAL_SET) -> list[HandLabel]:
    """Every settled class label of the evaluation set (hand-labels-*.csv)."""
    files = sorted(folder.glob("hand-labels-*.csv"))
    if not files:
        raise FileNotFoundError(f"{folder}: no hand-labels-*.csv (see eval/real-photos/README.md)")
    rows: list[HandLabel] = []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            rows += [HandLabel(r["sha256"], r["component"], r["label"], r["path"]) for r in csv.DictReader(handle)]
    return rows


def seen_photos(labels: Path | None, component: str) -> set[str]:
    """The photos a component's model was trained or validated on, from the label stage's CSV."""
    path = labels / f"{component}.csv" if labels else None
    if path is None or not path.is_file():
        return set()
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["sha256"] for row in csv.DictReader(handle) if row["split"] in SEEN_SPLITS}


def folder_prefixes(folders: Sequence[str]) -> tuple[str, ...]:
    """Each folder as a path prefix ending in one slash, so `train` never matches `train-extra/`."""
    return tuple(folder.rstrip("/") + "/" for folder in folders)


def folders_matching_nothing(hand: Sequence[HandLabel], folders: Sequence[str]) -> list[str]:
    """The folders no hand-labelled photo is under: a mistyped `--leave-out-under` would
    otherwise leave nothing out and say nothing."""
    return [
        f for f, prefix in zip(folders, folder_prefixes(folders)) if not any(r.path.startswith(prefix) for r in hand)
    ]


def scored_photos(
    hand: Sequence[HandLabel],
    component: str,
    classes: Sequence[str],
    seen: set[str],
    folders_seen: Sequence[str] = (),
) -> tuple[list[HandLabel], dict[str, int]]:
    """The component's hand-labelled photos a model with `classes` is fairly scored on, and how
    many were left out and why (seen in training or validation; under one of `folders_seen`, the
    folders a base was pretrained on; a class the model has not: the 3-class jeans fit has no
    `regular`)."""
    chosen, left_out = [], {"seen_in_training": 0, "in_a_folder_seen": 0, "class_not_in_model": 0}
    prefixes = folder_prefixes(folders_seen)
    for row in hand:
        if row.component != component:
            continue
        if row.sha256 in seen:
            left_out["seen_in_training"] += 1
        elif row.path.startswith(prefixes):
            left_out["in_a_folder_seen"] += 1
        elif row.label not in classes:
            left_out["class_not_in_model"] += 1
        else:
            chosen.append(row)
    return chosen, left_out


def report(truth: Sequence[str], answers: Sequence[str | None], classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 of answers (None: no crop, counted wrong) against the hand labels,
    and the share of photos that got a crop."""
    position = {name: i for i, name in enumerate(classes)}
    true = np.asarray([position[t] for t in truth], dtype=np.int64)
    predicted = np.asarray([UNKNOWN if a is None else position[a] for a in answers], dtype=np.int64)
    scores = classification_report(true, predicted, classes)
    cut = predicted != UNKNOWN
    # `dvc exp show` drops lists (the confusion matrix) but keeps dicts: how often each class was
    # answered is what tells a model that says one class to every photo.
    answered = {name: int((predicted == i).sum()) for i, name in enumerate(classes)}
    return {
        "photos": len(truth),
        "coverage": round(float(cut.mean()), 4) if len(cut) else 0.0,
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "accuracy_on_cut": round(float((true[cut] == predicted[cut]).mean()), 4) if cut.any() else 0.0,
        "per_class": scores["per_class"],
        "confusion_matrix": scores["confusion_matrix"],
        "answered": answered,
    }


# --- the photos through the detector and the crop recipe ----------------------------------------


def detections_of(photos: Sequence[HandLabel], root: Path, detector: Any, cache: Any) -> dict[str, Any]:
    """sha256 → the photo's detections, running the detector only on photos the crop stage's
    kind of cache (`pipelines.crop.DetectionCache`, one per detector version) lacks."""
    from pipelines.detect import chunks, detection_from_record, detection_record, read_rgb

    todo = list({p.sha256: p for p in photos if p.sha256 not in cache.records}.values())
    for batch in chunks(todo, 16):
        images = [read_rgb(root / p.path) for p in batch]
        if any(image is None for image in images):
            missing = [str(root / p.path) for p, image in zip(batch, images) if image is None]
            raise FileNotFoundError(f"cannot read {', '.join(missing)}")
        found = detector.detect(images)
        cache.add([{"sha256": p.sha256, "detections": [detection_record(d) for d in f]} for p, f in zip(batch, found)])
    return {p.sha256: [detection_from_record(r) for r in cache.records[p.sha256]["detections"]] for p in photos}


def cut_crops(
    photos: Sequence[HandLabel], root: Path, detections: Mapping[str, Any], params: Params, component: str, recipe: Any
) -> list[np.ndarray | None]:
    """Each photo's component crop, cut exactly as the pipeline cuts it (None: nothing found)."""
    from pipelines.crop import component_crop
    from pipelines.detect import read_rgb

    crops: list[np.ndarray | None] = []
    for photo in photos:
        image = read_rgb(root / photo.path)
        cut = component_crop(
            image,
            detections[photo.sha256],
            params.components[component],
            recipe,
            params.detector.score_threshold,
            params.detector.categories,
        )
        crops.append(cut.pixels)
    return crops


def answers_of(model: Any, classes: Sequence[str], crops: Sequence[np.ndarray | None], size: int) -> list[str | None]:
    """The model's best class for each crop (None where there is no crop)."""
    from pipelines.predict import resize_crop

    present = [i for i, crop in enumerate(crops) if crop is not None]
    answers: list[str | None] = [None] * len(crops)
    if present:
        batch = np.stack([resize_crop(crops[i], size) for i in present]).astype(np.float32)
        best = np.asarray(model.predict(batch, batch_size=64, verbose=0)).argmax(axis=1)
        for i, index in zip(present, best):
            answers[i] = classes[int(index)]
    return answers


# --- the small CNN on the same crops -------------------------------------------------------------


def small_cnn_answers(
    crops_dir: Path,
    labels: Path,
    component: str,
    classes: Sequence[str],
    size: int,
    eval_crops: Sequence[Any],
    seed: int,
) -> tuple[list[str | None], int]:
    """The baseline's small CNN trained on the component's own train crops (its val split for
    early stopping), answering for the evaluation crops; and how many crops it trained on."""
    import keras

    from experiments.demo_shop_baseline import build_model
    from pipelines.classifier import load_examples
    from pipelines.detect import read_rgb
    from pipelines.predict import resize_crop

    examples = load_examples(crops_dir, labels, component, classes, splits=("train", "val"))

    def pixels(paths: Sequence[str]) -> np.ndarray:
        return np.stack([resize_crop(read_rgb(Path(p)), size) for p in paths]).astype(np.float32)

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = build_model(size, len(classes))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)
    model.fit(
        pixels(examples["train"].paths),
        examples["train"].labels,
        validation_data=(pixels(examples["val"].paths), examples["val"].labels),
        batch_size=32,
        epochs=60,
        callbacks=[stop],
        verbose=0,
    )
    return answers_of(model, classes, eval_crops, size), len(examples["train"])


# --- one component, end to end --------------------------------------------------------------------


def score_component(
    component: str, model_dir: Path, hand: Sequence[HandLabel], args: argparse.Namespace, params: Params, detector: Any
) -> dict[str, Any]:
    import keras

    from pipelines.crop import DetectionCache
    from pipelines.predict import Tagger
    from pipelines.registry import LoadedClassifier

    meta = json.loads((model_dir / "classifier.json").read_text(encoding="utf-8"))
    classes, size = list(meta["classes"]), int(meta["image_size"])
    photos, left_out = scored_photos(
        hand, component, classes, seen_photos(args.labels, component), args.leave_out_under
    )
    if not photos:
        return {"component": component, "photos": 0, "left_out": left_out}
    model = keras.models.load_model(model_dir / "model.keras")
    recipe = Tagger(params, detector, {}).crop_params(component, LoadedClassifier(model, meta, "scored"))
    cache = DetectionCache(args.cache, detector.version)
    crops = cut_crops(photos, args.root, detections_of(photos, args.root, detector, cache), params, component, recipe)
    truth = [p.label for p in photos]
    result: dict[str, Any] = {
        "component": component,
        "classes": classes,
        "crop_mode": recipe.mode,
        "image_size": size,
        "paper": PAPER_FIT_3_CLASSES if component == "jeans-fit" and len(classes) == 3 else PAPER[component],
        "left_out": left_out,
        "model": report(truth, answers_of(model, classes, crops, size), classes),
    }
    if args.small_cnn:
        started = time.perf_counter()
        answers, trained_on = small_cnn_answers(args.crops, args.labels, component, classes, size, crops, args.seed)
        result["small_cnn"] = {
            **report(truth, answers, classes),
            "trained_on": trained_on,
            "train_s": round(time.perf_counter() - started, 1),
        }
    return result


def print_table(results: Sequence[Mapping[str, Any]]) -> None:
    print(f"{'component':<15}{'photos':>7}{'cut':>7}{'acc':>8}{'macro-F1':>10}{'CNN acc':>9}{'CNN F1':>8}{'paper':>8}")
    for r in results:
        if "skipped" in r:
            print(f"{r['component']:<15}  skipped: {r['skipped']}")
            continue
        if not r.get("photos", 1):
            print(f"{r['component']:<15}{0:>7}   no hand-labelled photo it was not trained on")
            continue
        m, cnn = r["model"], r.get("small_cnn")
        small = f"{cnn['accuracy']:>9.3f}{cnn['macro_f1']:>8.3f}" if cnn else f"{'-':>9}{'-':>8}"
        print(
            f"{r['component']:<15}{m['photos']:>7}{m['coverage']:>7.0%}{m['accuracy']:>8.3f}{m['macro_f1']:>10.3f}"
            f"{small}{r['paper']:>8.2%}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of <component>/model.keras")
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument(
        "--labels", type=Path, default=None, help="label stage output: its train/val photos are left out"
    )
    parser.add_argument("--crops", type=Path, default=Path("data/crops"), help="training crops, for --small-cnn")
    parser.add_argument("--components", nargs="+", default=None, help="default: every component with a model")
    parser.add_argument("--eval-set", type=Path, default=EVAL_SET)
    parser.add_argument(
        "--root",
        type=Path,
        default=default_root(),
        help=f"folder the hand-labelled paths are under (default: ${REAL_PHOTOS_VARIABLE}, else {REAL_PHOTOS})",
    )
    parser.add_argument("--cache", type=Path, default=Path("data/real-photos-detections"))
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--small-cnn", action="store_true", help="also train and score the small CNN baseline")
    parser.add_argument(
        "--leave-out-under",
        nargs="+",
        default=[],
        metavar="FOLDER",
        help="also leave out photos under these folders of --root (those a base was pretrained on)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--skip-untrained", action="store_true", help="record a component without a model (or no photos), exit 0"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON (a DVC metric)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.detect import load_detector

    args = parse_args(argv)
    if args.small_cnn and args.labels is None:
        print("--small-cnn needs --labels (the training crops' labels)", file=sys.stderr)
        return 2
    params = load_params(args.params, args.profile)
    names = args.components or [c for c in params.components if (args.models / c / "model.keras").is_file()]
    untrained = [c for c in names if not (args.models / c / "model.keras").is_file()]
    results: list[dict[str, Any]] = [
        {"component": c, "skipped": f"no trained model in {args.models / c}"} for c in untrained
    ]
    if not names or (untrained and not args.skip_untrained):
        print(f"{args.models}: no trained model for {', '.join(untrained or params.components)}", file=sys.stderr)
        return 1
    if not args.root.is_dir():
        # An experiment stage in dvc.yaml: a clone without the photos records why it has no score.
        reason = (
            f"no real photos at {args.root} (eval/real-photos/README.md says where they come from; "
            f"--root or {REAL_PHOTOS_VARIABLE} names another folder)"
        )
        if not args.skip_untrained:
            print(reason, file=sys.stderr)
            return 1
        results = [{"component": c, "skipped": reason} for c in names]
    elif trained := [c for c in names if c not in untrained]:
        hand = read_hand_labels(args.eval_set)
        if unmatched := folders_matching_nothing(hand, args.leave_out_under):
            print(f"--leave-out-under: no hand-labelled photo is under {', '.join(unmatched)}", file=sys.stderr)
            return 2
        detector = load_detector(args.detector)
        results += [score_component(c, args.models / c, hand, args, params, detector) for c in trained]
    print_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({r["component"]: r for r in results}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
