"""`seamline sources …`: list the crawl sources (one YAML file per shop in crawlers/sources/) and
try one out before it joins the schedule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ParamsFile, fail, out_console, params_or_fail, run_module, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer(
    help="List and try out crawl sources: one YAML file per shop in crawlers/sources/.", no_args_is_help=True
)

# Scrapy runs in a child process: Twisted's reactor cannot be restarted within one process.
CRAWLER = "crawlers.run"

SourcesDir = Annotated[
    Path | None,
    typer.Option("--sources-dir", help="Folder of source YAML files. Default: crawlers/sources/.", file_okay=False),
]


@app.command("list")
def list_sources(sources_dir: SourcesDir = None, params_file: ParamsFile = DEFAULT_PARAMS_PATH) -> None:
    """Every source file: its spider, extraction methods, start URL, and whether the weekly
    crawl includes it (params.yaml crawl.sources). Invalid files are listed with their problem."""
    from rich.table import Table

    from crawlers.source_config import (
        SOURCES_DIR,
        SourceError,
        list_source_files,
        load_source,
    )

    scheduled = set(params_or_fail(params_file).crawl.sources)
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


@app.command("check")
def check(
    name: Annotated[str, typer.Argument(help="Source name (crawlers/sources/NAME.yaml).")],
    products: Annotated[
        int, typer.Option("--products", "-n", help="Products to extract before stopping.", min=1, max=100)
    ] = 5,
    sources_dir: SourcesDir = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Fetch a handful of pages and show what would be extracted, flagging empty fields.

    Listing cards show like products, with where each was found: its own page, a card on a
    listing (a product on its own), or a card followed to its page.

    Nothing is stored: no images are downloaded and no manifest is written.
    """
    import tempfile

    from rich.table import Table

    with tempfile.TemporaryDirectory(prefix="seamline-check-") as scratch:
        out = Path(scratch) / "products.jsonl"
        arguments = ["check", name, "--products", str(products), "--out", str(out), "--params", str(params_file)]
        if sources_dir:
            arguments += ["--sources-dir", str(sources_dir)]
        code = run_module(CRAWLER, arguments)
        if code:
            raise typer.Exit(code)
        lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        # Requests already in flight when the limit is reached still land: show only what was asked.
        rows = [json.loads(line) for line in lines][:products]
    if not rows:
        fail(f"{name}: no product was extracted; check start_urls and the links.products patterns")
    table = Table("title", "breadcrumb", "price", "item", "images", "found as", "empty fields", show_lines=False)
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
            row.get("found_as", "page"),
            f"[yellow]{', '.join(empty)}[/]" if empty else "",
        )
    out_console.print(table)
    if empty_counts:
        summary = ", ".join(f"{field} empty on {n}/{len(rows)}" for field, n in empty_counts.items())
        out_console.print(f"[yellow]warning:[/] {summary}", highlight=False)
    else:
        say(f"{len(rows)} products extracted with every field filled")
