"""What every `seamline` command shares: the consoles, the one-line failure, the common options
(params file, profile, component) and the calls that turn a user's mistake into that one line."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console

from pipelines.config import Params, ParamsError, load_params

out_console = Console()
err = Console(stderr=True)

USER_ERROR = 2
T = TypeVar("T")

ParamsFile = Annotated[
    Path, typer.Option("--params", help="Params file to read.", envvar="SEAMLINE_PARAMS", dir_okay=False)
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile", "-p", help="Params profile (default: the params file's `profile` key).", envvar="SEAMLINE_PROFILE"
    ),
]
Crops = Annotated[
    Path,
    typer.Option(
        "--crops", help="The crop stage's output (data/crops): its test crops are the known images.", file_okay=False
    ),
]
Labels = Annotated[Path, typer.Option("--labels", help="The label stage's output (the test split).", file_okay=False)]
DetectorDir = Annotated[
    Path, typer.Option("--detector", help="The trained detector (the detector stage's output).", file_okay=False)
]


def fail(message: str) -> NoReturn:
    """Print a user-caused error (one line per problem) and exit non-zero; never a traceback."""
    for line in message.splitlines():
        err.print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(USER_ERROR)


def say(line: str) -> None:
    """One plain line on stdout (no rich highlighting of numbers and paths)."""
    out_console.print(line, highlight=False, soft_wrap=True)


def params_or_fail(params_file: Path, profile: str | None = None) -> Params:
    """The params with `profile` applied, or the file's problems as the failure."""
    try:
        return load_params(params_file, profile)
    except ParamsError as error:
        fail(str(error))


def component_or_fail(params: Params, name: str) -> str:
    """`name` if it is one of the params' components, else a failure listing the known ones."""
    try:
        params.component(name)
    except ParamsError as error:
        fail(str(error))
    return name


def chosen_components(params: Params, name: str | None, every: bool) -> list[str]:
    """The one component named, or all of them with --all; exactly one of the two is required."""
    if every == (name is not None):
        fail("name one COMPONENT or give --all")
    return list(params.components) if every else [component_or_fail(params, name)]


def registry_call(params: Params, action: Callable[[], T]) -> T:
    """Run a registry or tracking action; its errors, and an unreachable or refusing MLflow
    server, become one line. (TensorFlow is not imported here: `models list` needs none.)"""
    from mlflow.exceptions import MlflowException

    from pipelines.registry import RegistryError, one_line
    from pipelines.tracking import tracking_uri

    try:
        return action()
    except RegistryError as error:
        fail(str(error))
    except MlflowException as error:
        fail(f"MLflow at {tracking_uri(params.registry)}: {one_line(error)}")


def run_module(module: str, arguments: Sequence[str]) -> int:
    """`python -m module arguments` in a child process, its output passed through; its exit code.
    Scrapy's reactor cannot restart in one process, and the flows and stages are entry points of
    their own, so the CLI starts them rather than importing them.

    Stopping this process stops the child: SIGTERM, SIGINT and SIGHUP are passed on to it and
    this process waits for it to stop what it started (a flow stops its stages and Prefect's
    temporary server), then exits with its status. The child runs in a session of its own, so a
    Ctrl-C in the terminal reaches it once, through here, not twice."""
    import signal

    process = subprocess.Popen([sys.executable, "-m", module, *arguments], start_new_session=True)

    def pass_on(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, pass_on) for signum in forwarded}
    try:
        code = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N


def profile_arguments(profile: str | None) -> list[str]:
    """`--profile P` for a child process when one was chosen, else nothing (its file's default)."""
    return ["--profile", profile] if profile else []
