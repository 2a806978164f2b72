"""Labelme → COCO: valid polygons become instances with pycocotools areas and boxes; each bad
file is reported by name with its reason and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from pipelines.annotations import AnnotationProblem, import_labelme_dir, read_labelme

CATEGORIES = ("shirt", "collar", "jeans")


def labelme(folder: Path, name: str, shapes: list[dict], image: str = "photo.jpg", **fields) -> Path:
    (folder / image).write_bytes(b"\xff\xd8 fake jpeg bytes " + name.encode())
    document = {"shapes": shapes, "imagePath": image, "imageWidth": 100, "imageHeight": 80, "imageData": None, **fields}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def square(label: str, x0: float, y0: float, side: float) -> dict:
    return {
        "label": label,
        "shape_type": "polygon",
        "points": [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]],
    }


@pytest.mark.parametrize(
    ("shapes", "fields", "reason"),
    [
        ([square("hat", 1, 1, 10)], {}, "unknown label 'hat'"),
        ([{"label": "shirt", "points": [[1, 1], [5, 5]]}], {}, "2 points, a polygon needs at least 3"),
        ([square("jeans", 95, 70, 20)], {}, "points outside the 100x80 image"),
        ([], {}, "no shapes"),
        ([{"label": "shirt", "shape_type": "rectangle", "points": [[1, 1], [5, 5]]}], {}, "is not a polygon"),
        ([square("shirt", 1, 1, 10)], {"imagePath": "missing.jpg"}, "image missing.jpg not found"),
    ],
)
def test_bad_files_are_refused_with_their_reason(tmp_path: Path, shapes: list[dict], fields: dict, reason: str) -> None:
    path = labelme(tmp_path, "bad", shapes, **fields)
    with pytest.raises(AnnotationProblem, match=reason):
        read_labelme(path, CATEGORIES)


def test_import_converts_good_files_and_reports_the_bad_ones(tmp_path: Path) -> None:
    source = tmp_path / "labelme"
    source.mkdir()
    labelme(source, "a", [square("shirt", 10, 10, 40), square("collar", 20, 10, 10)], image="a.jpg")
    labelme(source, "b", [square("jeans", 0, 0, 80)], image="b.jpg")
    labelme(source, "c", [square("hat", 0, 0, 5)], image="c.jpg")
    (source / "d.json").write_text("{ broken")
    result = import_labelme_dir(source, tmp_path / "out", CATEGORIES)

    assert sorted(p.name for p in result.imported) == ["a.json", "b.json"]
    assert {p.name: reason.split(" (")[0] for p, reason in result.problems} == {
        "c.json": "shape 1: unknown label 'hat'",
        "d.json": "not a readable JSON file",
    }
    coco = COCO(str(tmp_path / "out" / "instances.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
    shirt = coco.loadAnns(coco.getAnnIds(catIds=[1]))[0]
    assert shirt["bbox"] == [10.0, 10.0, 40.0, 40.0]
    assert shirt["area"] == pytest.approx(1600, rel=0.05)  # RLE rasterises the polygon
    for image in coco.loadImgs(coco.getImgIds()):
        assert (tmp_path / "out" / image["file_name"]).is_file()
    report = (tmp_path / "out" / "import_report.csv").read_text().splitlines()
    assert report[0] == "file,status,reason" and len(report) == 5
