"""The garment base: its multi-task examples and loss, its float16 file, and the file Seamline ships."""

import csv
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipelines.config import load_params
from pipelines.garment_base import (
    GarmentBaseError,
    multitask_sets,
    save_half,
    slice_accuracy,
    sliced_cross_entropy,
    slices_of,
)
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def params():
    return load_params(PROJECT_ROOT / "params.yaml", "demo")


def write_component(crops: Path, labels: Path, component: str, rows: list[tuple[str, str, str]]) -> None:
    """`rows`: (sha, label, split); every crop file exists (its content does not matter here)."""
    (crops / component).mkdir(parents=True, exist_ok=True)
    for sha, _, _ in rows:
        (crops / component / f"{sha}.png").write_bytes(b"")
    write_index_only(crops, labels, component, rows)


def test_a_jeans_crop_labelled_by_two_components_is_one_example_with_both_targets(params, tmp_path: Path) -> None:
    crops, labels = tmp_path / "crops", tmp_path / "labels"
    write_component(crops, labels, "jeans-color", [("a", "deep", "train"), ("b", "light", "val")])
    write_component(crops, labels, "jeans-fit", [("a", "skinny", "train"), ("c", "wide", "train")])
    # damage is cut from the jeans' middle half in the demo: another crop of the same photo
    write_component(crops, labels, "jeans-damage", [("a", "damage", "train")])
    write_component(crops, labels, "shirt-pattern", [("a", "dot", "train"), ("d", "solid", "val")])

    sets = multitask_sets(params, crops, labels)
    slices = {piece.component: piece for piece in slices_of(params)}

    train = dict(zip(sets["train"].paths, sets["train"].targets))
    assert len(train) == 4  # jeans a (colour and fit), jeans c, jeans a's middle half, shirt a
    jeans_a = train[str(crops / "jeans-fit" / "a.png")]  # the first of the two in params order
    colour, fit, damage = slices["jeans-color"], slices["jeans-fit"], slices["jeans-damage"]
    assert jeans_a[colour.start + colour.classes.index("deep")] == 1.0
    assert jeans_a[fit.start + fit.classes.index("skinny")] == 1.0
    assert jeans_a.sum() == 2.0
    middle = train[str(crops / "jeans-damage" / "a.png")]
    assert middle[damage.start + damage.classes.index("damage")] == 1.0 and middle.sum() == 1.0
    pattern = slices["shirt-pattern"]
    assert train[str(crops / "shirt-pattern" / "a.png")][pattern.start + pattern.classes.index("dot")] == 1.0
    assert len(sets["val"]) == 2 and len(sets["test"]) == 0


def test_no_validation_crops_is_one_clear_error(params, tmp_path: Path) -> None:
    write_component(tmp_path / "crops", tmp_path / "labels", "jeans-color", [("a", "deep", "train")])
    with pytest.raises(GarmentBaseError, match="no labelled crops in the val split"):
        multitask_sets(params, tmp_path / "crops", tmp_path / "labels")


def test_the_loss_is_each_labelled_slice_s_cross_entropy_and_an_unlabelled_slice_adds_nothing(params) -> None:
    slices = slices_of(params)
    width = slices[-1].stop
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, width)).astype("float32")
    truth = np.zeros((2, width), "float32")
    first, second = slices[0], slices[3]
    truth[0, first.start + 1] = 1.0  # example 0: one label in the first slice
    truth[1, second.start] = 1.0  # example 1: one label in the fourth

    def cross_entropy(row: int, piece) -> float:
        z = logits[row, piece.start : piece.stop].astype("float64")
        return float(-(z - np.log(np.exp(z).sum()))[int(truth[row, piece.start : piece.stop].argmax())])

    loss = np.asarray(sliced_cross_entropy(slices)(truth, logits))
    np.testing.assert_allclose(loss, [cross_entropy(0, first), cross_entropy(1, second)], rtol=1e-5)


def test_slice_accuracy_counts_only_the_examples_a_component_labels(params) -> None:
    slices = slices_of(params)
    width = slices[-1].stop
    piece = slices[1]
    truth, logits = np.zeros((3, width)), np.zeros((3, width))
    truth[0, piece.start] = truth[1, piece.start + 1] = 1.0  # the third example has no label here
    logits[0, piece.start] = logits[1, piece.start] = 5.0  # right once, wrong once
    scores = slice_accuracy(slices, truth, logits)
    assert scores[piece.component] == 0.5 and scores[slices[0].component] is None


def test_the_half_precision_file_loads_into_a_float32_model_with_the_same_values(tmp_path: Path) -> None:
    import keras

    def model() -> keras.Model:
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")], name="tiny")

    source = model()
    save_half(source, tmp_path / "tiny.weights.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.weights.h5"]  # no staging file left behind
    with h5py.File(tmp_path / "tiny.weights.h5") as store:
        dtypes = []
        store.visititems(lambda name, node: dtypes.append(node.dtype) if isinstance(node, h5py.Dataset) else None)
    assert dtypes and all(dtype == np.float16 for dtype in dtypes)
    target = model()
    target.load_weights(tmp_path / "tiny.weights.h5")
    for before, after in zip(source.get_weights(), target.get_weights()):
        assert after.dtype == np.float32
        np.testing.assert_allclose(after, before, atol=1e-3)


def test_the_shipped_base_is_what_its_card_says_and_never_saw_the_demo_shop(params) -> None:
    weights = PROJECT_ROOT / params.garment_base.file
    card = json.loads(weights.with_name(weights.name.removesuffix(".weights.h5") + ".json").read_text())
    assert params.training.weights == params.garment_base.file  # the demo starts from it
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert weights.stat().st_size <= 30 * 2**20 and card["dtype"] == "float16"
    assert card["data"]["shop"]["seed"] != params.crawl.demo_shop.seed  # another shop than make demo builds
    assert card["image_size"] == params.garment_base.image_size and card["backbone"] == params.garment_base.backbone


def test_mask_alpha_crops_are_refused_in_one_line(tmp_path: Path) -> None:
    from pipelines.config import read_params_file, resolve_params

    tree = read_params_file(PROJECT_ROOT / "params.yaml")
    tree["profiles"]["demo"]["crop"]["mode"] = "mask_alpha"
    write_component(tmp_path / "crops", tmp_path / "labels", "jeans-color", [("a", "deep", "train")])
    with pytest.raises(GarmentBaseError, match="mask_alpha crops are not a base's input"):
        multitask_sets(resolve_params(tree, "demo"), tmp_path / "crops", tmp_path / "labels")


# --- the pack: decoded images that travel to wherever the base trains --------------------------


def tiny_pack(params, count: int = 6, side: int = 64):
    from pipelines.garment_base import Pack

    slices = slices_of(params)
    rng = np.random.default_rng(1)
    images = {split: rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8) for split in ("train", "val", "test")}
    targets = {split: np.eye(slices[-1].stop, dtype=np.float32)[:count] for split in images}
    data = {"examples": {split: {"shirt-collar": count} for split in images}}
    return Pack(slices, images, targets, data)


def test_a_pack_saved_as_it_is_loads_back_exactly(params, tmp_path: Path) -> None:
    from pipelines.garment_base import load_pack, save_pack

    pack = tiny_pack(params)
    save_pack(pack, tmp_path / "pack.npz", command="seamline garment-base --save-arrays pack.npz")
    loaded = load_pack(tmp_path / "pack.npz", 64)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.images[split], pack.images[split])
        np.testing.assert_array_equal(loaded.targets[split], pack.targets[split])
    assert loaded.slices == pack.slices
    assert loaded.data["pixels"] == "as decoded" and loaded.data["packed_by"].startswith("seamline garment-base")


def test_a_jpeg_pack_keeps_every_pixel_near_and_can_leave_the_test_split_out(params, tmp_path: Path) -> None:
    from pipelines.garment_base import load_pack, save_pack

    pack = tiny_pack(params)
    smooth = np.linspace(0, 255, 64, dtype=np.float32)  # JPEG keeps smooth images; noise it would not
    for split in pack.images:
        pack.images[split][:] = (smooth[None, :, None, None] * np.array([1.0, 0.5, 0.2])).astype(np.uint8)
    save_pack(pack, tmp_path / "pack.npz", jpeg_quality=95, splits=("train", "val"))
    loaded = load_pack(tmp_path / "pack.npz", 64)
    error = np.abs(loaded.images["train"].astype(int) - pack.images["train"].astype(int))
    assert error.mean() < 2.0 and error.max() <= 12
    assert len(loaded.images["test"]) == 0 and loaded.targets["test"].shape == (0, pack.slices[-1].stop)
    assert set(loaded.data["examples"]) == {"train", "val"} and loaded.data["pixels"].startswith("jpeg 95")


def test_a_pack_of_another_size_or_no_pack_at_all_is_one_clear_error(params, tmp_path: Path) -> None:
    from pipelines.garment_base import load_pack, save_pack

    save_pack(tiny_pack(params, side=32), tmp_path / "pack.npz")
    with pytest.raises(GarmentBaseError, match="not 64 px"):
        load_pack(tmp_path / "pack.npz", 64)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(GarmentBaseError, match="not a garment-base pack"):
        load_pack(tmp_path / "junk.npz", 64)


def test_augmentation_flips_and_shifts_but_never_changes_a_colour() -> None:
    from pipelines.garment_base import augment

    rng = np.random.default_rng(0)
    batch = np.zeros((64, 16, 16, 3), np.uint8)
    batch[:, :, :8] = (200, 10, 30)  # left half red, right half black
    out = augment(batch, rng, shift=0.125)
    assert out.shape == batch.shape and out.dtype == np.uint8
    colours = {tuple(pixel) for pixel in out.reshape(-1, 3)}
    assert colours <= {(200, 10, 30), (0, 0, 0)}  # edge-repeat padding, no new colours
    flipped = out[:, 8, 15, 0] == 200  # the red half seen on the right
    assert 10 < flipped.sum() < 54  # about half flipped
    shifted = [int((image[8, :, 0] == 200).sum()) for image in out]
    assert len(set(shifted)) > 1  # the edge moved by a few pixels in some images


def test_batches_cover_every_example_once_an_epoch_in_float32(params) -> None:
    from pipelines.garment_base import batches

    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 3), np.uint8)
    targets = np.eye(10, dtype=np.float32)
    feed = batches(images, targets, batch_size=4, train=True, seed=3, shift=0.0)
    assert len(feed) == 3
    seen = []
    for index in range(len(feed)):
        pixels, target = feed[index]
        assert pixels.dtype == np.float32
        assert np.array_equal(pixels[:, 0, 0, 0].astype(int), target.argmax(axis=1))  # still paired
        seen.extend(target.argmax(axis=1).tolist())
    assert sorted(seen) == list(range(10))
    first = list(seen)
    feed.on_epoch_end()
    assert [int(t) for i in range(3) for t in feed[i][1].argmax(axis=1)] != first  # reshuffled


def test_photos_add_a_garment_type_slice_a_tenth_for_validation(params, tmp_path: Path) -> None:
    from PIL import Image

    from pipelines.garment_base import PHOTO_SLICE, pack_data, photo_examples

    crops, labels = tmp_path / "crops", tmp_path / "labels"
    for sha, colour in (("a", (10, 20, 30)), ("b", (200, 100, 50))):
        (crops / "jeans-color").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 80), colour).save(crops / "jeans-color" / f"{sha}.png")
    write_index_only(crops, labels, "jeans-color", [("a", "deep", "train"), ("b", "light", "val")])
    photos = tmp_path / "photos"
    for kind in ("pants", "shirt"):
        (photos / kind).mkdir(parents=True)
        for i in range(20):
            Image.new("RGB", (60, 40), (i, i, i)).save(photos / kind / f"{kind}-{i}.jpg")
    kinds, by_split = photo_examples(photos)
    assert kinds == ("pants", "shirt") and len(by_split["train"]) + len(by_split["val"]) == 40
    assert 0 < len(by_split["val"]) < 12 and not by_split["test"]

    pack = pack_data(params, [crops], labels, photos, progress=lambda line: None)
    assert pack.slices[-1].component == PHOTO_SLICE and pack.slices[-1].classes == kinds
    assert pack.images["train"].shape[1:] == (64, 64, 3) and pack.images["train"].dtype == np.uint8
    assert len(pack.images["train"]) == 1 + len(by_split["train"])
    np.testing.assert_array_equal(pack.images["train"][0, 10, 10], (10, 20, 30))  # a flat crop stays flat
    colour = next(piece for piece in pack.slices if piece.component == "jeans-color")
    assert pack.targets["train"][0, colour.start + colour.classes.index("deep")] == 1.0
    assert pack.data["examples"]["train"][PHOTO_SLICE] == len(by_split["train"])
    with pytest.raises(GarmentBaseError, match="no garment-type folders"):
        photo_examples(tmp_path / "labels")
    with pytest.raises(GarmentBaseError, match="no such folder of photos"):
        photo_examples(tmp_path / "missing")


def write_index_only(crops: Path, labels: Path, component: str, rows: list[tuple[str, str, str]]) -> None:
    """Labels and an index for crop files already written."""
    labels.mkdir(parents=True, exist_ok=True)
    with (labels / f"{component}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "label", "split", "label_source"])
        writer.writerows([sha, label, split, "weak"] for sha, label, split in rows)
    with (crops / component / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["component", "sha256", "split", "file", "status", "reason", "score", "box", "recipe"])
        for sha, _, split in rows:
            writer.writerow([component, sha, split, f"{component}/{sha}.png", "cropped", "", "", "", "bbox:64"])
