"""Weak labels and leak-free splits: keyword rules over title and breadcrumb text give each image
a label per component (hand labels override), and near-duplicate groups never straddle splits.
The `label` stage (`pipelines.stages.label`) writes them to data/labels/<component>.csv.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.config import ComponentParams, LabelParams, ParamsError, SamePhotoParams, SplitParams
from pipelines.duplicates import Fingerprint, same_photo, same_photo_pairs
from pipelines.manifest import ManifestRow, iter_manifests, read_manifest

SPLITS = ("train", "val", "test")
LABEL_COLUMNS = ("sha256", "label", "split", "label_source")


# --- weak labels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassRules:
    """One component's keyword rules, compiled: class → pattern of any of its phrases."""

    patterns: dict[str, re.Pattern[str]]
    negation: re.Pattern[str]


def _phrase_pattern(phrase: str) -> str:
    # "button-down" also matches "button down" and "buttondown"; whole words only.
    words = [re.escape(word) for word in re.split(r"[\s\-]+", phrase.strip()) if word]
    return r"(?<![\w])" + r"[\s\-]?".join(words) + r"(?![\w])"


def compile_rules(classes: Mapping[str, Sequence[str]], negations: Sequence[str]) -> ClassRules:
    patterns = {
        label: re.compile("|".join(_phrase_pattern(p) for p in phrases), re.IGNORECASE)
        for label, phrases in classes.items()
        if phrases
    }
    words = "|".join(re.escape(word) for word in negations) or r"(?!x)x"
    # A negation word right before a phrase: "no rips", "non-distressed", "not ripped".
    negation = re.compile(rf"(?<![\w])(?:{words})[\s\-]*$", re.IGNORECASE)
    return ClassRules(patterns, negation)


def matched_classes(text: str, rules: ClassRules) -> set[str]:
    """Classes with at least one phrase in `text` that is not negated."""
    found = set()
    for label, pattern in rules.patterns.items():
        for match in pattern.finditer(text):
            if not rules.negation.search(text[: match.start()]):
                found.add(label)
                break
    return found


def rules_for(component: str, source: str, labels: LabelParams) -> dict[str, tuple[str, ...]]:
    """A component's class phrases, with the source's overrides replacing whole classes."""
    return {**labels.keywords.get(component, {}), **labels.sources.get(source, {}).get(component, {})}


def label_text(row: ManifestRow) -> str:
    return f"{row.title} | {row.breadcrumb}"


# --- hand labels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HandLabel:
    label: str
    who: str


def read_hand_labels(path: Path, components: Mapping[str, ComponentParams]) -> dict[tuple[str, str], HandLabel]:
    """(sha256, component) → hand label; a bad row stops with its line number and reason."""
    if not path.exists():
        return {}
    labels: dict[tuple[str, str], HandLabel] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"sha256", "component", "label", "who"} - set(reader.fieldnames or [])
        if missing:
            raise ParamsError(
                f"{path}: missing columns {', '.join(sorted(missing))} (expected sha256,component,label,who)"
            )
        for line, row in enumerate(reader, start=2):
            component = components.get(row["component"])
            if component is None:
                raise ParamsError(f"{path}:{line}: unknown component {row['component']!r}")
            if row["label"] not in (*component.classes, *component.left_out):
                raise ParamsError(
                    f"{path}:{line}: {row['label']!r} is not a class of {row['component']} "
                    f"({', '.join(component.classes)})"
                )
            labels[(row["sha256"], row["component"])] = HandLabel(row["label"], row["who"])
    return labels


# --- near duplicates and splits -------------------------------------------------------------


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def split_groups(
    products: Sequence[str],
    phashes: Sequence[str],
    fingerprints: Sequence[Fingerprint | None],
    max_distance: int,
    rule: SamePhotoParams,
) -> list[int]:
    """A group id per image: the photos of one product, and copies of one photo (the same-photo
    rule, transitively), share a group, so they always land on the same side of a split. Two
    products that merely look alike do not: on uniform packshots pHash neighbours chain whole
    brands together. Without fingerprints (a raw manifest) the pHash alone decides."""
    sets = _UnionFind(len(products))
    first_of_product: dict[str, int] = {}
    for index, product in enumerate(products):
        sets.union(index, first_of_product.setdefault(product, index))
    for a, b in same_photo_pairs(phashes, fingerprints, max_distance, rule):
        sets.union(a, b)
    return [sets.find(i) for i in range(len(products))]


def _unit_interval(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(key: str, fractions: SplitParams, seed: int) -> str:
    """A stable split for a key: the same key always lands in the same split, whatever else
    is added next week, so no image migrates from test into a later model's training set."""
    u = _unit_interval(key, seed)
    if u < fractions.train:
        return "train"
    return "val" if u < fractions.train + fractions.val else "test"


def assign_splits(shas: Sequence[str], groups: Sequence[int], fractions: SplitParams, seed: int) -> list[str]:
    """Each image's split, decided once per near-duplicate group (keyed by its smallest sha)."""
    group_key: dict[int, str] = {}
    for sha, group in zip(shas, groups):
        group_key[group] = min(sha, group_key.get(group, sha))
    return [split_of(group_key[group], fractions, seed) for group in groups]


def leaked_pairs(
    phashes: Sequence[str],
    fingerprints: Sequence[Fingerprint | None],
    splits: Sequence[str],
    max_distance: int,
    rule: SamePhotoParams,
) -> list[tuple[int, int]]:
    """(test index, train index) pairs of one photo across the train/test boundary.

    Checked independently of how splits were made: a brute-force scan of every test image
    against every train image, with the same-photo rule (the pHash alone without fingerprints)."""
    train = [(i, int(h, 16)) for i, (h, s) in enumerate(zip(phashes, splits)) if s == "train"]
    leaks = []
    for i, (h, s) in enumerate(zip(phashes, splits)):
        if s != "test":
            continue
        value = int(h, 16)
        for j, other in train:
            if (value ^ other).bit_count() > max_distance:
                continue
            first, second = fingerprints[i], fingerprints[j]
            if first is None or second is None or same_photo(first, second, rule):
                leaks.append((i, j))
    return leaks


def load_fingerprints(path: Path, shas: Sequence[str]) -> list[Fingerprint | None]:
    """Each image's same-photo fingerprint from the validated manifest (None for all of them when
    `path` is a folder of raw manifests, which carry none)."""
    if path.is_dir():
        return [None] * len(shas)
    import pandas as pd
    import pyarrow.parquet as pq

    from pipelines.validation import COLOUR_COLUMN, GREY_COLUMN

    if not {GREY_COLUMN, COLOUR_COLUMN} <= set(pq.read_schema(path).names):  # validated before fingerprints
        return [None] * len(shas)
    frame = pd.read_parquet(path, columns=["sha256", GREY_COLUMN, COLOUR_COLUMN])
    found = {
        sha: Fingerprint.decoded(grey, colour)
        for sha, grey, colour in zip(frame["sha256"], frame[GREY_COLUMN], frame[COLOUR_COLUMN])
        if isinstance(grey, str) and isinstance(colour, str)
    }
    return [found.get(sha) for sha in shas]


# --- a component's labels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledImage:
    sha256: str
    label: str
    split: str
    label_source: str  # weak | hand


@dataclass(frozen=True)
class ComponentLabels:
    component: str
    rows: list[LabelledImage]
    candidates: int  # images of the component's item
    conflicts: int  # images whose text named several classes


def label_component(
    name: str,
    component: ComponentParams,
    images: Sequence[ManifestRow],
    labels: LabelParams,
    hand: Mapping[tuple[str, str], HandLabel],
    splits: Mapping[str, str],
) -> ComponentLabels:
    """Weak or hand labels for every image of the component's item (only shirts get shirt
    components); images with no or conflicting keywords and no hand label are left out, and so
    are images of a class the component leaves out."""
    compiled: dict[str, ClassRules] = {}
    rows, candidates, conflicts = [], 0, 0
    for image in images:
        if image.item_hint != component.item:
            continue
        candidates += 1
        manual = hand.get((image.sha256, name))
        if manual is not None:
            if manual.label not in component.left_out:
                rows.append(LabelledImage(image.sha256, manual.label, splits[image.sha256], "hand"))
            continue
        if image.source not in compiled:
            compiled[image.source] = compile_rules(rules_for(name, image.source, labels), labels.negations)
        found = matched_classes(label_text(image), compiled[image.source])
        if len(found) > 1:
            conflicts += 1
        elif found and (label := found.pop()) not in component.left_out:
            rows.append(LabelledImage(image.sha256, label, splits[image.sha256], "weak"))
    return ComponentLabels(name, rows, candidates, conflicts)


def write_labels(path: Path, labelled: ComponentLabels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        for row in sorted(labelled.rows, key=lambda r: r.sha256):
            writer.writerow([row.sha256, row.label, row.split, row.label_source])
    partial.replace(path)


class GateError(ValueError):
    """A gate file that cannot be read, with the file and what to do."""


# --- per-component gating ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """Whether a component trains this run: its label counts, and why it is skipped (None: it
    trains). A component short of labels is skipped, keeps its champion, and the run goes on."""

    component: str
    labelled: int
    candidates: int
    conflicts: int
    per_class: dict[str, int]
    per_split: dict[str, int]
    skipped: str | None

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "trains": self.skipped is None}


def gate_component(labelled: ComponentLabels, classes: Sequence[str], minimum: int) -> Gate:
    """The gate of one component: every class needs `minimum` labelled images to be trained and
    tested (validation.min_examples_per_class)."""
    per_class = dict.fromkeys(classes, 0)
    per_split = dict.fromkeys(SPLITS, 0)
    for row in labelled.rows:
        per_class[row.label] = per_class.get(row.label, 0) + 1
        per_split[row.split] += 1
    thin = {name: n for name, n in per_class.items() if n < minimum}
    if not labelled.rows:
        reason: str | None = f"no labelled images ({labelled.candidates} images of its item)"
    elif thin:
        listed = ", ".join(f"{name} {n}" for name, n in thin.items())
        reason = f"too few labels: {listed} (validation.min_examples_per_class {minimum})"
    else:
        reason = None
    return Gate(
        labelled.component, len(labelled.rows), labelled.candidates, labelled.conflicts, per_class, per_split, reason
    )


def gate_path(labels: Path, component: str) -> Path:
    """Where the label stage writes a component's gate, beside its labels."""
    return labels / f"{component}.json"


def write_gate(labels: Path, gate: Gate) -> None:
    path = gate_path(labels, gate.component)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gate.as_json(), indent=2) + "\n", encoding="utf-8")


def read_gate(labels: Path, component: str) -> Gate | None:
    """The component's gate as the label stage wrote it; None where there is none (labels made
    before gates existed, which the pipeline then trains as before)."""
    path = gate_path(labels, component)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("trains", None)
        return Gate(**data)
    except (ValueError, TypeError, AttributeError) as error:
        raise GateError(f"{path}: not a gate the label stage wrote ({error}); run the label stage again") from None


def load_manifest_rows(path: Path) -> list[ManifestRow]:
    """Rows of the validated parquet manifest, or of every raw manifest under a folder."""
    if path.is_dir():
        return [row for manifest in iter_manifests(path) for row in read_manifest(manifest).rows]
    import pandas as pd

    columns = [field.name for field in fields(ManifestRow)]
    frame = pd.read_parquet(path, columns=columns)  # the crawl's columns; validation's own are read apart
    frame = frame.astype(object).where(frame.notna(), None)
    return [ManifestRow(**record) for record in frame.to_dict("records")]


def unique_images(rows: Iterable[ManifestRow]) -> list[ManifestRow]:
    """One row per sha256 (the first seen), in a stable order."""
    seen: dict[str, ManifestRow] = {}
    for row in rows:
        seen.setdefault(row.sha256, row)
    return sorted(seen.values(), key=lambda r: r.sha256)
