"""Trained classifiers scored on their test split twice: against the weak labels they were
trained and evaluated on, and against the demo shop's ground truth. The weak labels are
96.9–97.9% precise, so a test score on them is capped near that; the score on the truth is the
one to compare with `experiments/demo_shop_baseline.py`, whose small CNNs train and test on true
labels (and front views only: the truth is also split by the photo's view). Ground truth is read
here, never by the pipeline.

Usage: python experiments/truth_scores.py [SHOP_DIR (default data/demo_shop)] [--models models --crops data/crops
       --labels data/labels --manifests data/raw --components shirt-pattern jeans-color]
Run after `make demo` (or `seamline train`), from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from crawlers.demo_shop.truth import ATTRIBUTE, image_labels
from pipelines.evaluate import classification_report


def score(
    model_dir: Path, crops: Path, labels: Path, image_truth: dict[str, dict[str, str]], component: str
) -> dict[str, object]:
    """Test-split predictions of one trained component against weak labels and the truth."""
    import keras

    from pipelines.classifier import crop_probabilities, load_examples

    meta = json.loads((model_dir / "classifier.json").read_text(encoding="utf-8"))
    classes = list(meta["classes"])
    test = load_examples(crops, labels, component, classes, splits=("test",))["test"]
    model = keras.models.load_model(model_dir / "model.keras")
    predicted = crop_probabilities(
        model, test.paths, int(meta["image_size"]), meta["crop_mode"] == "mask_alpha"
    ).argmax(axis=1)
    attribute = ATTRIBUTE[component]
    truths = [image_truth[Path(p).stem].get(attribute) for p in test.paths]
    if unknown := sorted({str(t) for t in truths if t not in classes}):
        raise ValueError(f"{component}: the shop's truth has classes the model does not ({', '.join(unknown)})")
    true = np.asarray([classes.index(t) for t in truths])
    on_weak = classification_report(test.labels, predicted, classes)
    on_truth = classification_report(true, predicted, classes)
    # The baseline's small CNNs see front views only; the crawl also has back ("alt") and close-up
    # ("detail") photos, so the truth is split by view for a like-for-like comparison.
    views = np.asarray([image_truth[Path(p).stem]["view"] for p in test.paths])
    by_view = {
        view: (int((views == view).sum()), float((predicted == true)[views == view].mean()))
        for view in sorted(set(views))
    }
    return {
        "component": component,
        "test_crops": len(test),
        "wrong_weak_labels": int((true != test.labels).sum()),
        "weak": (on_weak["accuracy"], on_weak["macro_f1"]),
        "truth": (on_truth["accuracy"], on_truth["macro_f1"]),
        "truth_by_view": by_view,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "shop",
        type=Path,
        nargs="?",
        default=Path("data/demo_shop"),
        help="the demo shop the crawl came from (default: make demo's, data/demo_shop)",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="folder of <component>/model.keras")
    parser.add_argument("--crops", type=Path, default=Path("data/crops"))
    parser.add_argument("--labels", type=Path, default=Path("data/labels"))
    parser.add_argument("--manifests", type=Path, default=Path("data/raw"))
    parser.add_argument("--components", nargs="+", default=list(ATTRIBUTE), choices=list(ATTRIBUTE))
    args = parser.parse_args()
    missing = [c for c in args.components if not (args.models / c / "model.keras").is_file()]
    if missing:
        parser.error(f"no trained model for {', '.join(missing)} under {args.models} (run `seamline train` first)")
    if not (args.shop / "ground_truth.jsonl").is_file():
        parser.error(f"{args.shop}: not a built demo shop (no ground_truth.jsonl)")
    image_truth = image_labels(args.shop, args.manifests)
    print(
        f"{'component':<14} {'test crops':>10} {'wrong labels':>12} {'weak labels (acc / F1)':>23} "
        f"{'truth (acc / F1)':>17}"
        "  truth acc by view (crops)"
    )
    from pipelines.classifier import TrainingError

    for component in args.components:
        try:
            row = score(args.models / component, args.crops, args.labels, image_truth, component)
        except (TrainingError, ValueError) as error:
            parser.exit(2, f"truth_scores: {error}\n")
        except KeyError as error:
            parser.exit(
                2,
                f"truth_scores: test image {error} is not in the manifests under {args.manifests} "
                f"(crops and manifests must come from the same crawl of {args.shop})\n",
            )
        weak, truth = row["weak"], row["truth"]
        print(
            f"{component:<14} {row['test_crops']:>10} {row['wrong_weak_labels']:>12} "
            f"{weak[0]:>14.3f} / {weak[1]:.3f} {truth[0]:>8.3f} / {truth[1]:.3f}  "
            + ", ".join(f"{view} {acc:.3f} ({n})" for view, (n, acc) in row["truth_by_view"].items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
