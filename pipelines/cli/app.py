"""The `seamline` command: one Typer app per command group, composed here in the order a newcomer
meets them (data in, models, the schedule, search). Each group lives in its own module and calls
the library; none imports another group's module except for shared option types."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from pipelines.cli import (
    annotations,
    crawl,
    data,
    demo_shop,
    detect,
    hand_labels,
    models,
    params,
    predict,
    schedule,
    search,
    sources,
    tracking,
    train,
)
from pipelines.cli.common import say

app = typer.Typer(
    name="seamline",
    help="Seamline: learn fashion component attributes (collar, pattern, fit, colour, washing, "
    "damage) from shop photos, retrained weekly.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Commands at the top level, then the groups: `seamline --help` lists them in this order.
for commands in (crawl, detect, train, predict, tracking, schedule, search):
    app.add_typer(commands.app)
for name, group in (
    ("params", params),
    ("demo-shop", demo_shop),
    ("data", data),
    ("annotations", annotations),
    ("hand-labels", hand_labels),
    ("sources", sources),
    ("models", models),
):
    app.add_typer(group.app, name=name)


def _version(show: bool) -> None:
    if show:
        say(f"seamline {version('seamline')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Seamline: learn fashion component attributes from shop photos, retrained weekly."""
