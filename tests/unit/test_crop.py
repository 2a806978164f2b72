"""Square crops: centred, padded where the box leaves the image, never stretched."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.crop import box_of_points, crop_square, square_around


def test_square_around_keeps_the_centre_and_takes_the_longer_side() -> None:
    assert square_around((10, 20, 30, 60)) == (0.0, 20.0, 40.0, 60.0)
    assert square_around((0, 0, 10, 10), margin=0.1) == pytest.approx((-1.0, -1.0, 11.0, 11.0))


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
