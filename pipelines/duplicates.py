"""The same-photo rule: when two stored images are one photo — resized, re-encoded, watermarked or
cropped by a hair — and not two products that merely look alike.

A 64-bit grey-level pHash finds the candidates cheaply (within `candidate_hamming` bits: a plain
backdrop makes its bits unstable, so a resized packshot can move 12), but it cannot tell colourways
of one design apart, and on studio packshots (one model, one pose, a white background) distinct shirts sit a
few bits from each other. A candidate pair is one photo only when two more fingerprints agree:

- a **grey thumbnail** (32×32, four times the pHash's resolution), compared by the mean absolute
  difference of its grey levels, so another garment's shape, print or fold shows. Its pixels,
  not a hash of them: a hash of a smooth photo flips bits at every re-encoding;
- a **colour signature**: the mean CIELAB colour of each cell of an 8×8 grid, compared by the
  90th percentile of the cells' colour differences (ΔE76), so a hue turned or a colourway shows,
  while a watermark or a re-encoding, which move few cells little, does not.

Validation quarantines by this rule (`duplicate`) and the label stage groups photos by it for
leak-free splits. The thresholds are `validation.same_photo`; docs/results.md has the rates they
give on real photos.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipelines.config import SamePhotoParams
from pipelines.manifest import hamming, near_duplicate_pairs

GREY_SIDE = 32  # the grey thumbnail's side
COLOUR_CELLS = 8  # an 8×8 grid of mean colours
_GREY_BYTES = GREY_SIDE * GREY_SIDE
_COLOUR_BYTES = COLOUR_CELLS * COLOUR_CELLS * 3 * 2  # float16 per channel


@dataclass(frozen=True)
class Fingerprint:
    """What the same-photo rule compares beyond the pHash."""

    grey: np.ndarray  # (32, 32) uint8 grey levels
    colour: np.ndarray  # (8, 8, 3) float32, CIELAB

    def encoded(self) -> tuple[str, str]:
        """(grey thumbnail, colour signature) as hex strings, for a manifest column each."""
        return self.grey.astype(np.uint8).tobytes().hex(), self.colour.astype("<f2").tobytes().hex()

    @classmethod
    def decoded(cls, grey: str, colour: str) -> Fingerprint:
        grey_raw, colour_raw = bytes.fromhex(grey), bytes.fromhex(colour)
        if len(grey_raw) != _GREY_BYTES:
            raise ValueError(f"a grey thumbnail has {_GREY_BYTES} bytes, got {len(grey_raw)}")
        if len(colour_raw) != _COLOUR_BYTES:
            raise ValueError(f"a colour signature has {_COLOUR_BYTES} bytes, got {len(colour_raw)}")
        thumbnail = np.frombuffer(grey_raw, dtype=np.uint8).reshape(GREY_SIDE, GREY_SIDE)
        grid = np.frombuffer(colour_raw, dtype="<f2").astype(np.float32).reshape(COLOUR_CELLS, COLOUR_CELLS, 3)
        return cls(thumbnail, grid)


def fingerprint(image: Image.Image) -> Fingerprint:
    """The grey thumbnail and colour signature of a decoded image (any mode, any size)."""
    rgb = image.convert("RGB")
    grey = np.asarray(rgb.convert("L").resize((GREY_SIDE, GREY_SIDE), Image.Resampling.BOX), dtype=np.uint8)
    cells = np.asarray(rgb.resize((COLOUR_CELLS, COLOUR_CELLS), Image.Resampling.BOX), dtype=np.float64)
    return Fingerprint(grey, srgb_to_lab(cells).astype(np.float32))


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB values 0–255 (…, 3) → CIELAB under D65: a colour difference there is close to how
    different two colours look."""
    linear = rgb / 255.0
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def grey_difference(a: Fingerprint, b: Fingerprint) -> float:
    """The mean absolute difference of two grey thumbnails, in grey levels (0–255)."""
    return float(np.abs(a.grey.astype(np.float64) - b.grey.astype(np.float64)).mean())


def colour_difference(a: Fingerprint, b: Fingerprint) -> float:
    """The 90th percentile, over the 64 cells, of the colour difference (ΔE76) between two photos."""
    delta = np.sqrt(((a.colour.astype(np.float64) - b.colour.astype(np.float64)) ** 2).sum(axis=2))
    return float(np.percentile(delta, 90))


def same_photo(a: Fingerprint, b: Fingerprint, rule: SamePhotoParams) -> bool:
    """Whether two candidates (pHashes already near) are one photo: grey detail and colour agree."""
    return grey_difference(a, b) <= rule.grey_difference and colour_difference(a, b) <= rule.colour_delta_e


def same_photo_pairs(
    phashes: Sequence[str], fingerprints: Sequence[Fingerprint | None], max_distance: int, rule: SamePhotoParams
) -> Iterator[tuple[int, int]]:
    """Index pairs (a < b) of images that are one photo. Where both fingerprints are known: pHashes
    within `rule.candidate_hamming` bits and the same-photo rule. With one missing (a manifest from
    before fingerprints), the pHash alone, within the stricter `max_distance`."""
    widest = max(max_distance, rule.candidate_hamming)
    for a, b in near_duplicate_pairs(phashes, widest):
        first, second = fingerprints[a], fingerprints[b]
        if first is not None and second is not None:
            if hamming(phashes[a], phashes[b]) <= rule.candidate_hamming and same_photo(first, second, rule):
                yield a, b
        elif hamming(phashes[a], phashes[b]) <= max_distance:
            yield a, b
