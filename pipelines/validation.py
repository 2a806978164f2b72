"""Validation of the crawled manifests with Great Expectations: row-level problems quarantine the
row (nothing is deleted), dataset-level problems stop the pipeline with a one-line summary. The
`validate` stage (`pipelines.stages.validate`) runs it over every source's manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.config import SamePhotoParams, ValidationParams
from pipelines.duplicates import GREY_SIDE, Fingerprint, fingerprint, same_photo_pairs
from pipelines.manifest import ManifestRow

MANIFEST_COLUMNS = [
    "sha256",
    "path",
    "source",
    "image_url",
    "product_url",
    "title",
    "breadcrumb",
    "item_hint",
    "price",
    "width",
    "height",
    "format",
    "bytes",
    "phash",
    "crawled_at",
    "schema",
]
# The validated manifest carries each image's same-photo fingerprint beside the crawl's columns.
GREY_COLUMN, COLOUR_COLUMN = "grey_thumbnail", "colour_signature"
FINGERPRINT_COLUMNS = [GREY_COLUMN, COLOUR_COLUMN]
REQUIRED = ["sha256", "path", "source", "image_url", "product_url", "width", "height", "format", "phash"]


# --- facts the expectations look at ---------------------------------------------------------


@dataclass(frozen=True)
class ImageLook:
    """What validation reads off an image's pixels: blankness and the same-photo fingerprint."""

    grey_std: float
    fingerprint: Fingerprint


def look_at(data: bytes) -> ImageLook | None:
    """Grey-level standard deviation (small = blank) and fingerprint of an image, None if it
    won't decode. JPEGs decode at a reduced scale: both need only small thumbnails."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.draft("RGB", (8 * GREY_SIDE, 8 * GREY_SIDE))
            rgb = image.convert("RGB")
            grey = np.asarray(rgb.convert("L").resize((64, 64)), dtype=np.float64)
            return ImageLook(float(grey.std()), fingerprint(rgb))
    except (OSError, ValueError, SyntaxError):
        return None


def duplicate_of(
    shas: Sequence[str],
    phashes: Sequence[str],
    fingerprints: Sequence[Fingerprint | None],
    max_distance: int,
    rule: SamePhotoParams,
) -> list[str | None]:
    """For each row, the sha256 of an earlier kept row that is the same photo: the same bytes, or
    the same-photo rule (pipelines/duplicates.py); None for the first of its kind. The later copies
    are redundant; a look-alike of another product is not one."""
    earlier: dict[int, set[int]] = {}
    for a, b in same_photo_pairs(phashes, fingerprints, max_distance, rule):
        earlier.setdefault(b, set()).add(a)
    first_by_sha: dict[str, int] = {}
    kept: set[int] = set()
    found: list[str | None] = []
    for index, sha in enumerate(shas):
        if sha in first_by_sha:
            found.append(sha)
            continue
        near = min((i for i in earlier.get(index, ()) if i in kept), default=None)
        found.append(None if near is None else shas[near])
        if near is None:
            kept.add(index)
            first_by_sha[sha] = index
    return found


def manifest_frame(rows: Sequence[ManifestRow], data_root: Path, params: ValidationParams) -> pd.DataFrame:
    """The manifest as a frame, plus the derived columns the suite checks and the fingerprint
    columns the label stage groups by."""
    frame = pd.DataFrame([row.__dict__ for row in rows], columns=MANIFEST_COLUMNS)
    looks = []
    for path in frame["path"]:
        file = data_root / path
        looks.append(look_at(file.read_bytes()) if file.is_file() else None)
    fingerprints = [look.fingerprint if look else None for look in looks]
    encoded = [print_.encoded() if print_ else (None, None) for print_ in fingerprints]
    frame["decodable"] = [look is not None for look in looks]
    frame["grey_std"] = [look.grey_std if look else 0.0 for look in looks]
    frame["aspect"] = frame["width"] / frame["height"].where(frame["height"] > 0)
    frame["duplicate_of"] = duplicate_of(
        list(frame["sha256"]), list(frame["phash"]), fingerprints, params.near_duplicate_hamming, params.same_photo
    )
    frame[GREY_COLUMN] = [grey for grey, _ in encoded]
    frame[COLOUR_COLUMN] = [colour for _, colour in encoded]
    return frame


# --- the suite ------------------------------------------------------------------------------


def row_expectations(params: ValidationParams) -> list[tuple[str, Any]]:
    """(quarantine reason, expectation) for every row-level check, built from params."""
    import great_expectations as gx

    low, high = params.aspect_ratio
    checks: list[tuple[str, Any]] = [
        (f"missing_{column}", gx.expectations.ExpectColumnValuesToNotBeNull(column=column)) for column in REQUIRED
    ]
    checks += [
        (
            "format_not_allowed",
            gx.expectations.ExpectColumnValuesToBeInSet(column="format", value_set=list(params.allowed_formats)),
        ),
        ("too_narrow", gx.expectations.ExpectColumnValuesToBeBetween(column="width", min_value=params.min_width)),
        ("too_short", gx.expectations.ExpectColumnValuesToBeBetween(column="height", min_value=params.min_height)),
        ("aspect_ratio", gx.expectations.ExpectColumnValuesToBeBetween(column="aspect", min_value=low, max_value=high)),
        ("undecodable", gx.expectations.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True])),
        (
            "blank",
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="grey_std", min_value=params.blank_std_max, strict_min=True
            ),
        ),
        ("duplicate", gx.expectations.ExpectColumnValuesToBeNull(column="duplicate_of")),
    ]
    return checks


@dataclass(frozen=True)
class Outcome:
    quarantine: pd.DataFrame  # sha256, source, path, reason
    valid: pd.DataFrame
    dataset_problems: list[str]
    docs: Path


def run_suite(frame: pd.DataFrame, params: ValidationParams, docs_dir: Path) -> Outcome:
    """Validate with a GX checkpoint that writes Data Docs; split rows into valid and quarantined."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    docs_dir.mkdir(parents=True, exist_ok=True)
    context.add_data_docs_site(
        site_name="seamline",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch = (
        context.data_sources.add_pandas("crawl")
        .add_dataframe_asset("manifest")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="manifest"))
    schema = gx.expectations.ExpectTableColumnsToMatchSet(
        column_set=[*MANIFEST_COLUMNS, "decodable", "grey_std", "aspect", "duplicate_of", *FINGERPRINT_COLUMNS]
    )
    suite.add_expectation(schema)
    reasons: dict[str, str] = {}
    for reason, expectation in row_expectations(params):
        added = suite.add_expectation(expectation)
        reasons[added.id] = reason
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="manifest", data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="weekly",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="docs", site_names=["seamline"])],
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})

    flagged: dict[int, str] = {}
    problems: list[str] = []
    for validation in result.run_results.values():
        for check in validation.results:
            if check.success:
                continue
            reason = reasons.get(check.expectation_config.id)
            if reason is None:
                problems.append("schema: the manifest's columns changed")
                continue
            for index in check.result.get("unexpected_index_list") or []:
                flagged.setdefault(int(index), reason)  # the first failing check names the row
    quarantine = frame.loc[sorted(flagged), ["sha256", "source", "path"]].assign(
        reason=[flagged[i] for i in sorted(flagged)]
    )
    valid = frame.drop(index=list(flagged))[[*MANIFEST_COLUMNS, *FINGERPRINT_COLUMNS]]
    return Outcome(quarantine, valid, problems, docs_dir / "index.html")


# --- dataset-level checks beyond the suite --------------------------------------------------


def collapsed_sources(reports_root: Path, drop_ratio: float) -> list[str]:
    """Sources whose latest crawl found far fewer products than the one before."""
    problems = []
    for history in sorted(reports_root.glob("*/crawls.jsonl")):
        crawls = [json.loads(line) for line in history.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(crawls) < 2:
            continue
        before, now = crawls[-2]["products"], crawls[-1]["products"]
        if before and now < drop_ratio * before:
            problems.append(f"source {history.parent.name} collapsed: {now} products, {before} the crawl before")
    return problems
