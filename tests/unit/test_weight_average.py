"""Weight averaging (`training.ema_decay`) inside a real Keras `fit`: training steps move the raw
weights, validation and the end of each epoch see their moving average (BatchNorm statistics
included), and the model ends holding the average."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipelines.classifier import WeightAverage, phase_callbacks
from pipelines.config import TrainingParams

DECAY = 0.8


class Recorder(keras.callbacks.Callback):
    """Notes the model's weights at each step's end (before the average is updated, since it
    comes first in the list) and when validation begins (after the average is swapped in)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[list[np.ndarray]] = []
        self.validated: list[list[np.ndarray]] = []
        self.first: list[np.ndarray] | None = None

    def on_train_begin(self, logs=None) -> None:
        self.first = [np.array(w) for w in self.model.get_weights()]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps.append([np.array(w) for w in self.model.get_weights()])


class ValidationProbe(keras.callbacks.Callback):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def on_test_begin(self, logs=None) -> None:
        self.recorder.validated.append([np.array(w) for w in self.model.get_weights()])


def small_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)  # moving statistics: averaged too
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.ReLU()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


def expected_average(first: list[np.ndarray], steps: list[list[np.ndarray]], decay: float) -> list[np.ndarray]:
    average = [w.astype(np.float64) for w in first]
    for weights in steps:
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights)]
    return average


def test_validation_and_the_trained_model_see_the_moving_average() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = small_model()
    recorder = Recorder()
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=3,
        validation_data=(x, y),
        shuffle=False,
        verbose=0,
        callbacks=[recorder, WeightAverage(DECAY), ValidationProbe(recorder)],
    )

    assert len(recorder.steps) == 12 and len(recorder.validated) == 3
    # Steps see raw weights that keep moving: the average would lag them.
    raw_end = recorder.steps[-1]
    averaged_end = expected_average(recorder.first, recorder.steps, DECAY)
    assert not all(np.allclose(r, a, atol=1e-4) for r, a in zip(raw_end, averaged_end))
    # Each epoch's validation sees the average of the steps so far.
    for epoch, seen in enumerate(recorder.validated):
        wanted = expected_average(recorder.first, recorder.steps[: 4 * (epoch + 1)], DECAY)
        for got, want in zip(seen, wanted):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The trained model holds the final average, BatchNorm's moving mean and variance included.
    for got, want in zip(model.get_weights(), averaged_end):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    norm = model.layers[2]
    assert not np.allclose(np.array(norm.moving_mean), recorder.first[2])


def test_early_stopping_comes_after_the_average_and_only_when_asked() -> None:
    assert [type(c).__name__ for c in phase_callbacks(TrainingParams(ema_decay=0.99))] == [
        "WeightAverage",
        "EarlyStopping",
    ]
    assert [type(c).__name__ for c in phase_callbacks(TrainingParams())] == ["EarlyStopping"]


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_zero_one_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(decay)
