"""`seamline train` and `seamline pretrain`: run the classifier stages now, as `dvc repro` would
(each in a child process: the stage modules are entry points of their own); `seamline
garment-base`: the last step of `make base`, which rebuilds the base the demo ships with."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
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
    say,
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


@app.command("gpu")
def gpu() -> None:
    """Say which GPUs training would use, or, with none, the one reason why (no driver, which CUDA
    libraries are missing, or no visible device), and exit non-zero: a GPU worker's start-up check."""
    from pipelines.gpu import gpu_report

    report = gpu_report()
    problem = report.problem()
    if problem is not None:
        fail(problem)
    say(f"{report.backend}: {len(report.devices)} GPU(s): {', '.join(report.devices)}")


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


@app.command("garment-base")
def garment_base(
    crops: Annotated[
        list[Path] | None,
        typer.Option("--crops", help="Crop folder of the shop the base learns from (repeat for a shop cut two ways)."),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Its label folder (the label stage's output).")
    ] = None,
    photos: Annotated[
        Path | None,
        typer.Option("--photos", help="Real photos in one folder per garment type: the base learns the type too."),
    ] = None,
    arrays: Annotated[
        Path | None,
        typer.Option("--arrays", help="Train from a pack --save-arrays wrote (no crops or TensorFlow read)."),
    ] = None,
    save_arrays: Annotated[
        Path | None, typer.Option("--save-arrays", help="Decode the crops and photos into this .npz pack and stop.")
    ] = None,
    jpeg_quality: Annotated[
        int | None,
        typer.Option("--jpeg-quality", min=50, max=100, help="With --save-arrays: store JPEGs, about a quarter."),
    ] = None,
    train_only: Annotated[
        bool, typer.Option("--train-only", help="With --save-arrays: leave the test split out (a smaller pack).")
    ] = False,
    minutes: Annotated[
        float | None, typer.Option("--minutes", min=0.1, help="Stop after the epoch that passes this many minutes.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Weights file to write (default: params garment_base.file).")
    ] = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Pretrain the garment base: one DenseNet121 supervised on every component's crops and labels
    at once (params `garment_base`), written in float16 with a card beside it (its data, recipe,
    and accuracy per component and split). `make base` runs the whole recipe: a demo shop of
    another seed (profile garment-base), crawled, labelled and cut in a scratch workspace, then this.

    The decoding needs TensorFlow, the training only Keras: `--save-arrays` then `--arrays` splits
    them, so the training can run on a GPU machine with Keras on JAX (docs/base-weights.md).
    """
    from pipelines.classifier import SPLITS
    from pipelines.garment_base import GarmentBaseError, build_base, card_path, load_pack, pack_data, save_pack

    params = params_or_fail(params_file, profile)
    target = out or Path(params.garment_base.file)
    command = shlex.join(["seamline", *sys.argv[1:]])  # recorded in the pack and the card
    try:
        if arrays is not None:
            pack = load_pack(arrays, params.garment_base.image_size)
        elif crops and labels is not None:
            pack = pack_data(params, crops, labels, photos, progress=say)
        else:
            fail("garment base: give --crops and --labels, or --arrays")
        if save_arrays is not None:
            save_pack(pack, save_arrays, jpeg_quality, ("train", "val") if train_only else SPLITS, command)
            say(f"garment base: {save_arrays} ({save_arrays.stat().st_size / 2**20:.1f} MB) holds the decoded images")
            return
        card = build_base(params, pack, target, progress=say, minutes=minutes, command=command)
    except GarmentBaseError as error:
        fail(f"garment base: {error}")
    say(
        f"garment base: {target} ({target.stat().st_size / 2**20:.1f} MB, float16); test accuracy by component "
        f"{card['accuracy_by_split'].get('test')}; card {card_path(target)}"
    )
