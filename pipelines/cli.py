"""The `seamline` command line: one entry point for data engineers, ML leads and the schedule.

Each command is a thin edge over a pipeline module; errors a user can cause print one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml
from rich.console import Console

from pipelines.config import (
    DEFAULT_PARAMS_PATH,
    ParamsError,
    check_all_profiles,
    load_params,
)

app = typer.Typer(
    name="seamline",
    help="Seamline: learn fashion component attributes (collar, pattern, fit, colour, washing, "
    "damage) from shop photos, retrained weekly.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _command_group(name: str, help_text: str) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


params_app = _command_group("params", "Check and inspect params.yaml, the one file every tunable lives in.")
demo_shop_app = _command_group(
    "demo-shop", "Build, serve and inspect the synthetic demo shop the embedded defaults crawl."
)
data_app = _command_group("data", "Weekly data snapshots: tag what dvc.lock pins, and list the snapshots taken.")
annotations_app = _command_group("annotations", "Import garment annotations (Labelme polygons) for the detector.")
sources_app = _command_group("sources", "List and try out crawl sources: one YAML file per shop in crawlers/sources/.")

out_console = Console()
err = Console(stderr=True)

USER_ERROR = 2

ParamsFile = Annotated[
    Path,
    typer.Option(
        "--params",
        help="Params file to read.",
        envvar="SEAMLINE_PARAMS",
        dir_okay=False,
    ),
]


def fail(message: str) -> NoReturn:
    """Print a user-caused error (one line per problem) and exit non-zero; never a traceback."""
    for line in message.splitlines():
        err.print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(USER_ERROR)


def _version(show: bool) -> None:
    if show:
        out_console.print(f"seamline {version('seamline')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Seamline: learn fashion component attributes from shop photos, retrained weekly."""


@params_app.command("check")
def params_check(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Check only this profile (e.g. demo, paper). Default: every profile in the file.",
            envvar="SEAMLINE_PROFILE",
        ),
    ] = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Validate params.yaml: unknown keys, wrong types and out-of-range values, per profile.

    Prints one line per problem, naming the key path as written in the file, and exits 2;
    exits 0 when every checked profile resolves.
    """
    try:
        if profile is None:
            checked = check_all_profiles(params_file)
        else:
            load_params(params_file, profile)
            checked = [profile]
    except ParamsError as error:
        fail(str(error))
    out_console.print(f"{params_file}: ok (profiles: {', '.join(checked)})", highlight=False)


@params_app.command("show")
def params_show(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            "-p",
            help="Profile to resolve. Default: the file's `profile` key.",
            envvar="SEAMLINE_PROFILE",
        ),
    ] = None,
    component: Annotated[
        str | None,
        typer.Option("--component", "-c", help="Show only this component's resolved settings (e.g. shirt-collar)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Print the parameters with one profile applied: exactly what the stages will receive."""
    try:
        params = load_params(params_file, profile)
        shown = params.component(component) if component else params
    except ParamsError as error:
        fail(str(error))
    tree = shown.model_dump(mode="json")
    if as_json:
        sys.stdout.write(json.dumps(tree, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(tree, sort_keys=False))


DEFAULT_SHOP_DIR = Path("data/demo_shop")


@demo_shop_app.command("build")
def demo_shop_build(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the shop to (replaces an earlier shop there).")
    ] = DEFAULT_SHOP_DIR,
    products: Annotated[
        int | None,
        typer.Option("--products", "-n", help="Number of products. Default: crawl.demo_shop.products.", min=1),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed. Default: crawl.demo_shop.seed.")] = None,
    difficulty: Annotated[
        str | None, typer.Option("--difficulty", help="easy, medium or hard. Default: crawl.demo_shop.difficulty.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Render processes. Default: one per CPU.", min=1)
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Params profile for the defaults.", envvar="SEAMLINE_PROFILE")
    ] = None,
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

    from crawlers.demo_shop.site import ShopBuildError, build_shop

    try:
        shop = load_params(params_file, profile).crawl.demo_shop
    except ParamsError as error:
        fail(str(error))
    chosen = difficulty or shop.difficulty
    if chosen not in ("easy", "medium", "hard"):
        fail(f"--difficulty: expected easy, medium or hard, got {chosen!r}")
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
    console_line = (
        f"built {summary.products} products ({summary.images} images, {summary.pages} pages) "
        f"at {chosen} difficulty, seed {shop_seed} into {out}\nplanted faults: {faults}"
    )
    out_console.print(console_line, highlight=False, soft_wrap=True)


@demo_shop_app.command("serve")
def demo_shop_serve(
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


@demo_shop_app.command("sheet")
def demo_shop_sheet(
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
        out_console.print(str(path), highlight=False)


SourcesDir = Annotated[
    Path | None,
    typer.Option("--sources-dir", help="Folder of source YAML files. Default: crawlers/sources/.", file_okay=False),
]


def _run_crawler(arguments: list[str]) -> int:
    """Scrapy in a child process: Twisted's reactor cannot be restarted within one process."""
    return subprocess.run([sys.executable, "-m", "crawlers.run", *arguments], check=False).returncode


@sources_app.command("list")
def sources_list(sources_dir: SourcesDir = None, params_file: ParamsFile = DEFAULT_PARAMS_PATH) -> None:
    """Every source file: its spider, extraction methods, start URL, and whether the weekly
    crawl includes it (params.yaml crawl.sources). Invalid files are listed with their problem."""
    from rich.table import Table

    from crawlers.source_config import (
        SOURCES_DIR,
        SourceError,
        list_source_files,
        load_source,
    )

    try:
        scheduled = set(load_params(params_file).crawl.sources)
    except ParamsError as error:
        fail(str(error))
    table = Table("source", "spider", "extract", "start", "weekly", "status")
    for path in list_source_files(sources_dir or SOURCES_DIR):
        try:
            source = load_source(path)
        except SourceError as error:
            table.add_row(
                path.stem, "", "", "", "yes" if path.stem in scheduled else "", f"[red]{str(error).splitlines()[0]}[/]"
            )
            continue
        start = (source.start_urls or source.sitemap_urls or ("",))[0]
        methods = ", ".join(source.extract.methods) if source.spider != "shopify" else "products.json"
        table.add_row(source.name, source.spider, methods, start, "yes" if source.name in scheduled else "", "ok")
    out_console.print(table)


@sources_app.command("check")
def sources_check(
    name: Annotated[str, typer.Argument(help="Source name (crawlers/sources/NAME.yaml).")],
    products: Annotated[
        int, typer.Option("--products", "-n", help="Products to extract before stopping.", min=1, max=100)
    ] = 5,
    sources_dir: SourcesDir = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Fetch a handful of pages and show what would be extracted, flagging empty fields.

    Nothing is stored: no images are downloaded and no manifest is written.
    """
    import tempfile

    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="seamline-check-") as scratch:
        out = Path(scratch) / "products.jsonl"
        arguments = ["check", name, "--products", str(products), "--out", str(out), "--params", str(params_file)]
        if sources_dir:
            arguments += ["--sources-dir", str(sources_dir)]
        code = _run_crawler(arguments)
        if code:
            raise typer.Exit(code)
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        # Requests already in flight when the limit is reached still land: show only what was asked.
        rows = [json.loads(line) for line in lines][:products]
    if not rows:
        fail(f"{name}: no product was extracted; check start_urls and the links.products patterns")
    table = Table("title", "breadcrumb", "price", "item", "images", "empty fields", show_lines=False)
    empty_counts: dict[str, int] = {}
    for row in rows:
        empty = [f for f in ("title", "breadcrumb", "price", "item_hint", "image_urls") if row.get(f) in (None, "", [])]
        for field in empty:
            empty_counts[field] = empty_counts.get(field, 0) + 1
        table.add_row(
            row["title"] or "—",
            row["breadcrumb"] or "—",
            "—" if row["price"] is None else f"{row['price']:.2f}",
            row["item_hint"] or "—",
            str(len(row["image_urls"])),
            f"[yellow]{', '.join(empty)}[/]" if empty else "",
        )
    out_console.print(table)
    if empty_counts:
        summary = ", ".join(f"{field} empty on {n}/{len(rows)}" for field, n in empty_counts.items())
        out_console.print(f"[yellow]warning:[/] {summary}", highlight=False)
    else:
        out_console.print(f"{len(rows)} products extracted with every field filled", highlight=False)


@app.command("crawl")
def crawl(
    name: Annotated[str, typer.Argument(help="Source name (crawlers/sources/NAME.yaml).")],
    max_pages: Annotated[
        int | None,
        typer.Option("--max-pages", help="Stop after this many pages (default: the source's or params' limit).", min=1),
    ] = None,
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Where crawls write: DATA_ROOT/NAME/{images/, manifest.jsonl}.")
    ] = Path("data/raw"),
    reports_root: Annotated[
        Path,
        typer.Option("--reports-root", help="Crawl summaries: REPORTS_ROOT/NAME/{crawl_summary.json, crawls.jsonl}."),
    ] = Path("reports/crawl"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Scrapy's INFO log.")] = False,
    sources_dir: SourcesDir = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="Params profile.", envvar="SEAMLINE_PROFILE")
    ] = None,
) -> None:
    """Crawl one source: new images stored once by content under DATA_ROOT/NAME/images/, one
    manifest row each; images already in the manifest are not fetched again. Prints a summary."""

    from rich.table import Table

    arguments = [
        "crawl",
        name,
        "--data-root",
        str(data_root),
        "--reports-root",
        str(reports_root),
        "--params",
        str(params_file),
        "--log-level",
        "INFO" if verbose else "WARNING",
    ]
    if max_pages:
        arguments += ["--max-pages", str(max_pages)]
    if sources_dir:
        arguments += ["--sources-dir", str(sources_dir)]
    if profile:
        arguments += ["--profile", profile]
    code = _run_crawler(arguments)
    summary_path = reports_root / name / "crawl_summary.json"
    if code == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        images = summary["images"]
        table = Table("crawl of " + name, "count", show_header=True)
        for label, value in [
            ("pages", summary["pages"]),
            ("products", summary["products"]),
            ("images new", images["new"]),
            ("images duplicate", images["duplicate"]),
            ("images already known (not fetched)", images["known_url"]),
            *((f"images rejected: {k}", v) for k, v in images["rejected"].items()),
            *((f"products dropped: {k}", v) for k, v in summary["products_dropped"].items()),
            *((f"error: {k}", v) for k, v in summary["errors"].items()),
            ("duration (s)", summary["duration_s"]),
        ]:
            table.add_row(label, str(value))
        out_console.print(table)
        out_console.print(f"summary: {summary_path}", highlight=False)
    if code:
        raise typer.Exit(code)


def _git(*arguments: str, required: bool = True) -> str | None:
    """git's output; a failure stops with git's own message, or gives None if not `required`."""
    result = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    if result.returncode:
        if not required:
            return None
        fail(f"git {' '.join(arguments)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


@data_app.command("snapshot")
def data_snapshot(
    tag: Annotated[
        str | None,
        typer.Option("--tag", help="Tag name. Default: data-YYYY-Www for this ISO week (.2, .3… for a later one)."),
    ] = None,
) -> None:
    """Commit dvc.lock and the reports (the data the stages produced, by hash) and tag the commit.

    Run after `dvc repro`; `dvc push` then sends the data itself to the remote. When the data
    stages' entries in dvc.lock match the last snapshot's, nothing is committed (the model
    stages alone having run is not new data).
    """
    from pipelines.snapshot import SnapshotError, take_snapshot

    try:
        chosen, taken = take_snapshot(Path("."), tag)
    except SnapshotError as error:
        fail(str(error))
    head = (_git("rev-parse", "--short", "HEAD") or "").strip()
    if taken:
        out_console.print(f"tagged {chosen} at {head}; send the data with `dvc push`", highlight=False)
    else:
        out_console.print(
            f"nothing changed since {chosen} in the data stages of dvc.lock: no new snapshot", highlight=False
        )


@data_app.command("history")
def data_history(
    snapshot_file: Annotated[
        str, typer.Option("--file", help="Snapshot metric path in the repository.")
    ] = "reports/data/snapshot.json",
) -> None:
    """Every data-* snapshot, oldest first: images per source and labelled images per class."""

    from rich.table import Table

    from pipelines.snapshot import TAG_PREFIX

    tags = (_git("tag", "--list", f"{TAG_PREFIX}*", "--sort=creatordate") or "").split()
    if not tags:
        out_console.print("no snapshots yet: run `dvc repro`, then `seamline data snapshot`", highlight=False)
        return
    table = Table("snapshot", "date", "images per source", "labelled per class", show_lines=True)
    for name in tags:
        day = (_git("log", "-1", "--format=%cs", name) or "").strip()
        shown = _git("show", f"{name}:{snapshot_file}", required=False)
        if shown is None:
            table.add_row(name, day, "—", f"[yellow]no {snapshot_file} in this snapshot[/]")
            continue
        summary = json.loads(shown)
        images = "\n".join(f"{source}: {n}" for source, n in summary["images"].items())
        labels = "\n".join(
            f"{component}: " + ", ".join(f"{label} {sum(splits.values())}" for label, splits in classes.items())
            for component, classes in summary["labels"].items()
        )
        table.add_row(name, day, images, labels)
    out_console.print(table)


@annotations_app.command("import")
def annotations_import(
    folder: Annotated[
        Path, typer.Argument(help="Folder of Labelme JSON files (searched recursively).", file_okay=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the COCO file and images go.")] = Path("data/annotations"),
    dvc_add: Annotated[
        bool, typer.Option("--dvc/--no-dvc", help="Version the result with `dvc add` (when run in a DVC repo).")
    ] = True,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Convert Labelme polygons to one COCO instances file (pycocotools areas and boxes).

    Each bad file (unreadable, missing image, unknown label, fewer than 3 points, points outside
    the image, nothing annotated) is reported by name and skipped; the rest are imported. In a
    DVC repo the folder is then `dvc add`ed, so the detector stage sees exactly which
    annotations it was trained on; commit the .dvc file it writes.
    """
    from pipelines.annotations import import_labelme_dir

    if not folder.is_dir():
        fail(f"{folder}: no such folder")
    try:
        categories = load_params(params_file).detector.categories
    except ParamsError as error:
        fail(str(error))
    result = import_labelme_dir(folder, out, categories)
    for path, reason in result.problems:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    counts = ", ".join(
        f"{c['name']} {sum(1 for a in result.coco['annotations'] if a['category_id'] == c['id'])}"
        for c in result.coco["categories"]
    )
    out_console.print(
        f"imported {len(result.imported)} images ({counts}); skipped {len(result.problems)}; "
        f"→ {out / 'instances.json'} (report: {out / 'import_report.csv'})",
        highlight=False,
        soft_wrap=True,
    )
    if not result.imported:
        fail(f"no usable annotation file in {folder}")
    # Version it when it lands inside the DVC repository this runs in (the project root).
    if dvc_add and Path(".dvc").is_dir() and out.resolve().is_relative_to(Path.cwd().resolve()):
        added = subprocess.run(
            [sys.executable, "-m", "dvc", "add", str(out)], capture_output=True, text=True, check=False
        )
        if added.returncode != 0:
            said = (added.stderr + added.stdout).strip().splitlines() or ["no output"]
            fail(f"dvc add {out} failed: {said[-1]}")
        out_console.print(f"versioned with DVC: {out}.dvc (commit it with git)", highlight=False)


SHEET_MODES = ("bbox", "mask", "mask_alpha", "none")


@app.command("detect")
def detect(
    images: Annotated[list[Path], typer.Argument(help="Photos to run the garment detector on.", dir_okay=False)],
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="Crop mode: bbox | mask | mask_alpha | annotation | none (default: each component's, from params).",
        ),
    ] = None,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Only this component's crop (default: every component).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Crop file (one image, one component) or folder for the crops.")
    ] = None,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Also write a contact sheet: each image and component in every mode.")
    ] = None,
    detector_dir: Annotated[
        Path, typer.Option("--detector", help="The trained detector (the detector stage's output).", file_okay=False)
    ] = Path("models/detector"),
    annotations: Annotated[
        Path, typer.Option("--annotations", help="COCO annotations, for --mode annotation.", file_okay=False)
    ] = Path("data/annotations"),
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="Params profile (crop size, score threshold).", envvar="SEAMLINE_PROFILE"),
    ] = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Show what the pipeline feeds the classifiers: the detections on each photo, and each
    component's crop exactly as the crop stage cuts it.

    Crops go to --out (default: detect-out/<image>-<component>.png); a photo that cannot be
    decoded is reported and the rest still run.
    """
    import hashlib

    import cv2

    from pipelines.crop import contact_sheet
    from pipelines.crop_stage import Region, annotation_regions, crop_one, write_png
    from pipelines.detect import (
        DetectorError,
        best_of_category,
        load_detector,
        read_rgb,
    )

    try:
        params = load_params(params_file, profile)
    except ParamsError as error:
        fail(str(error))
    if mode is not None and mode not in ("bbox", "mask", "mask_alpha", "annotation", "none"):
        fail(f"--mode {mode}: expected bbox, mask, mask_alpha, annotation or none")
    if component is not None and component not in params.components:
        fail(f"--component {component}: unknown component (known: {', '.join(params.components)})")
    chosen = [component] if component else list(params.components)
    # Each component's own recipe (its mode and margin), unless --mode overrides every mode.
    crops = {name: params.crop_for(name).model_copy(update={"mode": mode} if mode else {}) for name in chosen}
    single_file = out is not None and out.suffix.lower() == ".png"
    if single_file and (len(images) > 1 or len(chosen) > 1):
        fail("--out FILE.png needs one image and one --component; give a folder for more")
    folder = out if out is not None and not single_file else Path("detect-out")
    try:
        detector = load_detector(detector_dir)
    except DetectorError as error:
        fail(str(error))
    threshold = params.detector.score_threshold
    truth = annotation_regions(annotations) if any(c.mode == "annotation" for c in crops.values()) else {}
    pixels_of = {path: read_rgb(path) for path in images}
    for path, pixels in pixels_of.items():
        if pixels is None:
            err.print(f"[red]error[/] {path}: not a decodable image", highlight=False, soft_wrap=True)
    usable = [path for path, pixels in pixels_of.items() if pixels is not None]
    found = dict(zip(usable, detector.detect([pixels_of[path] for path in usable])))
    sheet_rows: list[list] = []
    sheet_labels: list[str] = []
    for path in usable:
        detections = found[path]
        shown = sorted((d for d in detections if d.score >= threshold), key=lambda d: -d.score)
        out_console.print(
            f"{path}: {len(shown)} detections ≥ {threshold} (detector {detector.version})",
            highlight=False,
            soft_wrap=True,
        )
        for d in shown:
            x0, y0, x1, y1 = d.box
            out_console.print(
                f"  {d.category:<8} {d.score:.3f}  box {x0:.0f},{y0:.0f} → {x1:.0f},{y1:.0f}",
                highlight=False,
                soft_wrap=True,
            )
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        for name in chosen:
            category, item, crop = params.components[name].crop_region, params.components[name].item, crops[name]
            if (
                component is None
                and item in params.detector.categories
                and not best_of_category(detections, item, threshold)
            ):
                continue  # jeans components on a shirt photo: the pipeline would not crop them
            best = best_of_category(detections, category, threshold, crop.pick)
            region = (
                truth.get(sha, {}).get(category)
                if crop.mode == "annotation"
                else Region(best.box, best.mask, best.score)
                if best
                else None
            )
            pixels, status = crop_one(pixels_of[path], region, crop)
            if pixels is None:
                out_console.print(
                    f"  {name}: no {category} found → skipped (crop.on_no_detection: skip)",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                target = out if single_file else folder / f"{path.stem}-{name}.png"
                write_png(target, pixels)
                note = "" if status == "cropped" else f" (no {category} found: {status})"
                out_console.print(f"  {name}: {crop.mode} crop → {target}{note}", highlight=False, soft_wrap=True)
            if sheet is not None and f"{path} {category}" not in sheet_labels:  # one row per region
                sheet_labels.append(f"{path} {category}")
                sheet_rows.append(
                    [
                        crop_one(
                            pixels_of[path],
                            Region(best.box, best.mask, best.score) if best else None,
                            crop.model_copy(update={"mode": m}),
                        )[0]
                        if best or m == "none"
                        else None
                        for m in SHEET_MODES
                    ]
                )
    if sheet is not None and sheet_rows:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        row_names = [f"{Path(label.rsplit(' ', 1)[0]).stem[:12]} {label.rsplit(' ', 1)[1]}" for label in sheet_labels]
        cv2.imwrite(
            str(sheet), cv2.cvtColor(contact_sheet(sheet_rows, row_names, list(SHEET_MODES)), cv2.COLOR_RGB2BGR)
        )
        out_console.print(f"contact sheet → {sheet}", highlight=False, soft_wrap=True)
    if len(usable) < len(images):
        raise typer.Exit(1)


@app.command("train")
def train(
    component: Annotated[str | None, typer.Argument(help="Component to train, e.g. shirt-collar.")] = None,
    all_components: Annotated[
        bool, typer.Option("--all", help="Train every component in params `components`, one after another.")
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", help="Params profile (default: params.yaml's `profile`).", envvar="SEAMLINE_PROFILE"
        ),
    ] = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Train component classifiers now, from data/crops and data/labels: the frozen-base phase,
    then fine-tuning, evaluated on the test split and tracked in MLflow (experiment
    `classifiers`). Writes models/<c>/, metrics/<c>.json and plots/<c>/, the `train@<c>` stage's
    outputs; `dvc repro` runs the same command and skips components whose inputs did not change.
    """
    try:
        params = load_params(params_file, profile)
    except ParamsError as error:
        fail(str(error))
    if all_components == (component is not None):
        fail("name one COMPONENT or give --all")
    if component is not None and component not in params.components:
        fail(f"unknown component {component!r} (known: {', '.join(params.components)})")
    chosen = list(params.components) if all_components else [component]
    for name in chosen:
        command = [sys.executable, "-m", "pipelines.train_stage", "--component", name, "--params", str(params_file)]
        if profile:
            command += ["--profile", profile]
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            fail(f"training {name} failed (exit {code}); the components before it are trained")


@app.command("pretrain")
def pretrain(
    force: Annotated[
        bool, typer.Option("--force", help="Pretrain even if no component's training.weights uses the result.")
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", help="Params profile (default: params.yaml's `profile`).", envvar="SEAMLINE_PROFILE"
        ),
    ] = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Pretrain the classifiers' backbone without ImageNet: SimCLR on the unlabelled crops in
    data/crops (train and validation images only, no labels read), written to
    models/pretrain/base.weights.h5 and tracked in MLflow (experiment `pretrain`).

    Components use it with `training.weights: models/pretrain/base.weights.h5`; the `pretrain`
    DVC stage runs the same command.
    """
    command = [sys.executable, "-m", "pipelines.pretrain", "--params", str(params_file)]
    command += ["--profile", profile] if profile else []
    command += ["--force"] if force else []
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise typer.Exit(code)


if __name__ == "__main__":
    # `python -m pipelines.cli`: this copy of the module is `__main__`, and the command modules
    # register on the `app` of `pipelines.cli` (they import it by name), so run that one's.
    from pipelines.cli import app as registered_app

    registered_app()
else:
    # The registry and schedule commands live in their own modules; importing them registers them on `app`.
    from pipelines import cli_models, cli_schedule, cli_search

    COMMAND_MODULES = (cli_models, cli_schedule, cli_search)
