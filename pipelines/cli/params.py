"""`seamline params …`: check and inspect params.yaml, the one file every tunable lives in."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
import yaml

from pipelines.cli.common import ParamsFile, Profile, fail, params_or_fail, say
from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, check_all_profiles, load_params

app = typer.Typer(help="Check and inspect params.yaml, the one file every tunable lives in.", no_args_is_help=True)


@app.command("check")
def check(
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
    say(f"{params_file}: ok (profiles: {', '.join(checked)})")


@app.command("show")
def show(
    profile: Profile = None,
    component: Annotated[
        str | None,
        typer.Option("--component", "-c", help="Show only this component's resolved settings (e.g. shirt-collar)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of YAML.")] = False,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Print the parameters with one profile applied: exactly what the stages will receive."""
    params = params_or_fail(params_file, profile)
    try:
        shown = params.component(component) if component else params
    except ParamsError as error:
        fail(str(error))
    tree = shown.model_dump(mode="json")
    sys.stdout.write(json.dumps(tree, indent=2) + "\n" if as_json else yaml.safe_dump(tree, sort_keys=False))
