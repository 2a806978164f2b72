"""Weak labels from keywords (synonyms, negations, conflicts, item gating, hand overrides) and
splits that keep near duplicates and products together, stable as data grows."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.config import ParamsError, SamePhotoParams, SplitParams, load_params, read_params_file, resolve_params
from pipelines.labels import (
    ComponentLabels,
    GateError,
    HandLabel,
    LabelledImage,
    assign_splits,
    compile_rules,
    gate_component,
    label_component,
    leaked_pairs,
    matched_classes,
    read_gate,
    read_hand_labels,
    rules_for,
    split_groups,
    write_gate,
)
from pipelines.manifest import ManifestRow

DAMAGE = compile_rules(
    {"damage": ["ripped", "distressed", "rips"], "non_damage": ["non-distressed", "no rips"]}, ["non", "no", "not"]
)
COLLAR = compile_rules({"button_down": ["button-down"], "band": ["band collar", "mandarin collar"]}, ["no"])


@pytest.mark.parametrize(
    ("text", "classes"),
    [
        ("Ripped Skinny Jeans", {"damage"}),
        ("Non-Distressed Mid Wash Jeans", {"non_damage"}),
        ("Slim Jeans — No Rips", {"non_damage"}),
        ("Not ripped, just faded", set()),
        ("Unripped jeans", set()),  # whole words only: "ripped" inside "unripped" is not a match
        ("Distressed, and then ripped", {"damage"}),
        ("Classic jeans", set()),
    ],
)
def test_negations_and_whole_words(text: str, classes: set[str]) -> None:
    assert matched_classes(text, DAMAGE) == classes


def test_hyphen_and_space_variants_and_conflicts() -> None:
    assert matched_classes("Button Down Oxford", COLLAR) == {"button_down"}
    assert matched_classes("buttondown oxford", COLLAR) == {"button_down"}
    assert matched_classes("Mandarin Collar shirt | Home > Shirts", COLLAR) == {"band"}
    assert matched_classes("Button-Down with a Band Collar", COLLAR) == {"button_down", "band"}


def test_source_overrides_replace_whole_classes(shipped_params_path: Path) -> None:
    labels = load_params(shipped_params_path, "demo").labels
    labels = labels.model_copy(update={"sources": {"shopx": {"jeans-fit": {"wide": ("flare",)}}}})
    assert rules_for("jeans-fit", "shopx", labels)["wide"] == ("flare",)
    assert rules_for("jeans-fit", "shopx", labels)["skinny"] == labels.keywords["jeans-fit"]["skinny"]
    assert rules_for("jeans-fit", "demo", labels)["wide"] == labels.keywords["jeans-fit"]["wide"]


ROW = ManifestRow(
    sha256="0" * 64,
    path="p",
    source="demo",
    image_url="u",
    product_url="http://s/p/1",
    title="Ripped Skinny Jeans",
    breadcrumb="Home > Jeans",
    item_hint="jeans",
    price=None,
    width=1,
    height=1,
    format="jpeg",
    bytes=1,
    phash="0" * 16,
    crawled_at="t",
)


def test_label_component_gates_items_counts_conflicts_and_takes_hand_labels(shipped_params_path: Path) -> None:
    params = load_params(shipped_params_path, "demo")
    rows = [
        replace(ROW, sha256="a" * 64),
        replace(ROW, sha256="b" * 64, title="Band Collar Shirt", item_hint="shirt"),  # not jeans
        replace(ROW, sha256="c" * 64, title="Ripped jeans, no rips"),  # conflict
        replace(ROW, sha256="d" * 64, title="Everyday Jeans"),  # says nothing
        replace(ROW, sha256="e" * 64, title="Everyday Jeans"),  # ... but a person labelled it
    ]
    hand = {("e" * 64, "jeans-damage"): HandLabel("non_damage", "ana")}
    splits = {row.sha256: "train" for row in rows}
    result = label_component("jeans-damage", params.component("jeans-damage"), rows, params.labels, hand, splits)
    assert [(r.sha256[0], r.label, r.label_source) for r in result.rows] == [
        ("a", "damage", "weak"),
        ("e", "non_damage", "hand"),
    ]
    assert (result.candidates, result.conflicts) == (4, 1)


def test_a_left_out_class_leaves_its_images_out(shipped_params_path: Path) -> None:
    """The paper's 3-class jeans fit: a photo said (or hand-labelled) to be regular is not a
    skinny, bootcut or wide example, so it is left out rather than relabelled."""
    tree = read_params_file(shipped_params_path)
    tree["components"]["jeans-fit"].update(classes=["bootcut", "skinny", "wide"], left_out=["regular"])
    params = resolve_params(tree, "demo")
    rows = [
        replace(ROW, sha256="a" * 64, title="Skinny Jeans"),
        replace(ROW, sha256="b" * 64, title="Regular Fit Jeans"),
        replace(ROW, sha256="c" * 64, title="Skinny Jeans"),  # a person saw it was regular
    ]
    hand = {("c" * 64, "jeans-fit"): HandLabel("regular", "ana")}
    splits = {row.sha256: "train" for row in rows}
    result = label_component("jeans-fit", params.component("jeans-fit"), rows, params.labels, hand, splits)
    assert [(r.sha256[0], r.label) for r in result.rows] == [("a", "skinny")]


def test_hand_labels_are_checked_row_by_row(tmp_path: Path, shipped_params_path: Path) -> None:
    components = load_params(shipped_params_path, "demo").components
    path = tmp_path / "hand.csv"
    path.write_text("sha256,component,label,who\n" + "a" * 64 + ",jeans-fit,wide,ana\n")
    assert read_hand_labels(path, components) == {("a" * 64, "jeans-fit"): HandLabel("wide", "ana")}
    path.write_text("sha256,component,label,who\n" + "a" * 64 + ",jeans-fit,flared,ana\n")
    with pytest.raises(ParamsError, match=r"hand\.csv:2: 'flared' is not a class of jeans-fit"):
        read_hand_labels(path, components)
    path.write_text("sha256,label\n")
    with pytest.raises(ParamsError, match="missing columns component, who"):
        read_hand_labels(path, components)
    assert read_hand_labels(tmp_path / "none.csv", components) == {}


def test_groups_join_near_duplicates_transitively_and_photos_of_one_product() -> None:
    a = 0x0F0F0F0F0F0F0F0F
    phashes = [
        f"{a:016x}",
        f"{a ^ 0b111:016x}",
        f"{a ^ 0b111 ^ 0b111000:016x}",
        f"{~a & (2**64 - 1):016x}",
        f"{a ^ (0xFF << 40):016x}",
    ]
    products = ["p1", "p2", "p3", "p4", "p4"]
    groups = split_groups(products, phashes, [None] * 5, 3, SamePhotoParams())  # no fingerprints: pHash alone
    # 0~1 (3 bits), 1~2 (3 bits) → 0, 1, 2 together though 0 and 2 differ by 6; 3 and 4 share a product.
    assert groups[0] == groups[1] == groups[2]
    assert groups[3] == groups[4] != groups[0]


def _random_hashes(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):016x}" for _ in range(n)]


def test_splits_follow_the_fractions_and_stay_put_as_data_grows() -> None:
    fractions = SplitParams(train=0.8, val=0.1, test=0.1)
    shas = [f"{i:064x}" for i in range(3000)]
    splits = assign_splits(shas, list(range(3000)), fractions, seed=17)
    share = {s: splits.count(s) / 3000 for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03) and share["test"] == pytest.approx(0.1, abs=0.03)
    grown = assign_splits(shas + [f"{i:064x}" for i in range(3000, 3500)], list(range(3500)), fractions, seed=17)
    assert grown[:3000] == splits  # next week's images never move this week's


def test_a_group_never_straddles_and_the_leak_check_sees_a_planted_leak() -> None:
    phashes = _random_hashes(400, 1)
    phashes[7] = phashes[3]  # a near duplicate pair
    groups = split_groups([f"p{i}" for i in range(400)], phashes, [None] * 400, 4, SamePhotoParams())
    splits = assign_splits([f"{i:064x}" for i in range(400)], groups, SplitParams(), seed=5)
    assert splits[3] == splits[7]
    assert leaked_pairs(phashes, [None] * 400, splits, 4, SamePhotoParams()) == []
    splits[3], splits[7] = "test", "train"
    assert leaked_pairs(phashes, [None] * 400, splits, 4, SamePhotoParams()) == [(3, 7)]


def test_a_component_short_of_labels_is_skipped_with_its_reason() -> None:
    rows = [LabelledImage(f"{i:064x}", "one", "train", "weak") for i in range(9)]
    rows += [LabelledImage(f"{i:064x}", "brush", "test", "weak") for i in range(9, 11)]
    thin = gate_component(ComponentLabels("jeans-washing", rows, 14, 1), ["one", "brush"], 3)
    assert thin.skipped == "too few labels: brush 2 (validation.min_examples_per_class 3)"
    assert (thin.labelled, thin.per_class, thin.per_split) == (
        11,
        {"one": 9, "brush": 2},
        {"train": 9, "val": 0, "test": 2},
    )
    assert gate_component(ComponentLabels("jeans-washing", rows, 14, 1), ["one", "brush"], 2).skipped is None
    none = gate_component(ComponentLabels("jeans-fit", [], 0, 0), ["bootcut", "wide"], 3)
    assert none.skipped == "no labelled images (0 images of its item)"


def test_a_gate_survives_its_file(tmp_path: Path) -> None:
    gate = gate_component(ComponentLabels("jeans-fit", [], 5, 0), ["bootcut", "wide"], 3)
    write_gate(tmp_path, gate)
    assert read_gate(tmp_path, "jeans-fit") == gate
    assert json.loads((tmp_path / "jeans-fit.json").read_text())["trains"] is False
    assert read_gate(tmp_path, "shirt-collar") is None  # labels from before gates: trained as before


def test_a_torn_gate_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "jeans-fit.json").write_text('{"component": "jeans-fit", "labell')
    with pytest.raises(GateError, match=r"jeans-fit\.json: not a gate the label stage wrote .*run the label stage"):
        read_gate(tmp_path, "jeans-fit")
