"""Labelling photos by eye: numbered contact sheets, two passes, agreement, and the settled labels.

A person (or two) labels each photo twice from differently shuffled sheets; what the passes agree
on stands, what they do not goes to a third look. `unclear` is an answer, never a guess. The
settled labels are written in the format `labels.hand_labels` reads (sha256,component,label,who,
plus the photo's path), keeping only real classes; the full record, passes included, sits beside.

Every answer is one of a component's classes, or one of the words below; a trousers photo first
says whether it shows jeans at all.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

UNCLEAR = "unclear"  # the photo does not show it well enough to say: never a guess
NONE = "none"  # a top without a collar (t-shirts, most knitwear)
OTHER = "other"  # a pattern outside the five classes (print, logo, colour block, camouflage, ...)
JEANS = "jeans"  # the question a trousers photo answers first: yes, no or unclear

INDEX_FILE = "sheets.csv"
TILE = 300
COLUMNS = 4


class HandLabellingError(ValueError):
    """A pass file that cannot be read; the message names the file, line and reason."""


@dataclass(frozen=True)
class Photo:
    sha256: str
    path: str  # as given: relative to where the labels are kept, so the record travels


@dataclass(frozen=True)
class SheetEntry:
    sheet: int
    number: int
    photo: Photo


def photo_of(path: Path, root: Path) -> Photo:
    return Photo(hashlib.sha256(path.read_bytes()).hexdigest(), path.relative_to(root).as_posix())


def plan_sheets(photos: Sequence[Photo], per_sheet: int, seed: int) -> list[SheetEntry]:
    """Photos shuffled by `seed` and numbered sheet by sheet from 1: a second pass with another
    seed sees each photo among other neighbours, so one sheet's context cannot steer both."""
    order = list(photos)
    random.Random(seed).shuffle(order)
    return [SheetEntry(i // per_sheet + 1, i % per_sheet + 1, photo) for i, photo in enumerate(order)]


def draw_sheet(images: Sequence[Image.Image], tile: int = TILE, columns: int = COLUMNS) -> Image.Image:
    """Numbered thumbnails (1, 2, ... left to right, top to bottom), each letterboxed into a
    square tile so nothing is cut off, the number in a white box at its top left."""
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(14, tile // 12))
    for index, image in enumerate(images):
        x, y = (index % columns) * tile, (index // columns) * tile
        thumb = ImageOps.contain(image.convert("RGB"), (tile - 4, tile - 4))
        sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
        draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=(200, 200, 200))
        label = str(index + 1)
        box = draw.textbbox((x + 4, y + 2), label, font=font)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(255, 255, 255), outline=(0, 0, 0))
        draw.text((x + 4, y + 2), label, fill=(0, 0, 0), font=font)
    return sheet


def write_sheets(entries: Sequence[SheetEntry], root: Path, out: Path, tile: int = TILE) -> list[Path]:
    """`out/sheet-NNN.png` per sheet and `out/sheets.csv` (sheet, number, sha256, path)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for sheet in sorted({entry.sheet for entry in entries}):
        own = [entry for entry in entries if entry.sheet == sheet]
        images = [Image.open(root / entry.photo.path) for entry in own]
        path = out / f"sheet-{sheet:03d}.png"
        draw_sheet(images, tile).save(path)
        written.append(path)
    with (out / INDEX_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sheet", "number", "sha256", "path"])
        writer.writerows([e.sheet, e.number, e.photo.sha256, e.photo.path] for e in entries)
    return written


def read_sheet_index(path: Path) -> dict[tuple[int, int], Photo]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            (int(row["sheet"]), int(row["number"])): Photo(row["sha256"], row["path"]) for row in csv.DictReader(handle)
        }


# --- passes ---------------------------------------------------------------------------------


def allowed_answers(question: str, classes: Mapping[str, Sequence[str]]) -> frozenset[str]:
    """What an answer to `question` (a component's attribute, or `jeans`) may be."""
    if question == JEANS:
        return frozenset({"yes", "no", UNCLEAR})
    extra = {"collar": {NONE}, "pattern": {OTHER}}.get(question, set())
    return frozenset({*classes[question], *extra, UNCLEAR})


def read_pass(
    path: Path,
    index: Mapping[tuple[int, int], Photo],
    questions: Sequence[str],
    classes: Mapping[str, Sequence[str]],
    partial: bool = False,
) -> dict[str, dict[str, str]]:
    """A pass file (`sheet,number,<question>...`) as sha256 → question → answer. Trousers
    answered anything but `jeans: yes` have no jeans attributes: the other answers are dropped.
    `partial` (a third look): blank answers are questions not looked at again, and left out."""
    answers: dict[str, dict[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"sheet", "number", *questions} - set(reader.fieldnames or [])
        if missing:
            raise HandLabellingError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            key = (int(row["sheet"]), int(row["number"]))
            if key not in index:
                raise HandLabellingError(f"{path}:{line}: no photo {key[1]} on sheet {key[0]}")
            given = {q: (row[q] or "").strip().lower().replace("-", "_").replace(" ", "_") for q in questions}
            if partial:
                given = {q: a for q, a in given.items() if a}
            elif JEANS in given and given[JEANS] != "yes":
                given = {JEANS: given[JEANS]}
            for question, answer in given.items():
                if answer not in allowed_answers(question, classes):
                    raise HandLabellingError(
                        f"{path}:{line}: {question} {answer!r} is not one of "
                        f"{', '.join(sorted(allowed_answers(question, classes)))}"
                    )
            sha = index[key].sha256
            if sha in answers:
                raise HandLabellingError(f"{path}:{line}: photo {key} answered twice in one pass")
            answers[sha] = given
    return answers


@dataclass(frozen=True)
class Agreement:
    question: str
    photos: int  # answered in both passes
    agreed: int
    kappa: float  # Cohen's kappa over the answers both passes gave

    @property
    def share(self) -> float:
        return self.agreed / self.photos if self.photos else 0.0


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Agreement beyond what the two passes' answer frequencies give by chance."""
    if not first:
        return 0.0
    labels = sorted(set(first) | set(second))
    observed = sum(a == b for a, b in zip(first, second)) / len(first)
    expected = sum((first.count(label) / len(first)) * (second.count(label) / len(second)) for label in labels)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def agreement(
    first: Mapping[str, Mapping[str, str]], second: Mapping[str, Mapping[str, str]], questions: Iterable[str]
) -> list[Agreement]:
    found = []
    for question in questions:
        both = [sha for sha in first if sha in second and question in first[sha] and question in second[sha]]
        a = [first[sha][question] for sha in both]
        b = [second[sha][question] for sha in both]
        found.append(Agreement(question, len(both), sum(x == y for x, y in zip(a, b)), cohen_kappa(a, b)))
    return found


# Which component each question labels; `jeans` labels none (it says whether the others apply).
COMPONENT_OF = {
    "pattern": "shirt-pattern",
    "collar": "shirt-collar",
    "fit": "jeans-fit",
    "color": "jeans-color",
    "washing": "jeans-washing",
    "damage": "jeans-damage",
}
QUESTIONS = {"tops": ("pattern", "collar"), "trousers": (JEANS, "fit", "color", "washing", "damage")}


def disagreements(
    first: Mapping[str, Mapping[str, str]], second: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(sha256, question, first answer, second answer) wherever the passes differ; a question
    one pass dropped (not jeans) counts as answered `-` there."""
    found = []
    for sha in sorted(set(first) & set(second)):
        for question in sorted(set(first[sha]) | set(second[sha])):
            a, b = first[sha].get(question, "-"), second[sha].get(question, "-")
            if a != b:
                found.append((sha, question, a, b))
    return found


def settle(
    first: Mapping[str, Mapping[str, str]],
    second: Mapping[str, Mapping[str, str]],
    third: Mapping[str, Mapping[str, str]],
) -> dict[str, dict[str, str]]:
    """Each answer both passes agree on; where they disagree, the third look's (which must then
    exist: a disagreement left unsettled stays unclear)."""
    settled: dict[str, dict[str, str]] = {}
    for sha in sorted(set(first) & set(second)):
        answers = {}
        for question in sorted(set(first[sha]) | set(second[sha])):
            a, b = first[sha].get(question), second[sha].get(question)
            answers[question] = a if a == b else third.get(sha, {}).get(question, UNCLEAR)
        if answers.get(JEANS, "yes") != "yes":  # settled as not jeans: the jeans answers go
            answers = {JEANS: answers[JEANS]}
        settled[sha] = {q: a for q, a in answers.items() if a is not None}
    return settled


def hand_label_rows(
    settled: Mapping[str, Mapping[str, str]],
    photos: Mapping[str, Photo],
    classes: Mapping[str, Sequence[str]],
    who: str,
) -> list[tuple[str, str, str, str, str]]:
    """(sha256, component, label, who, path) for every settled answer that is a class: what
    `labels.hand_labels` reads. `unclear`, `none`, `other` and the jeans question stay out."""
    rows = []
    for sha, answers in settled.items():
        for question, answer in sorted(answers.items()):
            if question in COMPONENT_OF and answer in classes[question]:
                rows.append((sha, COMPONENT_OF[question], answer, who, photos[sha].path))
    return sorted(rows, key=lambda row: (row[1], row[4]))
