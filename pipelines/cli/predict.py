"""`seamline predict`: tag photos with the registered models (each component's and the detector's
champion by default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import (
    ParamsFile,
    Profile,
    component_or_fail,
    err,
    fail,
    params_or_fail,
    registry_call,
    say,
)
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()


@app.command("predict")
def predict(
    images: Annotated[list[Path], typer.Argument(help="Photos to tag.", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per photo, one per line.")] = False,
    component: Annotated[
        list[str] | None, typer.Option("--component", "-c", help="Only these components (repeatable).")
    ] = None,
    alias: Annotated[
        str, typer.Option("--alias", help="Which registered version of each component to use.")
    ] = "champion",
    detector_alias: Annotated[
        str, typer.Option("--detector-alias", help="Which registered version of the detector to use.")
    ] = "champion",
    batch: Annotated[int, typer.Option("--batch", help="Photos per detector/classifier batch.", min=1)] = 16,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Tag photos with each component's champion model from the registry.

    The detector's champion (registered model `detector`; --detector-alias for another) finds the
    garment, each component's region is cropped as in training, and the classifier answers (shirt
    components only on shirts, jeans components only on jeans). A label below the threshold tuned
    on validation prints as `unknown`, with the best guess beside it.
    """
    from pipelines.detect import DetectorError, chunks, read_rgb
    from pipelines.predict import Tagger

    params = params_or_fail(params_file, profile)
    for name in component or []:
        component_or_fail(params, name)
    try:
        tagger = registry_call(
            params, lambda: Tagger.from_registry(params, component, alias, detector_alias=detector_alias)
        )
    except DetectorError as error:
        fail(str(error))
    if not as_json:
        chosen = ", ".join(f"{name} v{c.version}" for name, c in tagger.classifiers.items())
        say(f"models ({alias}): {chosen}; detector ({detector_alias}) v{tagger.detector.registered_version}")
    failed = 0
    for group in chunks(images, batch):
        pixels = {path: read_rgb(path) for path in group}
        usable = [path for path in group if pixels[path] is not None]
        for path in group:
            if pixels[path] is None:
                failed += 1
                err.print(f"[red]error[/] {path}: not a decodable image", highlight=False, soft_wrap=True)
        for path, tags in zip(usable, tagger.tag([pixels[path] for path in usable])):
            if as_json:
                print(json.dumps({"image": str(path), **tags.as_json()}), flush=True)
                continue
            say(f"{path}")
            for name, tag in tags.tags.items():
                guess = f" (best guess {tag.best_guess})" if tag.unknown else ""
                say(f"  {name:<14} {tag.label:<12} {tag.probability:.2f}{guess}")
            for name, why in tags.skipped.items():
                say(f"  {name:<14} -            {why}")
    if failed:
        raise typer.Exit(1)
