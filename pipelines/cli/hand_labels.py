"""`seamline hand-labels …`: label photos by eye (docs/labelling.md): numbered contact sheets for
each pass, then the two passes' agreement and the settled labels in `labels.hand_labels`' format."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ParamsFile, fail, out_console, params_or_fail, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer(
    help="Label photos by eye: numbered contact sheets, two passes, agreement, settled labels.", no_args_is_help=True
)

Group = Annotated[str, typer.Option("--group", help="tops (pattern, collar) or trousers (jeans and its four).")]
PhotosList = Annotated[
    Path, typer.Option("--photos", help="CSV of the photos to label: group,sha256,path (path under --root).")
]


def _photos(photos: Path, group: str) -> list[tuple[str, str]]:
    from pipelines.hand_labelling import QUESTIONS

    if group not in QUESTIONS:
        fail(f"--group: expected {' or '.join(QUESTIONS)}, got {group!r}")
    try:
        with photos.open(newline="", encoding="utf-8") as handle:
            rows = [(row["sha256"], row["path"]) for row in csv.DictReader(handle) if row["group"] == group]
    except (OSError, KeyError) as error:
        fail(f"{photos}: cannot read the photo list ({error}); expected columns group,sha256,path")
    if not rows:
        fail(f"{photos}: no photo in group {group!r}")
    return rows


@app.command("sheets")
def sheets(
    photos: PhotosList,
    group: Group,
    out: Annotated[Path, typer.Option("--out", help="Folder for sheet-NNN.png and sheets.csv.")],
    root: Annotated[Path, typer.Option("--root", help="Folder the photo paths are under.")] = Path(
        "../shared/real-photos"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Shuffle of this pass: another seed for the second pass.")] = 1,
    per_sheet: Annotated[int, typer.Option("--per-sheet", min=1, max=64)] = 16,
) -> None:
    """Numbered contact sheets of one group's photos, in this pass's shuffle."""
    from pipelines.hand_labelling import Photo, plan_sheets, write_sheets

    chosen = [Photo(sha, path) for sha, path in _photos(photos, group)]
    missing = [photo.path for photo in chosen if not (root / photo.path).is_file()]
    if missing:
        fail(f"{len(missing)} photos not under {root}, e.g. {missing[0]}")
    written = write_sheets(plan_sheets(chosen, per_sheet, seed), root, out)
    say(f"{len(chosen)} photos on {len(written)} sheets in {out} (index: {out / 'sheets.csv'})")


@app.command("settle")
def settle(
    group: Group,
    first_sheets: Annotated[Path, typer.Option("--first-sheets", help="sheets.csv of the first pass.")],
    first: Annotated[Path, typer.Option("--first", help="The first pass's answers.")],
    second_sheets: Annotated[Path, typer.Option("--second-sheets", help="sheets.csv of the second pass.")],
    second: Annotated[Path, typer.Option("--second", help="The second pass's answers.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the settled labels and the record.")],
    third: Annotated[
        Path | None,
        typer.Option("--third", help="A third look at the disagreements (first pass's sheet numbers; blanks kept)."),
    ] = None,
    who: Annotated[str, typer.Option("--who", help="Recorded in the hand labels' `who` column.")] = "hand",
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Agreement of two passes per question, then the settled answers: agreed, or the third
    look's; unsettled disagreements stay unclear and are listed for a third look."""
    from rich.table import Table

    from pipelines.hand_labelling import (
        COMPONENT_OF,
        QUESTIONS,
        HandLabellingError,
        agreement,
        disagreements,
        hand_label_rows,
        read_pass,
        read_sheet_index,
    )
    from pipelines.hand_labelling import settle as settled_answers

    if group not in QUESTIONS:
        fail(f"--group: expected {' or '.join(QUESTIONS)}, got {group!r}")
    params = params_or_fail(params_file)
    classes = {q: params.components[c].classes for q, c in COMPONENT_OF.items() if c in params.components}
    questions = QUESTIONS[group]
    try:
        first_index, second_index = read_sheet_index(first_sheets), read_sheet_index(second_sheets)
        one = read_pass(first, first_index, questions, classes)
        two = read_pass(second, second_index, questions, classes)
        looked = read_pass(third, first_index, questions, classes, partial=True) if third else {}
    except (OSError, KeyError, ValueError, HandLabellingError) as error:
        fail(str(error))
    table = Table("question", "photos in both passes", "agreed", "share", "Cohen's kappa")
    for found in agreement(one, two, questions):
        table.add_row(found.question, str(found.photos), str(found.agreed), f"{found.share:.1%}", f"{found.kappa:.2f}")
    out_console.print(table)

    photos = {p.sha256: p for p in first_index.values()}
    number_of = {p.sha256: key for key, p in first_index.items()}
    settled = settled_answers(one, two, looked)
    out.mkdir(parents=True, exist_ok=True)
    # Still open: a disagreement no third look answered, unless moot (trousers settled as not jeans).
    open_questions = [d for d in disagreements(one, two) if d[1] not in looked.get(d[0], {}) and d[1] in settled[d[0]]]
    with (out / f"to-look-again-{group}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sheet", "number", "question", "first", "second", "path"])
        writer.writerows([*number_of[sha], q, a, b, photos[sha].path] for sha, q, a, b in open_questions)
    with (out / f"answers-{group}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "path", "question", "first", "second", "settled"])
        for sha, answers in sorted(settled.items(), key=lambda item: photos[item[0]].path):
            for question in questions:
                row = [one[sha].get(question, "-"), two[sha].get(question, "-"), answers.get(question, "-")]
                writer.writerow([sha, photos[sha].path, question, *row])
    rows = hand_label_rows(settled, photos, classes, who)
    with (out / f"hand-labels-{group}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "component", "label", "who", "path"])
        writer.writerows(rows)
    say(
        f"{len(settled)} photos settled: {len(rows)} labels of a class in {out / f'hand-labels-{group}.csv'}; "
        f"{len(open_questions)} disagreements left for a third look ({out / f'to-look-again-{group}.csv'})"
    )
