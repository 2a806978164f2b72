"""The backend-neutral input path (`training.input_pipeline: arrays`, what JAX and PyTorch use):
crops decoded without TensorFlow give the pixels tf.data gives, each epoch's batches cover every
crop once, and a real two-phase training runs through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.classifier import (
    CropBatches,
    Examples,
    TrainingError,
    augmentation_model,
    crop_arrays,
    decode_crop,
    make_dataset,
    train_classifier,
    uses_tf_data,
)
from pipelines.config import AugmentationParams, ComponentParams, TrainingParams


def write_crops(folder: Path, count: int, size: tuple[int, int], alpha: bool = False) -> Examples:
    """Light and dark noisy squares: a shade task any model learns in a few steps."""
    rng = np.random.default_rng(1)
    paths, labels = [], []
    for i in range(count):
        label = i % 2
        shade = 200 if label else 50
        pixels = np.clip(rng.normal(shade, 25, size=(*size[::-1], 4 if alpha else 3)), 0, 255).astype(np.uint8)
        path = folder / f"crop-{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        labels.append(label)
    return Examples(paths, np.asarray(labels, dtype=np.int64))


@pytest.mark.parametrize(("size", "alpha"), [((32, 32), False), ((48, 40), False), ((32, 32), True)])
def test_crops_decoded_without_tensorflow_match_tf_data(tmp_path: Path, size: tuple[int, int], alpha: bool) -> None:
    examples = write_crops(tmp_path, 3, size, alpha)
    arrays = crop_arrays(examples.paths, 32, alpha)
    tf_pixels = np.stack([np.asarray(decode_crop(p, 32, alpha)) for p in examples.paths])
    assert arrays.dtype == np.uint8 and arrays.shape == (3, 32, 32, 3)
    # Same size: identical; resized: the same antialiased bilinear filter, rounded to uint8.
    assert np.abs(arrays.astype(np.float32) - tf_pixels).max() <= (0.5 if size == (32, 32) else 1.5)


def test_each_epoch_covers_every_crop_once_in_a_new_order() -> None:
    pixels = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=-1)
    targets = np.eye(2, dtype=np.float32)[np.arange(10) % 2]
    batches = CropBatches(pixels, targets, batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 3

    def epoch() -> list[int]:
        seen = [int(v) for i in range(len(batches)) for v in batches[i][0][:, 0, 0, 0]]
        batches.on_epoch_end()
        return seen

    first, second = epoch(), epoch()
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    x, y = batches[0]
    assert x.dtype == np.float32 and y.shape == (4, 2)
    assert all(y[row].argmax() == int(x[row, 0, 0, 0]) % 2 for row in range(4))


def test_augmented_batches_are_flipped_copies_of_the_crops() -> None:
    pixels = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    pixels[:, :, :4] = 255  # left half white
    augment = augmentation_model(AugmentationParams(horizontal_flip=True, shift=0.0), seed=3)
    batches = CropBatches(pixels, np.eye(2, dtype=np.float32), 2, False, 0, augment)
    seen = {bool(batches[0][0][i, 0, 0, 0] > 127) for _ in range(8) for i in range(2)}
    assert seen == {True, False}  # some left halves stayed white, some were flipped away


def test_a_two_phase_training_runs_on_arrays(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    examples = {split: write_crops(tmp_path / split, n, (32, 32)) for split, n in (("train", 24), ("val", 8))}
    examples["test"] = examples["val"]
    training = TrainingParams(
        weights=None,
        image_size=32,
        batch_size=8,
        input_pipeline="arrays",
        frozen={"epochs": 1, "cached_features": True, "augmented_views": 1},
        fine_tune={"epochs": 1, "learning_rate": 1e-3},
    )
    component = ComponentParams(item="jeans", classes=["light", "deep"], crop_region="jeans", training=training)
    assert not uses_tf_data(training)
    assert isinstance(make_dataset(examples["val"], 2, training, False, shuffle=False), CropBatches)
    result = train_classifier(component, examples, alpha=False)
    assert [row["phase"] for row in result.history] == ["frozen", "fine_tune"]
    assert all(np.isfinite(row["val_loss"]) for row in result.history)
    assert result.model.predict(crop_arrays(examples["test"].paths, 32, False), verbose=0).shape == (8, 2)


def test_tf_data_on_another_backend_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(TrainingError, match="tf_data needs the TensorFlow backend, not jax"):
        uses_tf_data(TrainingParams(input_pipeline="tf_data"))
    assert not uses_tf_data(TrainingParams())
