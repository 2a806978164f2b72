"""`seamline detect`: what the pipeline feeds the classifiers — the detections on each photo and
each component's crop, cut by the same code as the crop stage and the tagger."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.cli.common import DetectorDir, ParamsFile, Profile, component_or_fail, err, fail, params_or_fail, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()

SHEET_MODES = ("bbox", "mask", "mask_alpha", "none")


@app.command("detect")
def detect(
    images: Annotated[list[Path], typer.Argument(help="Photos to run the garment detector on.", dir_okay=False)],
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="Crop mode: bbox | mask | mask_alpha | annotation | none (default: each component's, from params).",
        ),
    ] = None,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Only this component's crop (default: every component).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Crop file (one image, one component) or folder for the crops.")
    ] = None,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Also write a contact sheet: each image and component in every mode.")
    ] = None,
    detector_dir: DetectorDir = Path("models/detector"),
    annotations: Annotated[
        Path, typer.Option("--annotations", help="COCO annotations, for --mode annotation.", file_okay=False)
    ] = Path("data/annotations"),
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Show what the pipeline feeds the classifiers: the detections on each photo, and each
    component's crop exactly as the crop stage cuts it.

    Crops go to --out (default: detect-out/<image>-<component>.png); a photo that cannot be
    decoded is reported and the rest still run.
    """
    import cv2

    from pipelines.crop import (
        CROP_MODES,
        NO_ITEM,
        annotation_regions,
        component_crop,
        contact_sheet,
        crop_one,
        write_png,
    )
    from pipelines.detect import DetectorError, load_detector, read_rgb

    params = params_or_fail(params_file, profile)
    if mode is not None and mode not in CROP_MODES:
        fail(f"--mode {mode}: expected {', '.join(CROP_MODES[:-1])} or {CROP_MODES[-1]}")
    chosen = [component_or_fail(params, component)] if component else list(params.components)
    # Each component's own recipe (its mode and margin), unless --mode overrides every mode.
    recipes = {name: params.crop_for(name).model_copy(update={"mode": mode} if mode else {}) for name in chosen}
    single_file = out is not None and out.suffix.lower() == ".png"
    if single_file and (len(images) > 1 or len(chosen) > 1):
        fail("--out FILE.png needs one image and one --component; give a folder for more")
    folder = out if out is not None and not single_file else Path("detect-out")
    try:
        detector = load_detector(detector_dir)
    except DetectorError as error:
        fail(str(error))
    threshold, categories = params.detector.score_threshold, params.detector.categories
    truth = annotation_regions(annotations) if any(r.mode == "annotation" for r in recipes.values()) else {}
    pixels_of = {path: read_rgb(path) for path in images}
    for path in (path for path, pixels in pixels_of.items() if pixels is None):
        err.print(f"[red]error[/] {path}: not a decodable image", highlight=False, soft_wrap=True)
    usable = [path for path, pixels in pixels_of.items() if pixels is not None]
    found = dict(zip(usable, detector.detect([pixels_of[path] for path in usable])))
    sheet_rows: list[list[Any]] = []
    sheet_labels: list[str] = []
    for path in usable:
        shown = sorted((d for d in found[path] if d.score >= threshold), key=lambda d: -d.score)
        say(f"{path}: {len(shown)} detections ≥ {threshold} (detector {detector.version})")
        for d in shown:
            x0, y0, x1, y1 = d.box
            say(f"  {d.category:<8} {d.score:.3f}  box {x0:.0f},{y0:.0f} → {x1:.0f},{y1:.0f}")
        ground_truth = truth.get(hashlib.sha256(path.read_bytes()).hexdigest(), {}) if truth else None
        for name in chosen:
            spec, recipe = params.components[name], recipes[name]
            # Asked for one component, crop it even where the pipeline would not (no shirt found).
            cut = component_crop(
                pixels_of[path], found[path], spec, recipe, threshold, categories, component is None, ground_truth
            )
            if cut.status == NO_ITEM:
                continue  # jeans components on a shirt photo: the pipeline would not crop them
            if cut.pixels is None:
                say(f"  {name}: {cut.reason} → skipped (crop.on_no_detection: skip)")
            else:
                target = out if single_file and out is not None else folder / f"{path.stem}-{name}.png"
                write_png(target, cut.pixels)
                note = "" if cut.status == "cropped" else f" ({cut.reason}: {cut.status})"
                say(f"  {name}: {recipe.mode} crop → {target}{note}")
            label = f"{path} {spec.crop_region}"
            if sheet is not None and label not in sheet_labels:  # one row per region
                sheet_labels.append(label)
                sheet_rows.append(
                    [
                        crop_one(pixels_of[path], cut.region, recipe.model_copy(update={"mode": m}))[0]
                        if cut.region or m == "none"
                        else None
                        for m in SHEET_MODES
                    ]
                )
    if sheet is not None and sheet_rows:
        sheet.parent.mkdir(parents=True, exist_ok=True)
        row_names = [f"{Path(label.rsplit(' ', 1)[0]).stem[:12]} {label.rsplit(' ', 1)[1]}" for label in sheet_labels]
        cv2.imwrite(
            str(sheet), cv2.cvtColor(contact_sheet(sheet_rows, row_names, list(SHEET_MODES)), cv2.COLOR_RGB2BGR)
        )
        say(f"contact sheet → {sheet}")
    if len(usable) < len(images):
        raise typer.Exit(1)
