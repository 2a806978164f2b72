"""Classifier base weights from a local file and from S3 (moto in server mode), and the one-line
errors for a missing path and for a file that does not fit the architecture."""

from __future__ import annotations

from pathlib import Path

import boto3
import keras
import numpy as np
import pytest

from pipelines.classifier import build_classifier, set_trainable
from pipelines.weights import WeightsError, fetch_weights

pytestmark = pytest.mark.slow

CLASSES = ["a", "b"]


def classifier(weights: str | None, backbone: str = "densenet121") -> keras.Model:
    return build_classifier(backbone=backbone, classes=CLASSES, image_size=32, dropout=0.0, weights=weights)


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A DenseNet121 base with distinctive weights saved as a Keras weights file."""
    keras.utils.set_random_seed(3)
    model = classifier(None)
    path = tmp_path_factory.mktemp("weights") / "base.weights.h5"
    model.get_layer("base").save_weights(path)
    return path, model.get_layer("base").get_weights()[0]


def test_a_local_weights_file_is_loaded_into_the_base(saved_base: tuple[Path, np.ndarray]) -> None:
    path, first_kernel = saved_base
    keras.utils.set_random_seed(99)  # a different random start, overwritten by the file
    loaded = classifier(str(path))
    np.testing.assert_array_equal(loaded.get_layer("base").get_weights()[0], first_kernel)


def test_weights_from_an_s3_uri(
    saved_base: tuple[Path, np.ndarray], moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, first_kernel = saved_base
    for name, value in {
        "AWS_ENDPOINT_URL": moto_s3,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").upload_file(str(path), "seamline-data", "bases/densenet.weights.h5")
    local = fetch_weights("s3://seamline-data/bases/densenet.weights.h5", cache_dir=tmp_path / "cache")
    assert local.read_bytes() == path.read_bytes()
    # The stage's own path (no cache_dir) honours the variable set after import: the download
    # goes there, not into the repository's .cache/.
    monkeypatch.setenv("SEAMLINE_WEIGHTS_CACHE", str(tmp_path / "cache2"))
    loaded = classifier("s3://seamline-data/bases/densenet.weights.h5")
    np.testing.assert_array_equal(loaded.get_layer("base").get_weights()[0], first_kernel)
    assert [p.name for p in (tmp_path / "cache2").rglob("*.weights.h5")] == ["densenet.weights.h5"]
    with pytest.raises(WeightsError, match="could not be downloaded"):
        fetch_weights("s3://seamline-data/bases/missing.weights.h5", cache_dir=tmp_path / "cache")


def test_a_missing_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"weights: .*nowhere\.weights\.h5 not found"):
        classifier(str(tmp_path / "nowhere.weights.h5"))


def test_a_file_for_another_architecture_does_not_fit(saved_base: tuple[Path, np.ndarray]) -> None:
    path, _ = saved_base
    with pytest.raises(WeightsError, match="does not fit a vgg16 base") as caught:
        classifier(str(path), backbone="vgg16")
    assert "\n" not in str(caught.value)


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(WeightsError, match="unsupported scheme 'ftp'"):
        fetch_weights("ftp://example.org/base.weights.h5")


def _moving_means(model: keras.Model) -> np.ndarray:
    return np.concatenate(
        [
            layer.moving_mean.numpy()
            for layer in model.get_layer("base").layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
    )


@pytest.mark.parametrize("batchnorm_trains", [False, True])
def test_fine_tuning_keeps_or_moves_the_bases_batchnorm_statistics(
    saved_base: tuple[Path, np.ndarray], batchnorm_trains: bool
) -> None:
    """`fine_tune.batchnorm: inference` keeps the statistics a pretrained base brought through a
    training step; `train` moves them towards the new images. Either way the step is a real one:
    a finite loss, a head that moved, probabilities after it (the dependency smoke test leaves
    the DenseNet121 training step to this test: tracing one costs about a minute on 2 cores)."""
    path, _ = saved_base
    model = build_classifier(
        backbone="densenet121", classes=CLASSES, image_size=32, dropout=0.0, weights=str(path), batchnorm_momentum=0.5
    )
    assert [layer.name for layer in model.layers][1:] == ["scaling", "base", "gap", "dropout", "probabilities"]
    set_trainable(model, "fine_tune", batchnorm_trains=batchnorm_trains)
    before, head_before = _moving_means(model), model.get_layer("probabilities").get_weights()[0].copy()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    loss = model.train_on_batch(images, np.eye(2, dtype="float32")[[0, 1] * 4])
    assert (not np.allclose(_moving_means(model), before)) is batchnorm_trains
    assert np.isfinite(loss)
    assert not np.allclose(model.get_layer("probabilities").get_weights()[0], head_before)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (8, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
