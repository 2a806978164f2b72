"""Synthetic garments: each class drawn as its real shape, deterministic, with Labelme regions."""

from __future__ import annotations

import re

import numpy as np
import pytest

from crawlers.demo_shop.catalogue import SYNONYMS, jeans_title, make_product, shirt_title
from crawlers.demo_shop.garments import ATTRIBUTES, FIT_WIDTHS, GarmentSpec, collar_shape, leg_width
from crawlers.demo_shop.render import render_view


def test_same_spec_and_view_give_identical_pixels() -> None:
    spec = GarmentSpec("shirt", {"collar": "notched", "pattern": "floral"}, 1234)
    first, again = render_view(spec, "front", "hard"), render_view(spec, "front", "hard")
    assert np.array_equal(first.pixels, again.pixels)
    assert not np.array_equal(first.pixels, render_view(spec, "alt", "hard").pixels)


@pytest.mark.parametrize("collar", ATTRIBUTES["shirt"]["collar"])
def test_shirt_photo_has_shirt_and_collar_regions_inside_the_image(collar: str) -> None:
    image = render_view(GarmentSpec("shirt", {"collar": collar, "pattern": "solid"}, 99), "front", "medium")
    height, width = image.pixels.shape[:2]
    regions = {region.label: region.points for region in image.regions}
    assert set(regions) == {"shirt", "collar"}
    for points in regions.values():
        assert len(points) >= 3
        assert (points >= 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
    # The collar sits at the top of the shirt.
    assert regions["collar"][:, 1].mean() < regions["shirt"][:, 1].mean()


def test_jeans_photo_has_one_jeans_region_taller_than_wide() -> None:
    spec = GarmentSpec("jeans", {"fit": "skinny", "color": "deep", "washing": "one", "damage": "damage"}, 5)
    (region,) = render_view(spec, "front", "easy").regions
    span = region.points.max(axis=0) - region.points.min(axis=0)
    assert region.label == "jeans" and span[1] > 1.5 * span[0]


def test_fits_differ_where_they_should() -> None:
    hem, knee = np.array([1.95]), np.array([1.15])
    at_hem = {fit: float(leg_width(fit, hem, np.ones(3))[0]) for fit in FIT_WIDTHS}
    at_knee = {fit: float(leg_width(fit, knee, np.ones(3))[0]) for fit in FIT_WIDTHS}
    assert at_hem["skinny"] < at_hem["regular"] < at_hem["bootcut"] < at_hem["wide"]
    assert at_knee["bootcut"] < at_knee["regular"]  # bootcut: narrow knee, flared hem
    assert at_hem["bootcut"] > at_knee["bootcut"]


def test_collar_shapes_carry_their_defining_details() -> None:
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    band, regular = collar_shape("band", rng()), collar_shape("regular", rng())
    button_down, notched = collar_shape("button_down", rng()), collar_shape("notched", rng())
    assert len(band.pieces) == 1 and band.opening is None  # a strip, no points
    assert len(button_down.buttons) == len(regular.buttons) + 2  # buttons at both tips
    assert notched.opening is not None  # lapels open into a V
    with pytest.raises(ValueError, match="unknown collar"):
        collar_shape("spread", rng())


def _mentions(title: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", title, flags=re.IGNORECASE) is not None


@pytest.mark.parametrize("attribute", ["collar", "pattern", "fit", "color", "washing", "damage"])
def test_titles_mostly_name_the_true_class_and_rarely_another(attribute: str) -> None:
    item = "shirt" if attribute in ATTRIBUTES["shirt"] else "jeans"
    make_title = shirt_title if item == "shirt" else jeans_title
    mentioned = wrong = 0
    for seed in range(600):
        rng = np.random.default_rng(seed)
        labels = {name: str(rng.choice(classes)) for name, classes in ATTRIBUTES[item].items()}
        title = make_title(rng, labels)
        truth = labels[attribute]
        if any(_mentions(title, phrase) for phrase in SYNONYMS[attribute][truth]):
            mentioned += 1
        if any(_mentions(title, p) for other, ps in SYNONYMS[attribute].items() if other != truth for p in ps):
            wrong += 1
    # Most titles say it, some say nothing, a few say the wrong thing: weak labels have
    # coverage to gain and precision to lose, as on a real shop.
    assert 0.25 < mentioned / 600 < 0.95
    assert 0 < wrong / 600 < 0.06


def test_products_are_independent_of_build_order() -> None:
    assert make_product(17, seed=3) == make_product(17, seed=3)
    assert make_product(17, seed=3).id == "SL00018"
    assert make_product(17, seed=3) != make_product(17, seed=4)


def test_packshot_products_are_one_design_in_three_colourways_on_one_backdrop() -> None:
    shirts = [make_product(index, seed=1, difficulty="packshot") for index in (54, 55, 56)]
    assert {p.garment.style_seed for p in shirts} == {shirts[0].garment.style_seed}
    assert [p.garment.colourway for p in shirts] == [0, 1, 2]
    assert all(p.garment.labels == shirts[0].garment.labels for p in shirts)
    assert all(p.views == ("front", "detail") for p in shirts)
    photos = [render_view(p.garment, "front", "packshot") for p in shirts]
    regions = [next(r.points for r in photo.regions if r.label == "shirt") for photo in photos]
    assert all(np.allclose(points, regions[0], atol=1.0) for points in regions)  # one pose
    corners = [photo.pixels[:20, :20].reshape(-1, 3).mean(axis=0) for photo in photos]
    assert all(np.abs(corner - 244).max() < 15 for corner in corners)  # a plain studio backdrop
    inside = [photo.pixels[240, 180].astype(int) for photo in photos]
    assert np.abs(inside[0] - inside[1]).sum() > 30 and np.abs(inside[1] - inside[2]).sum() > 30
    # Jeans designs come in each wash: the colourways are three colour classes.
    jeans = [make_product(index, seed=1, difficulty="packshot").garment.labels["color"] for index in (3, 4, 5)]
    assert sorted(jeans) == ["deep", "light", "middle"]
