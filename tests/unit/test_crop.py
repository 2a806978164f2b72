"""Square crops: centred, padded where the box leaves the image, never stretched."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.crop import box_of_points, crop_square, square_around


def test_square_around_keeps_the_centre_and_takes_the_longer_side() -> None:
    assert square_around((10, 20, 30, 60)) == (0.0, 20.0, 40.0, 60.0)
    assert square_around((0, 0, 10, 10), margin=0.1) == pytest.approx((-1.0, -1.0, 11.0, 11.0))


def test_a_negative_margin_zooms_into_the_centre() -> None:
    assert square_around((0, 0, 40, 20), margin=-0.25) == pytest.approx((10.0, 0.0, 30.0, 20.0))
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[15:25, 15:25] = 255  # the middle quarter of the box's side, white
    zoomed = crop_square(image, (0, 0, 40, 40), size=20, margin=-0.375)  # keeps the middle 10 px
    assert (zoomed == 255).all()


def test_box_of_points() -> None:
    assert box_of_points(np.array([(3, 9), (7, 1), (5, 5)])) == (3.0, 1.0, 7.0, 9.0)


def test_crop_pads_outside_the_image_instead_of_stretching() -> None:
    image = np.full((10, 40, 3), 200, dtype=np.uint8)
    crop = crop_square(image, (0, 0, 40, 10), size=40, fill=0)
    assert crop.shape == (40, 40, 3)
    # A 40x10 strip centred in a 40x40 square: rows 15..24 are image, the rest padding.
    assert (crop[15:25] == 200).all()
    assert (crop[:15] == 0).all() and (crop[25:] == 0).all()


def test_crop_of_a_marked_region_lands_in_the_middle() -> None:
    image = np.zeros((100, 100), dtype=np.uint8)
    image[40:60, 30:50] = 255
    crop = crop_square(image, (30, 40, 50, 60), size=20)
    assert crop.shape == (20, 20)
    assert crop.mean() == pytest.approx(255)


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="size must be positive"):
        crop_square(np.zeros((4, 4), np.uint8), (0, 0, 4, 4), size=0)


from pipelines.config import ComponentParams, CropParams, TrainingParams  # noqa: E402
from pipelines.crop import NO_ITEM, Region, component_crop, crop_for_mode  # noqa: E402
from pipelines.detect import Detection  # noqa: E402


def scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((60, 80, 3), 50, dtype=np.uint8)
    image[20:40, 30:50] = 200  # the garment
    mask = np.zeros((60, 80), dtype=bool)
    mask[25:35, 35:45] = True  # its mask is smaller than its box
    return image, mask


COLLAR = ComponentParams(
    item="shirt", classes=("band", "regular"), crop_region="collar", training=TrainingParams(weights=None)
)


def found(category: str, box: tuple[float, float, float, float], score: float) -> Detection:
    return Detection(category, score, box, np.ones((60, 80), bool))


@pytest.mark.parametrize(("pick", "expected"), [("largest", (30, 20, 50, 40)), ("most_confident", (35, 25, 40, 30))])
def test_a_component_crop_takes_the_region_the_pick_rule_chooses(pick: str, expected: tuple) -> None:
    image, _ = scene()
    detections = [found("shirt", (0, 0, 80, 60), 0.9), found("collar", (30, 20, 50, 40), 0.6)]
    detections.append(found("collar", (35, 25, 40, 30), 0.95))
    cut = component_crop(image, detections, COLLAR, CropParams(size=32, pick=pick), 0.5, ("shirt", "collar", "jeans"))
    assert (cut.status, cut.reason, cut.region.box) == ("cropped", "", expected)
    assert cut.pixels.shape == (32, 32, 3)


def test_a_component_crop_says_why_it_has_none() -> None:
    image, _ = scene()
    categories, recipe = ("shirt", "collar", "jeans"), CropParams(size=32)
    no_shirt = component_crop(image, [found("jeans", (0, 0, 80, 60), 0.9)], COLLAR, recipe, 0.5, categories)
    assert (no_shirt.pixels, no_shirt.status, no_shirt.reason) == (None, NO_ITEM, "no shirt found")
    shirt_only = [found("shirt", (0, 0, 80, 60), 0.9), found("collar", (30, 20, 50, 40), 0.3)]  # collar below 0.5
    no_collar = component_crop(image, shirt_only, COLLAR, recipe, 0.5, categories)
    assert (no_collar.pixels, no_collar.status, no_collar.reason) == (None, "skipped", "no collar found")
    whole = component_crop(
        image, shirt_only, COLLAR, recipe.model_copy(update={"on_no_detection": "full_image"}), 0.5, categories
    )
    assert (whole.status, whole.reason, whole.pixels.shape) == ("full_image", "no collar found", (32, 32, 3))
    anyway = component_crop(image, [], COLLAR, recipe, 0.5, categories, require_item=False)
    assert (anyway.status, anyway.reason) == ("skipped", "no collar found")


def test_a_missed_collar_can_come_from_the_top_of_its_shirt() -> None:
    image, _ = scene()
    categories = ("shirt", "collar", "jeans")
    recipe = CropParams(size=32, on_no_detection="item_top")
    shirt_only = [found("shirt", (20, 10, 60, 50), 0.9), found("collar", (30, 20, 50, 40), 0.3)]
    cut = component_crop(image, shirt_only, COLLAR, recipe, 0.5, categories)
    # the top 30% of the shirt's box, less a quarter of its width each side
    assert (cut.status, cut.region.box, cut.pixels.shape) == ("item_top", (30.0, 10, 50.0, 22.0), (32, 32, 3))
    assert cut.reason == "no collar found: the top of the shirt"
    found_collar = component_crop(
        image, [*shirt_only, found("collar", (35, 25, 40, 30), 0.8)], COLLAR, recipe, 0.5, categories
    )
    assert (found_collar.status, found_collar.region.box) == ("cropped", (35, 25, 40, 30))
    no_shirt = component_crop(image, [found("jeans", (0, 0, 80, 60), 0.9)], COLLAR, recipe, 0.5, categories)
    assert (no_shirt.pixels, no_shirt.status) == (None, NO_ITEM)


def test_annotation_mode_crops_the_ground_truth_region() -> None:
    image, _ = scene()
    truth = {"collar": Region((30, 20, 50, 40), None, None)}
    recipe = CropParams(mode="annotation", size=32)
    cut = component_crop(
        image, [found("shirt", (0, 0, 80, 60), 0.9)], COLLAR, recipe, 0.5, ("shirt",), ground_truth=truth
    )
    assert cut.region is truth["collar"] and (cut.pixels == 200).all()


def test_modes_give_squares_of_the_requested_size() -> None:
    image, mask = scene()
    box = (30, 20, 50, 40)
    bbox = crop_for_mode(image, "bbox", 20, box)
    assert bbox.shape == (20, 20, 3) and (bbox == 200).all()
    masked = crop_for_mode(image, "mask", 20, box, mask)
    assert masked[10, 10].tolist() == [200, 200, 200] and masked[0, 0].tolist() == [0, 0, 0]
    alpha = crop_for_mode(image, "mask_alpha", 20, box, mask)
    assert alpha.shape == (20, 20, 4) and alpha[10, 10, 3] == 255 and alpha[0, 0, 3] == 0
    whole = crop_for_mode(image, "none", 40)
    assert whole.shape == (40, 40, 3) and (whole[:5] == 0).all()  # 80x60 padded top and bottom


@pytest.mark.parametrize(
    ("mode", "kwargs", "message"),
    [
        ("bbox", {}, "needs a box"),
        ("mask", {"box": (0, 0, 5, 5)}, "needs a mask"),
        ("sketch", {"box": (0, 0, 5, 5), "mask": np.ones((60, 80))}, "unknown crop mode 'sketch'"),
    ],
)
def test_mode_errors_are_clear(mode: str, kwargs: dict, message: str) -> None:
    image, _ = scene()
    with pytest.raises(ValueError, match=message):
        crop_for_mode(image, mode, 20, **kwargs)
