"""Labelling by eye: sheets from the real-photo fixtures, pass files checked line by line,
agreement, and what the settled labels keep."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipelines.hand_labelling import (
    HandLabellingError,
    Photo,
    agreement,
    cohen_kappa,
    disagreements,
    hand_label_rows,
    photo_of,
    plan_sheets,
    read_pass,
    read_sheet_index,
    settle,
    write_sheets,
)

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "real-photos"
CLASSES = {
    "pattern": ("check", "dot", "floral", "solid", "stripe"),
    "collar": ("band", "button_down", "notched", "regular"),
    "fit": ("bootcut", "regular", "skinny", "wide"),
    "color": ("light", "middle", "deep"),
    "washing": ("one", "brush"),
    "damage": ("damage", "non_damage"),
}
TROUSERS = ("jeans", "fit", "color", "washing", "damage")


def photos() -> list[Photo]:
    return [photo_of(path, PHOTOS) for path in sorted(PHOTOS.rglob("*.jpg"))]


def test_two_passes_shuffle_the_same_photos_differently(tmp_path: Path) -> None:
    first, second = plan_sheets(photos(), 3, seed=101), plan_sheets(photos(), 3, seed=202)
    assert {e.photo for e in first} == {e.photo for e in second} == set(photos())
    assert [e.photo for e in first] != [e.photo for e in second]
    assert [(e.sheet, e.number) for e in first] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2)]
    written = write_sheets(first, PHOTOS, tmp_path)
    assert [p.name for p in written] == ["sheet-001.png", "sheet-002.png", "sheet-003.png"]
    assert Image.open(written[0]).size == (4 * 300, 300) and Image.open(written[2]).size == (4 * 300, 300)
    index = read_sheet_index(tmp_path / "sheets.csv")
    assert index[(2, 1)] == first[3].photo and len(index) == 8


def write_pass(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


INDEX = {(1, n): Photo(f"{n:064x}", f"pants/{n}.jpg") for n in range(1, 5)}


def test_a_pass_reads_its_answers_and_drops_jeans_answers_of_other_trousers(tmp_path: Path) -> None:
    answers = read_pass(
        write_pass(
            tmp_path / "p.csv",
            ["sheet", "number", *TROUSERS],
            [
                ["1", "1", "yes", "Skinny", "deep", "brush", "non-damage"],
                ["1", "2", "no", "", "", "", ""],
                ["1", "3", "unclear", "wide", "", "", ""],  # answers after "not sure it is jeans" go
            ],
        ),
        INDEX,
        TROUSERS,
        CLASSES,
    )
    assert answers[INDEX[(1, 1)].sha256] == {
        "jeans": "yes",
        "fit": "skinny",
        "color": "deep",
        "washing": "brush",
        "damage": "non_damage",
    }
    assert answers[INDEX[(1, 2)].sha256] == {"jeans": "no"}
    assert answers[INDEX[(1, 3)].sha256] == {"jeans": "unclear"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["1", "9", "no", "", "", "", ""], "no photo 9 on sheet 1"),
        (["1", "1", "yes", "baggy", "deep", "one", "damage"], "fit 'baggy' is not one of"),
        (["1", "1", "yes", "", "deep", "one", "damage"], "fit '' is not one of"),  # a blank is no answer
    ],
)
def test_a_bad_answer_names_its_line(tmp_path: Path, row: list[str], message: str) -> None:
    path = write_pass(tmp_path / "p.csv", ["sheet", "number", *TROUSERS], [row])
    with pytest.raises(HandLabellingError, match=message) as raised:
        read_pass(path, INDEX, TROUSERS, CLASSES)
    assert str(raised.value).startswith(f"{path}:2:")


def test_agreement_kappa_and_settling_with_a_third_look() -> None:
    first = {"a": {"pattern": "solid", "collar": "regular"}, "b": {"pattern": "stripe", "collar": "none"}}
    second = {"a": {"pattern": "solid", "collar": "button_down"}, "b": {"pattern": "stripe", "collar": "none"}}
    found = {a.question: a for a in agreement(first, second, ("pattern", "collar"))}
    assert found["pattern"].share == 1.0 and found["pattern"].kappa == 1.0
    assert found["collar"].agreed == 1 and found["collar"].photos == 2
    assert disagreements(first, second) == [("a", "collar", "regular", "button_down")]
    assert settle(first, second, {})["a"]["collar"] == "unclear"  # not looked at again: never a guess
    settled = settle(first, second, {"a": {"collar": "button_down"}})
    assert settled["a"] == {"pattern": "solid", "collar": "button_down"}
    photos_by_sha = {"a": Photo("a", "shirt/a.jpg"), "b": Photo("b", "t-shirt/b.jpg")}
    # `none` (a collarless top) is an answer but no class: only classes become hand labels.
    assert hand_label_rows(settled, photos_by_sha, CLASSES, "two passes") == [
        ("a", "shirt-collar", "button_down", "two passes", "shirt/a.jpg"),
        ("a", "shirt-pattern", "solid", "two passes", "shirt/a.jpg"),
        ("b", "shirt-pattern", "stripe", "two passes", "t-shirt/b.jpg"),
    ]


def test_settled_not_jeans_drops_the_jeans_answers() -> None:
    first = {"a": {"jeans": "yes", "fit": "wide", "color": "deep", "washing": "one", "damage": "damage"}}
    second = {"a": {"jeans": "no"}}
    assert settle(first, second, {"a": {"jeans": "no"}}) == {"a": {"jeans": "no"}}
    looked = settle(first, second, {"a": {"jeans": "yes", "fit": "wide"}})["a"]
    assert looked == {"jeans": "yes", "fit": "wide", "color": "unclear", "washing": "unclear", "damage": "unclear"}


def test_cohen_kappa_counts_chance_agreement_out() -> None:
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "a", "b", "b"]) == 1.0
    assert cohen_kappa(["a", "b", "a", "b"], ["a", "a", "b", "b"]) == 0.0
    assert cohen_kappa(["a"] * 9 + ["b"], ["a"] * 10) == 0.0  # always answering the common class says nothing


def hand_labels(*arguments: str) -> subprocess.CompletedProcess[str]:
    seamline = str(Path(sys.executable).with_name("seamline"))
    return subprocess.run([seamline, "hand-labels", *arguments], capture_output=True, text=True, timeout=120)


def test_the_cli_makes_sheets_and_settles_two_passes(tmp_path: Path, shipped_params_path: Path) -> None:
    listing = tmp_path / "photos.csv"
    with listing.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "sha256", "path"])
        writer.writerows(["tops", p.sha256, p.path] for p in photos() if not p.path.startswith("pants"))
    for number, seed in ((1, 101), (2, 202)):
        made = hand_labels(
            "sheets",
            "--photos",
            str(listing),
            "--group",
            "tops",
            "--root",
            str(PHOTOS),
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / f"pass{number}"),
        )
        assert made.returncode == 0, made.stderr
        index = read_sheet_index(tmp_path / f"pass{number}" / "sheets.csv")
        # Both passes see every photo solid; the collars they see differ.
        rows = [[s, n, "solid", "regular" if number == 1 else "band"] for (s, n) in index]
        write_pass(tmp_path / f"answers{number}.csv", ["sheet", "number", "pattern", "collar"], rows)
    passes = ["--first-sheets", str(tmp_path / "pass1" / "sheets.csv"), "--first", str(tmp_path / "answers1.csv")]
    passes += ["--second-sheets", str(tmp_path / "pass2" / "sheets.csv"), "--second", str(tmp_path / "answers2.csv")]
    settled = hand_labels(
        "settle", "--group", "tops", "--out", str(tmp_path / "out"), *passes, "--params", str(shipped_params_path)
    )
    assert settled.returncode == 0, settled.stderr
    labels = list(csv.DictReader((tmp_path / "out" / "hand-labels-tops.csv").open()))
    assert {(row["component"], row["label"]) for row in labels} == {("shirt-pattern", "solid")}  # collars disagreed
    again = list(csv.DictReader((tmp_path / "out" / "to-look-again-tops.csv").open()))
    assert len(again) == 6 and {row["question"] for row in again} == {"collar"}


def test_the_cli_refuses_an_unknown_group_and_missing_photos_in_one_line(tmp_path: Path) -> None:
    listing = write_pass(tmp_path / "photos.csv", ["group", "sha256", "path"], [["tops", "0" * 64, "shirt/gone.jpg"]])
    unknown = hand_labels("sheets", "--photos", str(listing), "--group", "hats", "--out", str(tmp_path / "s"))
    assert unknown.returncode == 2 and "--group: expected tops or trousers, got 'hats'" in unknown.stderr
    missing = hand_labels("sheets", "--photos", str(listing), "--group", "tops", "--root", str(PHOTOS), "--out", "s")
    assert missing.returncode == 2 and "1 photos not under" in missing.stderr and "shirt/gone.jpg" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
