"""The same-photo rule on real photos (tests/fixtures/real-photos, CC0): copies of one photo are one
photo; another colourway, and another garment shot alike, are two products."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crawlers.demo_shop.catalogue import make_product
from crawlers.demo_shop.render import render_view
from pipelines.config import SamePhotoParams
from pipelines.duplicates import (
    Fingerprint,
    colour_difference,
    fingerprint,
    grey_difference,
    same_photo,
    same_photo_pairs,
)
from pipelines.labels import split_groups
from pipelines.manifest import hamming, perceptual_hash
from pipelines.validation import duplicate_of, look_at

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "real-photos"
RULE = SamePhotoParams()
DISTANCE = 6  # params.yaml validation.near_duplicate_hamming
COLOURED = ["shirt/185b7ae2-0400-40ae-8668-6ac72f737060.jpg", "shirt/02eb668a-0d6d-46df-8e1a-06457ac14b4a.jpg"]
LOOK_ALIKES = [
    ("shirt/5b9d766d-0ad8-41e2-8a2e-2b1227e871dc.jpg", "shirt/7f427c6f-1c20-4ea0-a1d7-7e46715eeb8a.jpg"),
    ("pants/5309ce8a-f957-4618-8605-31d9382b515e.jpg", "pants/79f4f25d-000c-4440-9ac8-2094a90a0fed.jpg"),
    ("t-shirt/909a99a7-1119-4a76-a33c-fc7932e1d6f3.jpg", "t-shirt/ba5bc47d-9651-4164-9310-b9d2108f9f6e.jpg"),
]


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def looked(data: bytes) -> tuple[str, Fingerprint]:
    """The pHash as the crawl takes it and the fingerprint as validation takes it."""
    look = look_at(data)
    assert look is not None
    return perceptual_hash(Image.open(io.BytesIO(data))), look.fingerprint


def is_one_photo(a: bytes, b: bytes) -> bool:
    (hash_a, print_a), (hash_b, print_b) = looked(a), looked(b)
    return hamming(hash_a, hash_b) <= RULE.candidate_hamming and same_photo(print_a, print_b, RULE)


def hue_turned(image: Image.Image, degrees: float) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + round(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


@pytest.mark.parametrize("name", COLOURED + [name for pair in LOOK_ALIKES for name in pair])
@pytest.mark.parametrize(("scale", "quality"), [(0.5, 60), (0.75, 85), (0.9, 95)])
def test_a_resized_re_encoded_copy_is_the_same_photo(name: str, scale: float, quality: int) -> None:
    original = (PHOTOS / name).read_bytes()
    image = Image.open(io.BytesIO(original))
    copy = jpeg(image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.LANCZOS), quality)
    assert is_one_photo(original, copy)


@pytest.mark.parametrize("name", COLOURED)
def test_a_watermarked_copy_is_the_same_photo(name: str) -> None:
    image = Image.open(PHOTOS / name).convert("RGB")
    ImageDraw.Draw(image).text((image.width * 0.05, image.height * 0.9), "(c) SHOP", fill=(255, 255, 255))
    assert is_one_photo((PHOTOS / name).read_bytes(), jpeg(image, 85))


@pytest.mark.parametrize("name", COLOURED)
@pytest.mark.parametrize("degrees", [90, 105, 120])
def test_the_same_photo_with_its_hue_turned_is_another_product(name: str, degrees: int) -> None:
    original = (PHOTOS / name).read_bytes()
    turned = jpeg(hue_turned(Image.open(io.BytesIO(original)), degrees), 95)
    (_, before), (_, after) = looked(original), looked(turned)
    assert colour_difference(before, after) > 3 * RULE.colour_delta_e  # far off, not near the line
    assert not is_one_photo(original, turned)


@pytest.mark.parametrize(("first", "second"), LOOK_ALIKES)
def test_two_garments_shot_alike_are_two_products(first: str, second: str) -> None:
    (hash_a, print_a), (hash_b, print_b) = looked((PHOTOS / first).read_bytes()), looked((PHOTOS / second).read_bytes())
    assert hamming(hash_a, hash_b) <= DISTANCE  # the pHash alone took them for one photo
    assert grey_difference(print_a, print_b) > 2 * RULE.grey_difference  # well past the line, not near it
    assert not same_photo(print_a, print_b, RULE)


def test_quarantine_and_split_groups_keep_look_alikes_and_join_copies() -> None:
    """A catalogue of the six look-alike photos plus a re-encoded copy of each: validation's
    duplicate check quarantines exactly the copies, and split groups join each photo with its copy
    only."""
    names = [name for pair in LOOK_ALIKES for name in pair]
    originals = [(PHOTOS / name).read_bytes() for name in names]
    copies = [jpeg(Image.open(io.BytesIO(data)).resize((300, 400)), 70) for data in originals]
    looks = [looked(data) for data in originals + copies]
    phashes, prints = [h for h, _ in looks], [p for _, p in looks]
    shas = [f"{i:064x}" for i in range(len(looks))]
    found = duplicate_of(shas, phashes, prints, DISTANCE, RULE)
    assert found == [None] * 6 + shas[:6]
    groups = split_groups([f"product-{i}" for i in range(12)], phashes, prints, DISTANCE, RULE)
    assert len(set(groups)) == 6 and all(groups[i] == groups[i + 6] for i in range(6))
    pHash_only = split_groups([f"product-{i}" for i in range(12)], phashes, [None] * 12, DISTANCE, RULE)
    assert len(set(pHash_only)) == 3  # what the pHash alone made of it: each pair of products chained


def test_a_fingerprint_survives_its_manifest_columns() -> None:
    print_ = fingerprint(Image.open(PHOTOS / COLOURED[0]))
    grey, colour = print_.encoded()
    again = Fingerprint.decoded(grey, colour)
    assert grey_difference(again, print_) == 0
    assert colour_difference(again, print_) < 0.1  # float16 in the column
    with pytest.raises(ValueError, match="colour signature has 384 bytes"):
        Fingerprint.decoded(grey, colour[:-2])
    with pytest.raises(ValueError, match="grey thumbnail has 1024 bytes"):
        Fingerprint.decoded(grey[:-2], colour)


def test_packshot_colourways_are_products_and_a_resized_packshot_is_one_photo() -> None:
    """The demo shop's packshot mode: one check shirt in three colourways, shot identically on a
    plain backdrop, and a sale page's resized copy of the first. On a plain backdrop the resize
    moves the pHash past the pHash-only distance; the colourways sit within it."""
    photos = [
        Image.fromarray(render_view(make_product(index, 1, "packshot").garment, "front", "packshot").pixels[..., ::-1])
        for index in (54, 55, 56)
    ]
    shots = [jpeg(photo, 90) for photo in photos] + [jpeg(photos[0].resize((180, 240), Image.Resampling.LANCZOS), 75)]
    hashes, prints = (list(column) for column in zip(*(looked(shot) for shot in shots)))
    assert hamming(hashes[0], hashes[3]) > DISTANCE
    assert all(hamming(hashes[a], hashes[b]) <= DISTANCE for a, b in [(0, 1), (0, 2), (1, 2)])
    assert list(same_photo_pairs(hashes, prints, DISTANCE, RULE)) == [(0, 3)]
    # Without fingerprints only the pHash speaks, and it takes the colourways for one photo.
    assert (0, 1) in list(same_photo_pairs(hashes, [None] * 4, DISTANCE, RULE))
    groups = split_groups(["p54", "p55", "p56", "p54"], hashes, prints, DISTANCE, RULE)
    assert groups[0] == groups[3] and len({groups[0], groups[1], groups[2]}) == 3
