"""`seamline data …`: weekly data snapshots — tag what dvc.lock pins, and list the snapshots taken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import fail, out_console, say
from pipelines.snapshots import TAG_PREFIX, SnapshotError, git, take_snapshot

app = typer.Typer(
    help="Weekly data snapshots: tag what dvc.lock pins, and list the snapshots taken.", no_args_is_help=True
)

HERE = Path(".")  # the project's git repository: snapshots are commands run at its root


@app.command("snapshot")
def snapshot(
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
    try:
        chosen, taken = take_snapshot(HERE, tag)
        head = (git(HERE, "rev-parse", "--short", "HEAD") or "").strip()
    except SnapshotError as error:
        fail(str(error))
    if taken:
        say(f"tagged {chosen} at {head}; send the data with `dvc push`")
    else:
        say(f"nothing changed since {chosen} in the data stages of dvc.lock: no new snapshot")


@app.command("history")
def history(
    snapshot_file: Annotated[
        str, typer.Option("--file", help="Snapshot metric path in the repository.")
    ] = "reports/data/snapshot.json",
) -> None:
    """Every data-* snapshot, oldest first: images per source and labelled images per class."""
    from rich.table import Table

    try:
        tags = (git(HERE, "tag", "--list", f"{TAG_PREFIX}*", "--sort=creatordate") or "").split()
    except SnapshotError as error:
        fail(str(error))
    if not tags:
        say("no snapshots yet: run `dvc repro`, then `seamline data snapshot`")
        return
    table = Table("snapshot", "date", "images per source", "labelled per class", show_lines=True)
    for name in tags:
        day = (git(HERE, "log", "-1", "--format=%cs", name, required=False) or "").strip()
        shown = git(HERE, "show", f"{name}:{snapshot_file}", required=False)
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
