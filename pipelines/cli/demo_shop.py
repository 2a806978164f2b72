"""`seamline demo-shop …`: build, serve and inspect the synthetic demo shop the embedded defaults
crawl (`crawlers/demo_shop/`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from pipelines.cli.common import ParamsFile, Profile, err, fail, params_or_fail, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer(
    help="Build, serve and inspect the synthetic demo shop the embedded defaults crawl.", no_args_is_help=True
)


DEFAULT_SHOP_DIR = Path("data/demo_shop")


@app.command("build")
def build(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the shop to (replaces an earlier shop there).")
    ] = DEFAULT_SHOP_DIR,
    products: Annotated[
        int | None,
        typer.Option("--products", "-n", help="Number of products. Default: crawl.demo_shop.products.", min=1),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed. Default: crawl.demo_shop.seed.")] = None,
    difficulty: Annotated[
        str | None,
        typer.Option(
            "--difficulty",
            help="easy, medium or hard (varied scenes), or packshot (studio photos, each design in three "
            "colourways). Default: crawl.demo_shop.difficulty.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Render processes. Default: one per CPU.", min=1)
    ] = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Render a synthetic shop: listings, product pages, photos with Labelme regions, planted faults.

    The same --products, --seed and --difficulty always give byte-identical files. Ground truth
    (ground_truth.jsonl, faults.json, annotations/) is written beside the served site/ folder.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from crawlers.demo_shop.garments import Difficulty
    from crawlers.demo_shop.site import ShopBuildError, build_shop

    shop = params_or_fail(params_file, profile).crawl.demo_shop
    chosen = difficulty or shop.difficulty
    if chosen not in get_args(Difficulty):
        fail(f"--difficulty: expected {', '.join(get_args(Difficulty))}, got {chosen!r}")
    count, shop_seed = products or shop.products, seed if seed is not None else shop.seed
    columns = (TextColumn("rendering products"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("render", total=count)
        try:
            summary = build_shop(
                out,
                count,
                shop_seed,
                chosen,
                workers=workers,  # type: ignore[arg-type]
                progress=lambda done: progress.advance(task, done),
            )
        except (ShopBuildError, OSError) as error:
            fail(str(error))
    faults = ", ".join(f"{kind} {n}" for kind, n in summary.faults.items())
    say(
        f"built {summary.products} products ({summary.images} images, {summary.pages} pages) "
        f"at {chosen} difficulty, seed {shop_seed} into {out}\nplanted faults: {faults}"
    )


@app.command("build-real")
def build_real(
    photos: Annotated[
        Path, typer.Option("--photos", help="The photos to sell: folder,sha256,path (path under --root).")
    ] = Path("eval/real-photos/photos.csv"),
    answers: Annotated[
        list[Path] | None,
        typer.Option("--answers", help="Settled hand labels (`hand-labels settle`'s answers-*.csv). Repeatable."),
    ] = None,
    root: Annotated[Path, typer.Option("--root", help="Folder the photo paths are under.")] = Path(
        "../shared/real-photos"
    ),
    out: Annotated[Path, typer.Option("--out", help="Folder to write the shop to.")] = Path("data/real_shop"),
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the copy.")] = 7,
) -> None:
    """A shop of real photos with real-looking copy (crawlers/demo_shop/real.py): serve it with
    `demo-shop serve OUT` and crawl it with the `real_shop` source."""
    from crawlers.demo_shop.real import build_real_shop, read_photos, read_settled
    from crawlers.demo_shop.site import ShopBuildError

    chosen = answers or sorted(Path("eval/real-photos").glob("answers-*.csv"))
    try:
        count = build_real_shop(read_photos(photos), read_settled(chosen), root, out, seed)
    except (ShopBuildError, OSError, KeyError) as error:
        fail(str(error))
    say(f"built {count} real-photo products into {out} (copy seed {seed}, labels from {len(chosen)} files)")


@app.command("serve")
def serve(
    shop: Annotated[Path, typer.Argument(help="A built shop folder (from `demo-shop build`).")] = DEFAULT_SHOP_DIR,
    port: Annotated[
        int, typer.Option("--port", help="Port on 127.0.0.1; 0 picks a free one and prints it.", min=0, max=65535)
    ] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request to stderr.")] = False,
) -> None:
    """Serve a built shop on 127.0.0.1 until interrupted. Prints its origin URL first."""
    from crawlers.demo_shop.server import ShopServer, site_dir

    site = site_dir(shop)
    if not (site / "index.html").is_file():
        fail(f"{shop}: not a built demo shop (no index.html); run `seamline demo-shop build --out {shop}` first")
    try:
        server = ShopServer(site, port, verbose=verbose)
    except OSError as error:
        fail(f"cannot listen on 127.0.0.1:{port}: {error.strerror}")
    # The first line is the contract for scripts and tests that start the shop with --port 0.
    print(f"serving demo shop at {server.origin}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("sheet")
def sheet(
    shop: Annotated[Path, typer.Argument(help="A built shop folder.")] = DEFAULT_SHOP_DIR,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the PNGs. Default: SHOP/sheets.")] = None,
    per_class: Annotated[int, typer.Option("--per-class", help="Examples per class (columns).", min=1, max=40)] = 8,
    tile: Annotated[int, typer.Option("--tile", help="Tile side in pixels.", min=32, max=512)] = 96,
) -> None:
    """Write one contact sheet per component: a row of ground-truth crops per class."""
    from crawlers.demo_shop.sheet import write_contact_sheets

    if not (shop / "ground_truth.jsonl").is_file():
        fail(f"{shop}: not a built demo shop (no ground_truth.jsonl)")
    for path in write_contact_sheets(shop, out or shop / "sheets", per_class, tile):
        say(str(path))
