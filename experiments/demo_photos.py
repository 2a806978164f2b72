"""How many true attributes the champions name on demo photos: `seamline predict --json` on each
photo, set against the demo shop's truth for its product. `make demo` ends by tagging two photos
(a pair of jeans, a shirt: six attributes in all); this counts what it got right. A tag printed as
`unknown` (below its validation threshold) names nothing.

Usage: python experiments/demo_photos.py [SHOP_DIR (default data/demo_shop)]
       [--photos site/img/SL00002/1.jpg site/img/SL00003/1.jpg]
Run after `make demo`, from the repository root (it reads the registry the demo filled).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from crawlers.demo_shop.truth import ATTRIBUTE, products

DEMO_PHOTOS = ("site/img/SL00002/1.jpg", "site/img/SL00003/1.jpg")  # what `make demo` tags at its end


def predictions(photos: list[Path]) -> list[dict[str, object]]:
    """`seamline predict --json`, one object per photo."""
    seamline = Path(sys.executable).with_name("seamline")
    said = subprocess.run(
        [str(seamline), "predict", "--json", *map(str, photos)], capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in said.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop", type=Path, nargs="?", default=Path("data/demo_shop"))
    parser.add_argument("--photos", nargs="+", default=list(DEMO_PHOTOS), help="paths inside the shop folder")
    args = parser.parse_args()
    truth = {product["id"]: product["labels"] for product in products(args.shop)}
    named = total = 0
    for answer, photo in zip(predictions([args.shop / p for p in args.photos]), args.photos, strict=True):
        product = Path(photo).parent.name
        tags = answer["components"]
        for component, attribute in ATTRIBUTE.items():
            if attribute not in truth[product]:
                continue
            true = truth[product][attribute]
            tag = tags.get(component, {})
            right = tag.get("label") == true
            named += right
            total += 1
            guess = f" (best guess {tag.get('best_guess')})" if tag.get("label") == "unknown" else ""
            mark = "right" if right else "wrong"
            print(f"{product} {component:<14} truth {true:<11} tagged {tag.get('label')}{guess}  {mark}")
    print(f"{named} of {total} true attributes named")


if __name__ == "__main__":
    main()
