"""The same-photo rule on real photos: how often it finds copies of one photo, and how often it
takes two products for one, beside the pHash-only rule it replaced.

Reads every photo under `--photos` (default ../shared/real-photos, 2,408 CC0 photos) and, for a
seeded sample, makes the copies a shop or a crawl produces:
- resized (40–90% of the side) and re-encoded as JPEG (quality 50–95): must be one photo;
- watermarked (a line of text in a corner) and re-encoded: must be one photo;
- cropped by 1% and by 3% of each side: may be one photo;
- hue turned by 90–120° (another colourway of one design), on photos with colour in them: must be
  two products.
Then every pair of distinct real photos whose pHashes are within `validation.near_duplicate_hamming`
(different garments shot alike) must be two products; and it reports how many photos each rule
would quarantine, and the largest split group it would form.

Last, the same on a packshot demo shop (`--difficulty packshot`: plain backdrop, one pose, each
design in three colourways): every product's front and close-up, plus a resized, re-encoded copy
of each front under a second product URL (a sale page). Distinct products must all be kept, the
copies quarantined, and no split group may be larger than a product's photos plus that copy (3).

Usage: python experiments/duplicates.py [--photos DIR] [--sample 600] [--seed 1] [--packshot-products 300]
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from crawlers.demo_shop.catalogue import make_product
from crawlers.demo_shop.render import render_view
from pipelines.config import SamePhotoParams, load_params
from pipelines.duplicates import Fingerprint, colour_difference, grey_difference, same_photo
from pipelines.labels import split_groups
from pipelines.manifest import hamming, near_duplicate_pairs, perceptual_hash
from pipelines.validation import duplicate_of, look_at

REAL_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "real-photos"
MIN_CHROMA = 8.0  # mean CIELAB chroma above which a turned hue is another colour, not the same grey


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def looked(data: bytes) -> tuple[str, Fingerprint]:
    """pHash as the crawl computes it (the whole image) and the fingerprint as validation does."""
    look = look_at(data)
    assert look is not None
    return perceptual_hash(pixels(data)), look.fingerprint


def resized(image: Image.Image, rng: random.Random) -> bytes:
    scale = rng.uniform(0.4, 0.9)
    size = (max(32, int(image.width * scale)), max(32, int(image.height * scale)))
    return jpeg(image.resize(size, Image.Resampling.LANCZOS), rng.randint(50, 95))


def watermarked(image: Image.Image) -> bytes:
    marked = image.copy()
    ImageDraw.Draw(marked).text((marked.width * 0.05, marked.height * 0.88), "(c) SHOP 2026", fill=(255, 255, 255))
    return jpeg(marked, 85)


def cropped(image: Image.Image, fraction: float) -> bytes:
    dx, dy = int(image.width * fraction), int(image.height * fraction)
    return jpeg(image.crop((dx, dy, image.width - dx, image.height - dy)), 85)


def hue_turned(image: Image.Image, degrees: float) -> bytes:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + round(degrees / 360 * 256)) % 256
    return jpeg(Image.fromarray(hsv, "HSV").convert("RGB"), 95)


def chroma(print_: Fingerprint) -> float:
    return float(np.sqrt((print_.colour[..., 1:].astype(np.float64) ** 2).sum(axis=2)).mean())


def packshot_study(products: int, seed: int, distance: int, rule: SamePhotoParams) -> None:
    started = time.perf_counter()
    shas: list[str] = []
    urls: list[str] = []
    is_copy: list[bool] = []
    phashes: list[str] = []
    prints: list[Fingerprint | None] = []
    rng = random.Random(seed)
    for index in range(products):
        product = make_product(index, seed, "packshot")
        for view in product.views:
            photo = Image.fromarray(render_view(product.garment, view, "packshot").pixels[..., ::-1])
            shots = [(jpeg(photo, 90), product.path, False)]
            if view == "front":
                shots.append((resized(photo, rng), f"/sale{product.path}", True))
            for data, url, copy in shots:
                phash, print_ = looked(data)
                shas.append(f"{product.id}/{view}/{copy}")
                urls.append(url.removeprefix("/sale"))  # the sale page sells the same product
                is_copy.append(copy)
                phashes.append(phash)
                prints.append(print_)
    print(
        f"\npackshot demo shop: {products} products ({products // 3} designs x 3 colourways), "
        f"{len(shas)} images incl. {sum(is_copy)} sale copies; rendered in {time.perf_counter() - started:.1f} s"
    )
    for name, photos in (("pHash only", [None] * len(shas)), ("the rule", prints)):
        found = duplicate_of(shas, phashes, photos, distance, rule)
        lost = sum(f is not None for f, c in zip(found, is_copy) if not c)
        caught = sum(f is not None for f, c in zip(found, is_copy) if c)
        groups = Counter(split_groups(urls, phashes, photos, distance, rule))
        print(
            f"{name:<11} distinct product photos quarantined {lost} of {len(shas) - sum(is_copy)}; "
            f"sale copies quarantined {caught / sum(is_copy):.1%}; largest split group {max(groups.values())} "
            f"(a product's own: 3)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=REAL_PHOTOS)
    parser.add_argument("--sample", type=int, default=600, help="photos the copies are made from")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--packshot-products", type=int, default=300, help="0 skips the packshot demo shop")
    args = parser.parse_args()
    validation = load_params().validation
    rule, distance = validation.same_photo, validation.near_duplicate_hamming
    files = sorted(args.photos.rglob("*.jpg"))
    started = time.perf_counter()
    data = [path.read_bytes() for path in files]
    images = [pixels(one) for one in data]
    phashes, prints = (list(column) for column in zip(*(looked(one) for one in data)))
    print(f"{len(files)} real photos from {args.photos}; fingerprints in {time.perf_counter() - started:.1f} s")
    print(
        f"rule: pHash within {rule.candidate_hamming} bits (pHash only: {distance}), grey difference within "
        f"{rule.grey_difference:g}, "
        f"colour difference (p90 ΔE76) within {rule.colour_delta_e:g}"
    )

    rng = random.Random(args.seed)
    chosen = rng.sample(range(len(files)), min(args.sample, len(files)))
    cases = {"resized + re-encoded": [], "watermarked": [], "cropped 1%": [], "cropped 3%": [], "hue turned": []}
    for index in chosen:
        original, copies = images[index], {}
        copies["resized + re-encoded"] = resized(original, rng)
        copies["watermarked"] = watermarked(original)
        copies["cropped 1%"] = cropped(original, 0.01)
        copies["cropped 3%"] = cropped(original, 0.03)
        if chroma(prints[index]) >= MIN_CHROMA:
            copies["hue turned"] = hue_turned(original, rng.uniform(90, 120))
        for kind, copy in copies.items():
            copy_hash, copy_print = looked(copy)
            bits = hamming(phashes[index], copy_hash)
            cases[kind].append(
                (
                    bits <= distance,
                    bits <= rule.candidate_hamming and same_photo(prints[index], copy_print, rule),
                    grey_difference(prints[index], copy_print),
                    colour_difference(prints[index], copy_print),
                )
            )
    print(
        f"\n{'case':<22} {'pairs':>6} {'one photo, pHash only':>22} {'one photo, the rule':>20} "
        f"{'grey p50/max':>20} {'colour p50/max':>16}"
    )
    for kind, rows in cases.items():
        old = sum(close for close, _, _, _ in rows)
        new = sum(same for _, same, _, _ in rows)
        greys = [d for _, _, d, _ in rows]
        colours = [c for _, _, _, c in rows]
        print(
            f"{kind:<22} {len(rows):>6} {old / len(rows):>22.1%} {new / len(rows):>20.1%} "
            f"{np.median(greys):>10.1f} / {max(greys):<8.1f} {np.median(colours):>8.1f} / {max(colours):.1f}"
        )

    pairs = list(near_duplicate_pairs(phashes, distance))
    candidates = list(near_duplicate_pairs(phashes, rule.candidate_hamming))
    same = [pair for pair in candidates if same_photo(prints[pair[0]], prints[pair[1]], rule)]
    print(
        f"\ndistinct real photos: {len(pairs)} pairs with pHashes within {distance} bits, all one photo by "
        f"pHash only; {len(candidates)} candidate pairs within {rule.candidate_hamming} bits, one photo by the "
        f"rule: {len(same)}"
    )
    shas = [str(i) for i in range(len(files))]
    old_quarantine = sum(
        found is not None for found in duplicate_of(shas, phashes, [None] * len(files), distance, rule)
    )
    new_quarantine = sum(found is not None for found in duplicate_of(shas, phashes, prints, distance, rule))
    print(f"quarantined as duplicates: pHash only {old_quarantine}, the rule {new_quarantine} (of {len(files)})")
    products = [str(path) for path in files]  # one product per photo: the folders name no products
    for name, photos in (("pHash only", [None] * len(files)), ("the rule", prints)):
        groups = Counter(split_groups(products, phashes, photos, distance, rule))
        largest = max(groups.values())
        print(
            f"split groups, {name}: largest {largest} photos; {sum(n for n in groups.values() if n > 1)} "
            f"photos in groups of two or more"
        )
    if args.packshot_products:
        packshot_study(args.packshot_products, args.seed, distance, rule)


if __name__ == "__main__":
    main()
