"""Scoring on the hand-labelled real photos (experiments/real_photos.py): which photos count, and
how a photo the detector missed counts."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from experiments.real_photos import (
    REAL_PHOTOS,
    HandLabel,
    default_root,
    folders_matching_nothing,
    read_hand_labels,
    report,
    scored_photos,
    seen_photos,
)
from pipelines.config import load_params

EVAL_SET = Path(__file__).resolve().parents[2] / "eval" / "real-photos"


def test_the_shipped_set_reads_and_every_label_is_a_class(shipped_params_path: Path) -> None:
    params = load_params(shipped_params_path, "demo")
    hand = read_hand_labels(EVAL_SET)
    assert len(hand) == 2006
    for row in hand:
        assert row.label in params.component(row.component).classes, row
    # one label per photo and component
    assert len({(r.sha256, r.component) for r in hand}) == len(hand)


def test_photos_a_model_saw_or_has_no_class_for_are_left_out(tmp_path: Path) -> None:
    hand = [
        HandLabel("a", "jeans-fit", "skinny", "p/a.jpg"),
        HandLabel("b", "jeans-fit", "regular", "p/b.jpg"),
        HandLabel("c", "jeans-fit", "wide", "p/c.jpg"),
        HandLabel("d", "jeans-fit", "bootcut", "p/d.jpg"),
        HandLabel("a", "jeans-color", "deep", "p/a.jpg"),
    ]
    with (tmp_path / "jeans-fit.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(
            [
                ["sha256", "label", "split", "label_source"],
                ["c", "wide", "train", "weak"],
                ["d", "bootcut", "test", "weak"],
            ]
        )
    seen = seen_photos(tmp_path, "jeans-fit")
    assert seen == {"c"}  # a test-split photo is fair
    chosen, left_out = scored_photos(hand, "jeans-fit", ["bootcut", "skinny", "wide"], seen)
    assert [p.sha256 for p in chosen] == ["a", "d"]
    assert left_out == {"seen_in_training": 1, "in_a_folder_seen": 0, "class_not_in_model": 1}
    assert seen_photos(tmp_path, "jeans-color") == set() and seen_photos(None, "jeans-fit") == set()


def test_photos_under_a_folder_a_base_saw_are_left_out_when_asked() -> None:
    hand = [
        HandLabel("a", "shirt-pattern", "solid", "set/train/shirt/a.jpg"),
        HandLabel("b", "shirt-pattern", "stripe", "set/test/shirt/b.jpg"),
        HandLabel("c", "shirt-pattern", "check", "set/train-extra/c.jpg"),  # a sibling folder, not under train/
        HandLabel("d", "shirt-pattern", "dot", "set/train/shirt/d.jpg"),
    ]
    classes = ["check", "dot", "floral", "solid", "stripe"]
    chosen, left_out = scored_photos(hand, "shirt-pattern", classes, seen={"d"}, folders_seen=["set/train/"])
    assert [p.sha256 for p in chosen] == ["b", "c"]
    assert left_out == {"seen_in_training": 1, "in_a_folder_seen": 1, "class_not_in_model": 0}
    everything, _ = scored_photos(hand, "shirt-pattern", classes, seen=set())
    assert len(everything) == 4
    # a mistyped folder is named, not silently ignored
    assert folders_matching_nothing(hand, ["set/train", "set/tarin", "set/test/"]) == ["set/tarin"]


def test_the_photos_folder_comes_from_the_environment_where_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # a queued experiment runs in a copy under .dvc/tmp/exps, where ../shared is somewhere else
    monkeypatch.delenv("SEAMLINE_REAL_PHOTOS", raising=False)
    assert default_root() == REAL_PHOTOS
    monkeypatch.setenv("SEAMLINE_REAL_PHOTOS", "/data/real-photos")
    assert default_root() == Path("/data/real-photos")
    monkeypatch.setenv("SEAMLINE_REAL_PHOTOS", "")  # set but empty: the default, not the working folder
    assert default_root() == REAL_PHOTOS


def test_a_photo_without_a_crop_counts_wrong_and_lowers_coverage() -> None:
    result = report(
        ["solid", "stripe", "solid", "check"], ["solid", "stripe", None, "solid"], ["check", "solid", "stripe"]
    )
    assert result["photos"] == 4
    assert result["coverage"] == pytest.approx(0.75)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["accuracy_on_cut"] == pytest.approx(2 / 3, abs=1e-4)
    # check: never found (F1 0); solid: 1 of 2 found, 1 false positive (F1 0.5); stripe: F1 1
    assert result["macro_f1"] == pytest.approx(0.5)
    assert result["answered"] == {"check": 0, "solid": 2, "stripe": 1}  # the photo with no crop is no answer


def test_search_precision_counts_only_hand_labelled_results() -> None:
    from experiments.real_search import precision_row

    truth = {("a", "shirt-pattern"): "stripe", ("b", "shirt-pattern"): "solid", ("c", "shirt-collar"): "band"}
    items = [{"sha256": s} for s in ("a", "b", "c", "d")]
    row = precision_row(items, "shirt-pattern", "stripe", truth)
    assert (row["results"], row["hand_labelled"], row["right"], row["precision"]) == (4, 2, 1, 0.5)
    unseen = precision_row(items, "shirt-pattern", "stripe", truth, seen={"a"})
    assert (unseen["unseen"], unseen["precision_unseen"], unseen["precision"]) == (1, 0.0, 0.5)
    assert precision_row([], "shirt-pattern", "stripe", truth)["precision"] is None


def test_the_experiments_table_reads_dvc_exp_show(shipped_params_path: Path) -> None:
    from experiments.real_photos_table import markdown, revisions, rows_of
    from pipelines.config import read_params_file

    tree = read_params_file(shipped_params_path)
    tree["crop"]["mode"] = "mask"
    # What dvc exp show gives: the answer counts, no confusion matrix (it drops lists).
    model = {"photos": 114, "accuracy": 0.45, "macro_f1": 0.21, "answered": {"light": 0, "middle": 21, "deep": 0}}
    scored = {"jeans-color": {"crop_mode": "mask", "model": model}}
    data = {
        "params": {"params.yaml": {"data": tree}},
        "metrics": {
            "metrics/real-photos/jeans-color.json": {"data": scored},
            "metrics/real-photos/shirt-collar.json": {"data": {"shirt-collar": {"skipped": "no model"}}},
            "metrics/real-photos/jeans-fit.json": {"error": {"type": "FileNotFoundError"}},
        },
    }
    shown = [
        {"rev": "workspace", "data": data},
        {
            "rev": "abc1234567",
            "name": "main",
            "data": data,
            "experiments": [
                {"name": "m", "revs": [{"rev": "d", "data": data}]},
                # as DVC lists a failed run (its baseline's metrics) and a running one (the workspace's)
                {"name": "failed", "revs": [{"rev": "e", "data": data, "error": {"msg": "Experiment run failed"}}]},
                {"name": "running", "revs": [{"rev": "f", "data": {**data, "rev": "workspace"}}]},
            ],
        },
    ]
    named = [name for name, _ in revisions(shown)]
    assert named == ["main", "m"]
    rows = list(rows_of("m", data))
    assert rows == [
        {
            "experiment": "m",
            "component": "jeans-color",
            "sources": "demo",
            "classes": 3,
            "crop": "mask",
            "backbone": "densenet121",
            "base": "garment-base-densenet121-64.weights.h5",  # the demo profile starts from the shipped base
            "frozen": 20,
            "fine_tune": tree["profiles"]["demo"]["training"]["fine_tune"]["epochs"],  # the demo's own
            "seed": 42,
            "photos": 114,
            "accuracy": 0.45,
            "macro_f1": 0.21,
            "classes_answered": 1,
        }
    ]
    assert markdown(rows).splitlines()[2].startswith("| m | jeans-color | demo | 3 | mask |")


def test_runs_that_differ_only_in_seed_fold_into_one_row() -> None:
    from experiments.real_photos_table import by_setting, classes_answered

    assert classes_answered({"confusion_matrix": [[3, 1, 0], [2, 4, 0], [1, 0, 0]]}) == 2
    assert classes_answered({"answered": {"light": 0, "middle": 7, "deep": 1}, "confusion_matrix": []}) == 2
    assert classes_answered({"photos": 3}) is None  # a score from before the counts were written
    setting = {"component": "jeans-color", "crop": "bbox", "frozen": 20, "fine_tune": 3}

    def run(name: str, seed: int, accuracy: float, answered: int, crop: str = "bbox") -> dict[str, object]:
        scores = {"photos": 114, "accuracy": accuracy, "macro_f1": accuracy - 0.1, "classes_answered": answered}
        return {**setting, "crop": crop, "experiment": name, "seed": seed, **scores}

    runs = [run("a", 42, 0.8, 3), run("b", 1, 0.6, 1), run("c", 42, 0.5, 3, crop="mask")]
    folded = by_setting(runs)
    assert [row["crop"] for row in folded] == ["bbox", "mask"]
    assert folded[0]["seeds"] == "42,1"
    assert folded[0]["accuracy"] == "0.700 ± 0.141"  # mean and sample standard deviation
    assert folded[0]["one_class_runs"] == 1
    assert folded[1]["macro_f1"] == "0.400"  # one run: no spread to give
    unknown = by_setting([run("a", 42, 0.8, 1), {**run("b", 1, 0.6, 3), "classes_answered": None}])
    assert unknown[0]["one_class_runs"] == "1 of 1 known"
    assert by_setting([{**run("b", 1, 0.6, 3), "classes_answered": None}])[0]["one_class_runs"] == "unknown"


def test_the_table_refuses_zero_commits(capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.real_photos_table import main

    with pytest.raises(SystemExit) as stopped:
        main(["--commits", "0"])
    assert stopped.value.code == 2
    assert "--commits: 1 or more" in capsys.readouterr().err
