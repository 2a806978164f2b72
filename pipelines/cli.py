"""The `seamline` command line: one entry point for data engineers, ML leads and the schedule.

Each command is a thin edge over a pipeline module; errors a user can cause print one line.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml
from rich.console import Console

from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, check_all_profiles, load_params

app = typer.Typer(
    name="seamline",
    help="Seamline: learn fashion component attributes (collar, pattern, fit, colour, washing, "
    "damage) from shop photos, retrained weekly.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)
params_app = typer.Typer(
    help="Check and inspect params.yaml, the one file every tunable lives in.",
    no_args_is_help=True,
)
app.add_typer(params_app, name="params")

out = Console()
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
        out.print(f"seamline {version('seamline')}")
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
    out.print(f"{params_file}: ok (profiles: {', '.join(checked)})", highlight=False)


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


if __name__ == "__main__":
    app()
