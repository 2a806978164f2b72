"""`make base`, the one command that rebuilds the shipped garment base, run whole on a small shop:
build it, serve it on 127.0.0.1, crawl, validate, label, train its detector, crop two ways, pack
the crops with real photos, pretrain; the file it writes loads into a demo classifier."""

import json
import socket
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import PROJECT_ROOT, TINY_DETECTOR

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_make_base_rebuilds_a_base_from_a_shop_of_its_own(tmp_path: Path) -> None:
    tree = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    base_profile = tree["profiles"]["garment-base"]
    base_profile["crawl"] = {"demo_shop": {"seed": 29, "products": 40}}
    base_profile["validation"] = {"min_examples_per_class": 1}  # a 40-product shop is small
    base_profile["detector"] = TINY_DETECTOR
    base_profile["crop"] = {"size": 32, "on_no_detection": "full_image"}
    tree["garment_base"] = {**tree["garment_base"], "image_size": 32, "batch_size": 8, "epochs": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    out = tmp_path / "base.weights.h5"

    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "base",
            f"BASE_PARAMS={tmp_path / 'params.yaml'}",
            f"BASE_WORKSPACE={tmp_path / 'workspace'}",
            f"BASE_OUT={out}",
            f"BASE_PORT={free_port()}",
            f"BASE_PHOTOS={PROJECT_ROOT / 'tests' / 'fixtures' / 'real-photos'}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "garment base: epoch 1/1" in result.stdout

    card = json.loads((tmp_path / "base.json").read_text())
    assert card["data"]["shop"] == {**card["data"]["shop"], "seed": 29, "products": 40}
    assert card["data"]["crops"] == "bbox" and card["recipe"]["profile"] == "garment-base"
    assert (tmp_path / "workspace" / "detector").is_dir() and (tmp_path / "workspace" / "mlflow.db").is_file()
    trained = card["data"]["examples"]["train"]
    assert all(trained[c] > 0 for c in ("shirt-pattern", "jeans-color", "shirt-collar")), trained
    assert set(card["accuracy_by_split"]["train"]) == {*tree["components"], "garment-type"}
    crops, annotated, photos = card["data"]["sources"]
    assert crops["crops"].endswith("crops") and annotated["crops"].endswith("crops-annotation")
    assert photos["classes"] == ["pants", "shirt", "t-shirt"] and sum(photos["examples"].values()) > 0
    assert card["recipe"]["command"].startswith("seamline garment-base") and "--arrays" in card["recipe"]["command"]
    with h5py.File(out) as store:
        kinds = []
        store.visititems(lambda name, node: kinds.append(node.dtype) if isinstance(node, h5py.Dataset) else None)
    assert kinds and {np.dtype("float16")} == set(kinds)

    from pipelines.classifier import build_classifier

    classifier = build_classifier(
        backbone="densenet121", classes=["a", "b"], image_size=64, dropout=0.0, weights=str(out)
    )
    with h5py.File(out) as store:  # Keras names layers by kind; the stem is the one 7×7 kernel on RGB
        stems = []
        store.visititems(
            lambda n, node: stems.append(node[()]) if getattr(node, "shape", None) == (7, 7, 3, 64) else None
        )
    loaded = classifier.get_layer("base").get_layer("conv1_conv").kernel.numpy()
    assert len(stems) == 1 and loaded.dtype == np.float32 and np.abs(loaded).sum() > 0
    np.testing.assert_allclose(loaded, stems[0].astype("float32"), atol=1e-6)
