"""Early stopping as the training phases use it: a from-scratch model's noisy first epochs must
neither stop it nor be the weights it ends with."""

from __future__ import annotations

import keras
import numpy as np

from pipelines.classifier import early_stopping
from pipelines.config import TrainingParams

# A from-scratch run: a lucky first epoch, a plateau at chance, then it learns (epochs 5-6).
VAL_LOSSES = [0.50, 0.90, 0.90, 0.90, 0.90, 0.80, 0.40, 0.45, 0.46, 0.47, 0.48]


def replay(training: TrainingParams) -> tuple[int, float]:
    """Feeds VAL_LOSSES to the phase's callback as Keras would; returns the epoch training stopped
    after and the marker weight the model ends with (the marker of an epoch is its index)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    callback = early_stopping(training)
    model.stop_training = False  # what `fit` sets before the first epoch
    callback.set_model(model)
    callback.on_train_begin()
    stopped_after = len(VAL_LOSSES) - 1
    for epoch, loss in enumerate(VAL_LOSSES):
        model.set_weights([np.full((1, 1), float(epoch), dtype="float32")])
        callback.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            stopped_after = epoch
            break
    callback.on_train_end()
    return stopped_after, float(model.get_weights()[0][0, 0])


def test_without_a_start_the_lucky_first_epoch_wins() -> None:
    stopped_after, kept = replay(TrainingParams(early_stopping_patience=2, early_stopping_start=0))
    assert stopped_after == 2
    assert kept == 0.0


def test_a_start_lets_a_from_scratch_model_leave_its_plateau_and_keeps_its_best_epoch() -> None:
    stopped_after, kept = replay(TrainingParams(early_stopping_patience=2, early_stopping_start=5))
    assert stopped_after == 8  # best at epoch 6, then two epochs without a lower val_loss
    assert kept == 6.0
