"""The crop stage's decisions: which region, which fallback, what is cached, what is reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import CropParams, load_params, read_params_file, resolve_params, stage_settings
from pipelines.crop import DetectionCache, Region, crop_one, detected_region
from pipelines.crop_set import CropRow, crop_recipe, read_crop_set, read_index, write_crop_set, write_index
from pipelines.detect import Detection, detection_record


def image() -> np.ndarray:
    pixels = np.zeros((120, 80, 3), np.uint8)
    pixels[20:100, 10:70] = 200
    return pixels


def record_with(*detections: Detection) -> dict:
    return {"sha256": "a" * 64, "detections": [detection_record(d) for d in detections]}


def detection(category: str, box: tuple[int, int, int, int], score: float) -> Detection:
    mask = np.zeros((120, 80), bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return Detection(category, score, tuple(float(v) for v in box), mask)


def test_the_region_is_the_largest_detection_of_its_category_above_threshold() -> None:
    record = record_with(
        detection("shirt", (10, 20, 70, 100), 0.7),
        detection("shirt", (30, 30, 40, 40), 0.95),
        detection("collar", (0, 0, 80, 120), 0.99),
    )
    region = detected_region(record, "shirt", 0.5, with_mask=True)
    assert region.box == (10.0, 20.0, 70.0, 100.0) and region.score == pytest.approx(0.7)
    assert region.mask.sum() == 60 * 80
    assert detected_region(record, "shirt", 0.8, with_mask=False).box == (30.0, 30.0, 40.0, 40.0)
    assert detected_region(record, "jeans", 0.0, with_mask=False) is None
    assert detected_region({"sha256": "b", "error": "corrupt_image"}, "shirt", 0.0, with_mask=False) is None


@pytest.mark.parametrize(("fallback", "status"), [("skip", "skipped"), ("full_image", "full_image")])
def test_no_region_falls_back_as_params_say(fallback: str, status: str) -> None:
    pixels, got = crop_one(image(), None, CropParams(mode="bbox", size=32, on_no_detection=fallback))
    assert got == status
    assert (pixels is None) == (fallback == "skip")
    if pixels is not None:
        assert pixels.shape == (32, 32, 3)


@pytest.mark.parametrize(
    ("mode", "channels"), [("bbox", 3), ("mask", 3), ("mask_alpha", 4), ("annotation", 3), ("none", 3)]
)
def test_every_mode_gives_a_square_of_the_configured_size(mode: str, channels: int) -> None:
    mask = np.zeros((120, 80), bool)
    mask[20:100, 10:70] = True
    pixels, status = crop_one(image(), Region((10, 20, 70, 100), mask, 0.9), CropParams(mode=mode, size=48))
    assert status == "cropped" and pixels.shape == (48, 48, channels)


def test_the_recipe_changes_with_anything_a_crop_depends_on() -> None:
    base = crop_recipe(CropParams(), "v1")
    assert base != crop_recipe(CropParams(), "v2")
    assert base != crop_recipe(CropParams(size=64), "v1")
    assert base != crop_recipe(CropParams(mode="mask"), "v1")
    assert base != crop_recipe(CropParams(on_no_detection="full_image"), "v1")


def test_the_detection_cache_survives_a_torn_last_line(tmp_path: Path) -> None:
    cache = DetectionCache(tmp_path, "v1")
    cache.add([{"sha256": "a", "detections": []}, {"sha256": "b", "error": "corrupt_image"}])
    with cache.path.open("a", encoding="utf-8") as handle:
        handle.write('{"sha256": "c", "detec')  # killed mid-write
    reloaded = DetectionCache(tmp_path, "v1")
    assert set(reloaded.records) == {"a", "b"}
    assert DetectionCache(tmp_path, "v2").records == {}  # another detector version starts empty


def test_the_index_round_trips(tmp_path: Path) -> None:
    rows = [
        CropRow(
            "shirt-collar",
            "a" * 64,
            "train",
            "shirt-collar/a.png",
            "cropped",
            "",
            0.91234,
            "1.0 2.0 3.0 4.0",
            "bbox:64:v1:skip",
        ),
        CropRow("jeans-fit", "b" * 64, "test", "", "skipped", "no_detection", None, "", "bbox:64:v1:skip"),
    ]
    write_index(tmp_path / "index.csv", rows)
    again = read_index(tmp_path / "index.csv")
    assert again[("jeans-fit", "b" * 64)] == rows[1]
    assert again[("shirt-collar", "a" * 64)].score == pytest.approx(0.9123)
    # A crop set from before per-component indexes is read once, then split into one index per
    # component (an empty one for a component with no crops) and the old file goes.
    assert read_crop_set(tmp_path) == again
    write_crop_set(tmp_path, list(again.values()), ["shirt-collar", "jeans-fit", "jeans-color"])
    assert not (tmp_path / "index.csv").exists()
    assert list(read_index(tmp_path / "jeans-fit" / "index.csv")) == [("jeans-fit", "b" * 64)]
    assert read_index(tmp_path / "jeans-color" / "index.csv") == {}
    assert read_crop_set(tmp_path) == again


def test_resolved_stage_settings_apply_the_profile(shipped_params_path: Path) -> None:
    demo = stage_settings(load_params(shipped_params_path, "demo"))
    paper = stage_settings(load_params(shipped_params_path, "paper"))
    assert demo["detector"]["image_size"] != paper["detector"]["image_size"]
    assert demo["crop"]["size"] == 64 and demo["crop"]["regions"]["shirt-collar"] == "collar"
    assert {f"train-{c}" for c in ("shirt-collar", "jeans-fit")} <= set(demo)
    json.dumps(demo)  # what the stage writes must be JSON


def test_pretrain_settings_change_when_a_component_moves_onto_the_pretrained_base(shipped_params_path: Path) -> None:
    # The demo's components all start from the shipped base; the SimCLR experiments point one at
    # the pretrain stage's output. Both name a weights file, and only the second needs the stage.
    demo = load_params(shipped_params_path, "demo")
    color = demo.components["jeans-color"]
    onto_simclr = demo.model_copy(
        update={
            "components": {
                **demo.components,
                "jeans-color": color.model_copy(
                    update={
                        "training": color.training.model_copy(update={"weights": "models/pretrain/base.weights.h5"})
                    }
                ),
            }
        }
    )
    assert stage_settings(onto_simclr)["pretrain"] != stage_settings(demo)["pretrain"]
    assert stage_settings(onto_simclr)["train-jeans-fit"] == stage_settings(demo)["train-jeans-fit"]


def test_pretraining_reads_each_image_region_once_and_never_the_test_split(
    tmp_path: Path, shipped_params_path: Path
) -> None:
    from pipelines.pretraining import components_using, unlabelled_crops

    params = load_params(shipped_params_path, "demo")
    rows = []
    for i in range(24):
        sha, split = f"{i:064x}", ("train", "val", "test", "train")[i % 4]
        for component in ("jeans-fit", "jeans-color", "jeans-damage"):  # one jeans region, three components
            rows.append(CropRow(component, sha, split, f"{component}/{sha}.png", "cropped", "", 0.9, "", "r"))
    rows.append(CropRow("shirt-collar", "f" * 64, "train", "", "skipped", "no_detection", None, "", "r"))
    write_index(tmp_path / "index.csv", rows)
    files = unlabelled_crops(tmp_path, params, limit=100)
    assert len(files) == 18  # 24 images, 6 of them test; the jeans region counted once
    assert all("f" * 64 not in f for f in files)
    assert components_using(params, tmp_path / "pretrain") == []
    uses = params.model_copy(
        update={
            "components": {
                name: c.model_copy(
                    update={
                        "training": c.training.model_copy(
                            update={"weights": str(tmp_path / "pretrain" / "base.weights.h5")}
                        )
                    }
                )
                for name, c in params.components.items()
            }
        }
    )
    assert components_using(uses, tmp_path / "pretrain") == list(params.components)


def test_nt_xent_is_low_when_views_agree_and_high_when_they_do_not() -> None:
    from pipelines.pretraining import nt_xent

    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 16)).astype("float32")
    agreeing = float(nt_xent(z, z + 0.01 * rng.normal(size=z.shape).astype("float32"), 0.2))
    shuffled = float(nt_xent(z, z[::-1].copy(), 0.2))
    assert agreeing < 0.5 < shuffled


def test_the_crop_stage_cuts_a_missed_collar_from_its_shirt_only_when_told(
    tmp_path: Path, shipped_params_path: Path
) -> None:
    from types import SimpleNamespace

    from pipelines.crop_set import _crop_pair

    record = record_with(detection("shirt", (10, 20, 70, 100), 0.9))
    cache = SimpleNamespace(records={"a" * 64: record})
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")  # only its presence is checked; the pixels are passed in

    def cut(fallback: str) -> CropRow:
        tree = read_params_file(shipped_params_path)
        tree["components"]["shirt-collar"]["on_no_detection"] = fallback
        params = resolve_params(tree, "demo")
        assert params.crop_for("jeans-color").on_no_detection == "skip"  # one component's own setting
        return _crop_pair(
            params, "shirt-collar", "a" * 64, "train", image(), {"a" * 64: photo}, cache, {}, "r", tmp_path
        )

    taken = cut("item_top")
    assert (taken.status, taken.reason, taken.box) == ("item_top", "no_detection", "25.0 20.0 55.0 44.0")
    assert (tmp_path / taken.file).is_file()
    assert (cut("skip").status, cut("skip").file) == ("skipped", "")
