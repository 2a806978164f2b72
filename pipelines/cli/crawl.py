"""`seamline crawl`: crawl one source now, as the weekly flow's `crawl@<source>` stage does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ParamsFile, Profile, out_console, profile_arguments, run_module
from pipelines.cli.sources import CRAWLER, SourcesDir
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()


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
    wait: Annotated[
        bool, typer.Option("--wait", help="If another crawl of the source is running, wait for it (else exit 3).")
    ] = False,
    sources_dir: SourcesDir = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
    profile: Profile = None,
) -> None:
    """Crawl one source: new images stored once by content under DATA_ROOT/NAME/images/, one
    manifest row each; images already in the manifest are not fetched again. Prints a summary.
    One crawl of a source at a time: a second one names the running one and exits 3."""
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
    if wait:
        arguments.append("--wait")
    if sources_dir:
        arguments += ["--sources-dir", str(sources_dir)]
    code = run_module(CRAWLER, [*arguments, *profile_arguments(profile)])
    summary_path = reports_root / name / "crawl_summary.json"
    if code == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        images = summary["images"]
        table = Table("crawl of " + name, "count", show_header=True)
        for label, value in [
            ("pages", summary["pages"]),
            ("products", summary["products"]),
            *((f"products found as: {k}", v) for k, v in summary.get("products_found_as", {}).items() if k != "page"),
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
