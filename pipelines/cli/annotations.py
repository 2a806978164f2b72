"""`seamline annotations import`: Labelme polygons → the COCO file the detector trains on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.annotations import import_labelme_dir
from pipelines.cli.common import ParamsFile, err, fail, params_or_fail, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer(help="Import garment annotations (Labelme polygons) for the detector.", no_args_is_help=True)


@app.command("import")
def import_labelme(
    folder: Annotated[
        Path, typer.Argument(help="Folder of Labelme JSON files (searched recursively).", file_okay=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Where the COCO file and images go.")] = Path("data/annotations"),
    dvc_add: Annotated[
        bool, typer.Option("--dvc/--no-dvc", help="Version the result with `dvc add` (when run in a DVC repo).")
    ] = True,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Convert Labelme polygons to one COCO instances file (pycocotools areas and boxes).

    Each bad file (unreadable, missing image, unknown label, fewer than 3 points, points outside
    the image, nothing annotated) is reported by name and skipped; the rest are imported. In a
    DVC repo the folder is then `dvc add`ed, so the detector stage sees exactly which
    annotations it was trained on; commit the .dvc file it writes.
    """
    if not folder.is_dir():
        fail(f"{folder}: no such folder")
    categories = params_or_fail(params_file).detector.categories
    result = import_labelme_dir(folder, out, categories)
    for path, reason in result.problems:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    counts = ", ".join(
        f"{c['name']} {sum(1 for a in result.coco['annotations'] if a['category_id'] == c['id'])}"
        for c in result.coco["categories"]
    )
    say(
        f"imported {len(result.imported)} images ({counts}); skipped {len(result.problems)}; "
        f"→ {out / 'instances.json'} (report: {out / 'import_report.csv'})"
    )
    if not result.imported:
        fail(f"no usable annotation file in {folder}")
    # Version it when it lands inside the DVC repository this runs in (the project root).
    if dvc_add and Path(".dvc").is_dir() and out.resolve().is_relative_to(Path.cwd().resolve()):
        added = subprocess.run(
            [sys.executable, "-m", "dvc", "add", str(out)], capture_output=True, text=True, check=False
        )
        if added.returncode != 0:
            said = (added.stderr + added.stdout).strip().splitlines() or ["no output"]
            fail(f"dvc add {out} failed: {said[-1]}")
        say(f"versioned with DVC: {out}.dvc (commit it with git)")
