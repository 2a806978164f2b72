"""Build the demo shop: a static site of rendered products, with the faults real shops have.

Layout of a built shop (only `site/` is served; the rest is ground truth for tests and
benchmarks, never read by the pipeline):

    OUT/site/            index.html, robots.txt, sitemap.xml, shirts/, jeans/, sale/, p/, img/
    OUT/ground_truth.jsonl   one product a line: URL path, item, labels, images
    OUT/faults.json          every planted fault: kind, URL path, product
    OUT/annotations/         one Labelme JSON per clean product photo
    OUT/shop.json            what was built (products, seed, difficulty, counts)

Absolute URLs (JSON-LD, OpenGraph, sitemap, robots) carry the `{{ORIGIN}}` token, which the
server replaces with its own origin, so a built shop can be served on any port.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path

import cv2
import numpy as np

from crawlers.demo_shop.catalogue import Product, make_product
from crawlers.demo_shop.garments import Difficulty
from crawlers.demo_shop.render import RenderedImage, render_view

ORIGIN = "{{ORIGIN}}"
PAGE_SIZE = 24
SHOPIFY_PAGE_SIZE = 50
THUMB_SIZE = (180, 240)
HUGE_SIZE = (6000, 7200)  # 43.2 Mpx: past the crawl's decompression-bomb limit
OFF_DOMAIN = "https://social.example.com/seamline-demo"
OFF_DOMAIN_LISTING = "http://other-shop.example.net/jeans/"
PLACEHOLDER_GIF = bytes.fromhex(
    "47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b"
)
FAULT_COUNTS = {"broken_link": 3, "corrupt_image": 1, "not_an_image": 1, "huge_image": 1, "duplicate_product": 1}
SHOP_FORMAT = 1


class ShopBuildError(RuntimeError):
    """The shop cannot be built where asked; nothing was changed."""


@dataclass(frozen=True)
class ImageFile:
    url: str
    view: str
    fmt: str
    data: bytes  # emptied once written, so workers send back only what the pages need
    regions: list[dict]  # Labelme shapes, empty for faulty files
    width: int
    height: int
    fault: str | None = None


@dataclass
class ProductFiles:
    product: Product
    images: list[ImageFile]


# --- planning -------------------------------------------------------------------------------


def plan_faults(products: int, seed: int) -> dict[int, str]:
    """Which product gets which planted fault; each on its second photo, so the product keeps a
    clean main image. Small shops get as many faults as they have products for."""
    order = np.random.default_rng([seed, 7919]).permutation(products)
    kinds = [kind for kind, count in FAULT_COUNTS.items() for _ in range(count)]
    return {int(index): kind for index, kind in zip(order, kinds)}


def image_format(product: Product, seed: int) -> str:
    """Most shops serve JPEG; some PNG and WebP."""
    draw = np.random.default_rng([seed, int(product.id[2:]), 31]).random()
    return "png" if draw < 0.08 else "webp" if draw < 0.16 else "jpeg"


_EXTENSION = {"jpeg": "jpg", "png": "png", "webp": "webp"}


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    params = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, 90],
        "png": [cv2.IMWRITE_PNG_COMPRESSION, 6],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, 90],
    }[fmt]
    ok, encoded = cv2.imencode(f".{_EXTENSION[fmt]}", pixels, params)
    if not ok:
        raise ShopBuildError(f"OpenCV could not encode a {fmt} image")
    return encoded.tobytes()


def _labelme_shapes(image: RenderedImage) -> list[dict]:
    return [
        {
            "label": region.label,
            "points": [[round(float(x), 1), round(float(y), 1)] for x, y in region.points],
            "group_id": None,
            "description": "",
            "shape_type": "polygon",
            "flags": {},
        }
        for region in image.regions
    ]


def render_product(task: tuple[int, int, str, str | None, Path]) -> ProductFiles:
    """Render, encode and write one product's photos under `site` (runs in a worker process)."""
    index, seed, difficulty, fault, site = task
    product = make_product(index, seed, difficulty)  # type: ignore[arg-type]
    fmt = image_format(product, seed)
    files = ProductFiles(product, [])
    for number, view in enumerate(product.views, start=1):
        rendered = render_view(product.garment, view, difficulty)  # type: ignore[arg-type]
        height, width = rendered.pixels.shape[:2]
        url = f"/img/{product.id}/{number}.{_EXTENSION[fmt]}"
        data = _encode(rendered.pixels, fmt)
        image = ImageFile(url, view, fmt, data, _labelme_shapes(rendered), width, height)
        if number == 2 and fault in ("broken_link", "corrupt_image", "not_an_image", "huge_image"):
            image = _plant(image, fault, rendered.pixels)
        if image.fault != "broken_link":
            _write(site, image.url, image.data)
        files.images.append(replace(image, data=b""))
        if number == 1:
            thumb = _encode(cv2.resize(rendered.pixels, THUMB_SIZE, interpolation=cv2.INTER_AREA), "jpeg")
            _write(site, f"/img/{product.id}/thumb.jpg", thumb)
            if product.template == "plain":
                _write(site, f"/img/{product.id}/1-180w.jpg", thumb)
    return files


def _plant(image: ImageFile, fault: str, pixels: np.ndarray) -> ImageFile:
    if fault == "broken_link":
        url = image.url.replace(f"/{image.url.rsplit('/', 1)[1]}", f"/missing-{image.url.rsplit('/', 1)[1]}")
        return ImageFile(url, image.view, image.fmt, b"", [], image.width, image.height, fault)
    if fault == "corrupt_image":
        jpeg = _encode(pixels, "jpeg")
        url = image.url.rsplit(".", 1)[0] + ".jpg"
        return ImageFile(url, image.view, "jpeg", jpeg[: len(jpeg) // 2], [], image.width, image.height, fault)
    if fault == "not_an_image":
        page = b"<!doctype html><html><body><h1>Image temporarily unavailable</h1></body></html>\n"
        url = image.url.rsplit(".", 1)[0] + ".jpg"
        return ImageFile(url, image.view, "html", page, [], image.width, image.height, fault)
    if fault == "huge_image":
        huge = cv2.resize(pixels, HUGE_SIZE, interpolation=cv2.INTER_LINEAR)
        url = image.url.rsplit(".", 1)[0] + ".jpg"
        return ImageFile(url, image.view, "jpeg", _encode(huge, "jpeg"), [], *HUGE_SIZE, fault)
    raise ValueError(f"unknown fault {fault!r}")


# --- HTML -----------------------------------------------------------------------------------


def _page(title: str, body: str, head: str = "") -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)} | Seamline Demo Shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
{head}</head>
<body>
<header class="site-header">
  <a class="logo" href="/">Seamline Demo Shop</a>
  <nav class="menu"><a href="/shirts/">Shirts</a> <a href="/jeans/">Jeans</a> <a href="/sale/">Sale</a>
  <a href="/cart/">Cart</a> <a href="/account/">Account</a></nav>
</header>
<main>
{body}
</main>
<footer class="site-footer">
  <a href="{OFF_DOMAIN}" rel="external">Follow us</a> · <a href="/sitemap.xml">Sitemap</a>
</footer>
</body>
</html>
"""


def _category_url(crumb: str) -> str | None:
    return {"Shirts": "/shirts/", "Jeans": "/jeans/", "Home": "/"}.get(crumb)


def _breadcrumb_html(product: Product) -> str:
    parts = []
    for crumb in product.breadcrumb:
        url = _category_url(crumb)
        parts.append(f'<a href="{url}">{escape(crumb)}</a>' if url else f"<span>{escape(crumb)}</span>")
    return '<nav class="breadcrumb">' + " › ".join(parts) + "</nav>"


def _gallery_html(product: Product, images: list[ImageFile]) -> str:
    items = []
    for number, image in enumerate(images, start=1):
        alt = escape(product.title)
        css = "main-image" if number == 1 else "gallery-image"
        if product.template == "plain":
            srcset = f' srcset="/img/{product.id}/1-180w.jpg 180w, {image.url} 360w"' if number == 1 else ""
            items.append(
                f'<img class="{css} lazy" src="/static/placeholder.gif" data-src="{image.url}"{srcset} alt="{alt}">'
            )
        elif product.template == "opengraph" and number > 1:
            items.append(f'<div class="{css}" data-setbg="{image.url}" role="img" aria-label="{alt}"></div>')
        else:
            items.append(
                f'<img class="{css}" src="{image.url}" alt="{alt}" width="{image.width}" height="{image.height}">'
            )
    return '<div class="gallery">\n  ' + "\n  ".join(items) + "\n</div>"


def _jsonld(product: Product, path: str, images: list[ImageFile]) -> str:
    data = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": product.title,
        "sku": product.id,
        "description": product.description,
        "category": " > ".join(product.breadcrumb[1:]),
        "image": [ORIGIN + image.url for image in images],
        "offers": {
            "@type": "Offer",
            "price": f"{product.price:.2f}",
            "priceCurrency": "EUR",
            "availability": "https://schema.org/InStock",
            "url": ORIGIN + path,
        },
    }
    crumbs = {
        "@context": "https://schema.org",
        "@type": "BreadcrumbList",
        "itemListElement": [
            {"@type": "ListItem", "position": i, "name": crumb} for i, crumb in enumerate(product.breadcrumb, 1)
        ],
    }
    return "".join(
        f'<script type="application/ld+json">{json.dumps(block, ensure_ascii=False)}</script>\n'
        for block in (data, crumbs)
    )


def _opengraph(product: Product, path: str, images: list[ImageFile]) -> str:
    tags = [
        ("og:type", "product"),
        ("og:title", product.title),
        ("og:url", ORIGIN + path),
        ("og:image", ORIGIN + images[0].url),
        ("product:price:amount", f"{product.price:.2f}"),
        ("product:price:currency", "EUR"),
    ]
    return "".join(f'<meta property="{key}" content="{escape(value)}">\n' for key, value in tags)


def product_page(product: Product, path: str, images: list[ImageFile]) -> str:
    head = ""
    if product.template == "jsonld":
        head = _jsonld(product, path, images) + _opengraph(product, path, images)
    elif product.template == "opengraph":
        head = _opengraph(product, path, images)
    body = f"""{_breadcrumb_html(product)}
<article class="product" data-product-id="{product.id}">
<h1 class="product-title">{escape(product.title)}</h1>
<p class="price" data-currency="EUR">€{product.price:.2f}</p>
{_gallery_html(product, images)}
<div class="description"><p>{escape(product.description)}</p></div>
<a class="add-to-cart" href="/cart/?add={product.id}">Add to cart</a>
</article>"""
    return _page(product.title, body, head)


def listing_pages(name: str, base: str, products: list[tuple[Product, str]], extra_links: str = "") -> dict[str, str]:
    """Paginated listing: `base`index.html, `base`page-2.html, ... with rel=next/prev links."""
    pages: dict[str, str] = {}
    chunks = [products[i : i + PAGE_SIZE] for i in range(0, len(products), PAGE_SIZE)] or [[]]
    for number, chunk in enumerate(chunks, start=1):
        filename = "index.html" if number == 1 else f"page-{number}.html"
        cards = "\n".join(
            f'<li class="product-card"><a href="{path}"><img src="/img/{p.id}/thumb.jpg" alt="" loading="lazy">'
            f'<span class="name">{escape(p.title)}</span></a> <span class="price">€{p.price:.2f}</span></li>'
            for p, path in chunk
        )
        links = []
        if number > 1:
            previous = "index.html" if number == 2 else f"page-{number - 1}.html"
            links.append(f'<a class="prev" rel="prev" href="{base}{previous}">Previous</a>')
        if number < len(chunks):
            links.append(f'<a class="next" rel="next" href="{base}page-{number + 1}.html">Next</a>')
        body = (
            f'<h1 class="category-title">{escape(name)}</h1>\n<ul class="product-grid">\n{cards}\n</ul>\n'
            f'<nav class="pagination">{" ".join(links)}</nav>\n{extra_links}'
        )
        pages[base + filename] = _page(f"{name} – page {number}" if number > 1 else name, body)
    return pages


def shopify_pages(rendered: list[ProductFiles]) -> dict[str, str]:
    """The shop's catalogue as Shopify's `/products.json` would page it (the server maps
    `/products.json?page=N` to `/products/page-N.json`)."""
    products = []
    for files in rendered:
        product = files.product
        products.append(
            {
                "id": int(product.id[2:]),
                "title": product.title,
                "handle": product.slug,
                "product_type": product.breadcrumb[-1],
                "tags": list(product.breadcrumb[1:-1]),
                "variants": [{"price": f"{product.price:.2f}"}],
                "images": [{"src": ORIGIN + image.url} for image in files.images],
            }
        )
    chunks = [products[i : i + SHOPIFY_PAGE_SIZE] for i in range(0, len(products), SHOPIFY_PAGE_SIZE)]
    return {
        f"/products/page-{n}.json": json.dumps({"products": chunk}, ensure_ascii=False)
        for n, chunk in enumerate(chunks, 1)
    }


def sitemap(paths: Iterable[str]) -> str:
    urls = "\n".join(f"  <url><loc>{ORIGIN}{escape(path)}</loc></url>" for path in paths)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}\n</urlset>\n'


ROBOTS = f"User-agent: *\nDisallow: /cart/\nDisallow: /account/\n\nSitemap: {ORIGIN}/sitemap.xml\n"


# --- the build ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSummary:
    out: Path
    products: int
    images: int
    pages: int
    faults: dict[str, int]


def build_shop(
    out: Path,
    products: int,
    seed: int,
    difficulty: Difficulty,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> BuildSummary:
    """Render `products` products and write the shop to `out`, replacing an earlier shop there.

    The shop is written beside `out` and moved into place at the end, so a failed build leaves
    whatever was there untouched. Same arguments → byte-identical files.
    """
    if products < 1:
        raise ShopBuildError(f"--products must be at least 1, got {products}")
    if out.exists() and any(out.iterdir()) and not (out / "shop.json").exists():
        raise ShopBuildError(f"{out} exists and is not a demo shop; choose an empty or new --out")
    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    faults = plan_faults(products, seed)
    tasks = [(index, seed, difficulty, faults.get(index), staging / "site") for index in range(products)]
    rendered: list[ProductFiles] = []
    processes = max(1, min(workers or multiprocessing.cpu_count(), products))
    try:
        # spawn, not fork: the caller may hold threads (TensorFlow, a server) a fork would copy mid-lock.
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for files in pool.imap(render_product, tasks, chunksize=4):
                rendered.append(files)
                if progress:
                    progress(1)
        summary = _write_shop(staging, rendered, faults, seed, difficulty)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return BuildSummary(out, summary.products, summary.images, summary.pages, summary.faults)


def _write(root: Path, url_path: str, data: bytes | str) -> None:
    target = root / url_path.lstrip("/")
    if url_path.endswith("/"):
        target = target / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def _write_shop(
    root: Path, rendered: list[ProductFiles], faults: dict[int, str], seed: int, difficulty: str
) -> BuildSummary:
    site = root / "site"
    listed: dict[str, list[tuple[Product, str]]] = {"shirt": [], "jeans": []}
    sale: list[tuple[Product, str]] = []
    pages: dict[str, str] = {}
    truth_lines: list[str] = []
    fault_records: list[dict] = []
    image_count = 0
    for index, files in enumerate(rendered):
        product = files.product
        for image in files.images:
            if image.fault != "broken_link":
                image_count += 1
            if image.fault:
                fault_records.append({"kind": image.fault, "url": image.url, "product": product.id})
            elif image.regions:
                _write_labelme(root, product, image)
        pages[product.path] = product_page(product, product.path, files.images)
        listed[product.garment.item].append((product, product.path))
        also_at = []
        if faults.get(index) == "duplicate_product":
            sale_path = f"/sale{product.path}"
            copies = [_sale_copy(image) for image in files.images]
            for image, copy in zip(files.images, copies):
                if copy.fault != "broken_link":
                    _copy(site, image.url, copy.url)
            pages[sale_path] = product_page(product, sale_path, copies)
            sale.append((product, sale_path))
            also_at.append(sale_path)
            fault_records.append({"kind": "duplicate_product", "url": sale_path, "product": product.id})
        truth_lines.append(json.dumps(_truth(product, files.images, also_at), ensure_ascii=False, sort_keys=True))

    pages.update(listing_pages("Shirts", "/shirts/", listed["shirt"]))
    pages.update(listing_pages("Jeans", "/jeans/", listed["jeans"]))
    partner = f'<p class="partner">More denim at <a href="{OFF_DOMAIN_LISTING}">our partner shop</a>.</p>'
    pages.update(listing_pages("Sale", "/sale/", sale, partner))
    fault_records.append({"kind": "off_domain_link", "url": OFF_DOMAIN_LISTING, "product": None})
    featured = "".join(
        f'<li><a href="{p.path}">{escape(p.title)}</a></li>' for p, _ in (listed["shirt"][:2] + listed["jeans"][:2])
    )
    pages["/"] = _page(
        "Home",
        '<h1>New in</h1>\n<ul class="featured">' + featured + "</ul>\n"
        '<p><a href="/shirts/">All shirts</a> · <a href="/jeans/">All jeans</a> · <a href="/sale/">Sale</a></p>',
    )
    pages["/cart/"] = _page("Cart", "<h1>Your cart is empty</h1>")
    pages["/account/"] = _page("Account", "<h1>Sign in</h1>")
    for path, html in pages.items():
        _write(site, path, html)
    for url, document in shopify_pages(list(rendered)).items():
        _write(site, url, document)
    _write(site, "/robots.txt", ROBOTS)
    _write(site, "/sitemap.xml", sitemap(p for p in pages if not p.startswith(("/cart", "/account"))))
    _write(site, "/static/placeholder.gif", PLACEHOLDER_GIF)

    (root / "ground_truth.jsonl").write_text("\n".join(truth_lines) + "\n", encoding="utf-8")
    (root / "faults.json").write_text(json.dumps(fault_records, indent=2) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for record in fault_records:
        counts[record["kind"]] = counts.get(record["kind"], 0) + 1
    info = {
        "format": SHOP_FORMAT,
        "products": len(rendered),
        "seed": seed,
        "difficulty": difficulty,
        "images": image_count,
        "pages": len(pages),
        "faults": counts,
    }
    (root / "shop.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return BuildSummary(root, len(rendered), image_count, len(pages), counts)


def _copy(root: Path, source_url: str, target_url: str) -> None:
    target = root / target_url.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / source_url.lstrip("/"), target)


def _sale_copy(image: ImageFile) -> ImageFile:
    return ImageFile(
        image.url.replace("/img/", "/img/sale/", 1),
        image.view,
        image.fmt,
        image.data,
        [],
        image.width,
        image.height,
        image.fault,
    )


def _truth(product: Product, images: list[ImageFile], also_at: list[str]) -> dict:
    return {
        "id": product.id,
        "url": product.path,
        "also_at": also_at,
        "item": product.garment.item,
        "labels": product.garment.labels,
        "title": product.title,
        "breadcrumb": list(product.breadcrumb),
        "template": product.template,
        "images": [{"url": i.url, "view": i.view, "format": i.fmt, "fault": i.fault} for i in images],
    }


def _write_labelme(root: Path, product: Product, image: ImageFile) -> None:
    name = image.url.rsplit("/", 1)[1]
    document = {
        "version": "5.5.0",
        "flags": {},
        "shapes": image.regions,
        "imagePath": f"../site{image.url}",
        "imageData": None,
        "imageHeight": image.height,
        "imageWidth": image.width,
    }
    target = root / "annotations" / f"{product.id}-{name.rsplit('.', 1)[0]}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
