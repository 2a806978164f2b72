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


from pipelines.crop import crop_for_mode, largest_box  # noqa: E402


def scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((60, 80, 3), 50, dtype=np.uint8)
    image[20:40, 30:50] = 200  # the garment
    mask = np.zeros((60, 80), dtype=bool)
    mask[25:35, 35:45] = True  # its mask is smaller than its box
    return image, mask


def test_largest_box_is_chosen() -> None:
    assert largest_box(np.array([[0, 0, 10, 10], [5, 5, 40, 30], [0, 0, 20, 20]])) == 1
    assert largest_box(np.zeros((0, 4))) is None


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
