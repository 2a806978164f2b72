"""`seamline train` and `seamline pretrain`: run the classifier stages now, as `dvc repro` would
(each in a child process: the stage modules are entry points of their own)."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli.common import (
    ParamsFile,
    Profile,
    chosen_components,
    fail,
    params_or_fail,
    profile_arguments,
    run_module,
)
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()


@app.command("train")
def train(
    component: Annotated[str | None, typer.Argument(help="Component to train, e.g. shirt-collar.")] = None,
    all_components: Annotated[
        bool, typer.Option("--all", help="Train every component in params `components`, one after another.")
    ] = False,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Train component classifiers now, from data/crops and data/labels: the frozen-base phase,
    then fine-tuning, evaluated on the test split and tracked in MLflow (experiment
    `classifiers`). Writes models/<c>/, metrics/<c>.json and plots/<c>/, the `train@<c>` stage's
    outputs; `dvc repro` runs the same command and skips components whose inputs did not change.
    """
    params = params_or_fail(params_file, profile)
    for name in chosen_components(params, component, all_components):
        arguments = ["--component", name, "--params", str(params_file), *profile_arguments(profile)]
        code = run_module("pipelines.stages.train", arguments)
        if code != 0:
            fail(f"training {name} failed (exit {code}); the components before it are trained")


@app.command("pretrain")
def pretrain(
    force: Annotated[
        bool, typer.Option("--force", help="Pretrain even if no component's training.weights uses the result.")
    ] = False,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Pretrain the classifiers' backbone without ImageNet: SimCLR on the unlabelled crops in
    data/crops (train and validation images only, no labels read), written to
    models/pretrain/base.weights.h5 and tracked in MLflow (experiment `pretrain`).

    Components use it with `training.weights: models/pretrain/base.weights.h5`; the `pretrain`
    DVC stage runs the same command.
    """
    arguments = ["--params", str(params_file), *profile_arguments(profile), *(["--force"] if force else [])]
    code = run_module("pipelines.stages.pretrain", arguments)
    if code != 0:
        raise typer.Exit(code)
