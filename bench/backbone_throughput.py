"""Backbone cost for the paper's comparison: training and inference images/s of DenseNet121,
VGG16 and ResNet50 classifiers on this machine, and each one's ratio to DenseNet121.

Measured side by side in one run on in-memory tensors (the model-bound ceiling later input
pipelines are compared against). Usage: python bench/backbone_throughput.py [--size 64] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from pipelines.classifier import build_classifier

BACKBONES = ("densenet121", "vgg16", "resnet50")
CLASSES = ("a", "b", "c", "d")


def images_per_second(step, batches: int, batch: int) -> float:
    step()  # trace and warm up outside the timed loop
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batch / (time.perf_counter() - start)


def measure(backbone: str, size: int, batch: int, batches: int) -> tuple[float, float]:
    model = build_classifier(backbone=backbone, classes=CLASSES, image_size=size, dropout=0.2, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    targets = keras.utils.to_categorical(rng.integers(0, len(CLASSES), size=batch), len(CLASSES))
    train = images_per_second(lambda: model.train_on_batch(pixels, targets), batches, batch)
    infer = images_per_second(lambda: model.predict_on_batch(pixels), batches, batch)
    return train, infer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="square input side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="images per batch")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per measurement")
    args = parser.parse_args()

    results = {name: measure(name, args.size, args.batch, args.batches) for name in BACKBONES}
    base_train, base_infer = results["densenet121"]
    print(f"backbone throughput at {args.size}px, batch {args.batch}, weights=None, {os.cpu_count()} CPUs")
    print(
        f"{'backbone':<12} {'train img/s':>12} {'infer img/s':>12} {'train vs densenet':>18} {'infer vs densenet':>18}"
    )
    for name, (train, infer) in results.items():
        print(f"{name:<12} {train:>12.1f} {infer:>12.1f} {train / base_train:>17.2f}x {infer / base_infer:>17.2f}x")


if __name__ == "__main__":
    main()
