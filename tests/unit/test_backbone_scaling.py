"""The classifier's built-in input scaling matches Keras's own ImageNet preprocessing and
survives a save/load round trip with no custom objects, so served models need no preprocessing
code beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipelines.classifier import input_scaling  # noqa: E402


@pytest.mark.parametrize("mode", ["torch", "caffe"])
def test_scaling_matches_keras_preprocess_input(mode: str) -> None:
    from keras.applications import imagenet_utils

    pixels = np.random.default_rng(1).uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    expected = imagenet_utils.preprocess_input(pixels.copy(), mode=mode)
    actual = keras.ops.convert_to_numpy(input_scaling(mode)(pixels))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)


def test_scaling_layer_round_trips_through_a_saved_model(tmp_path: Path) -> None:
    pixels = keras.Input(shape=(4, 4, 3))
    model = keras.Model(pixels, input_scaling("caffe")(pixels))
    assert not model.get_layer("scaling").trainable_weights  # fixed, whatever the phase
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    sample = np.full((1, 4, 4, 3), 128.0, dtype="float32")
    np.testing.assert_allclose(loaded.predict(sample, verbose=0), model.predict(sample, verbose=0))


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown input mode"):
        input_scaling("tf")  # type: ignore[arg-type]
