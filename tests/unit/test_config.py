"""The params loader: shipped profiles resolve, resolution order holds, every mistake is named."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from pipelines.config import (
    ParamsError,
    check_all_profiles,
    load_params,
    read_params_file,
    resolve_params,
    write_file_profile,
)
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def tree(shipped_params_path: Path) -> dict[str, Any]:
    return read_params_file(shipped_params_path)


def test_shipped_file_resolves_every_profile(shipped_params_path: Path) -> None:
    assert sorted(check_all_profiles(shipped_params_path)) == [
        "demo",
        "demo-scratch",
        "garment-base",
        "garment-base-annotation",
        "garment-base-gpu",
        "paper",
        "real",
        "real-base",
    ]


def test_paper_profile_carries_the_papers_settings(tree: dict[str, Any]) -> None:
    params = resolve_params(tree, "paper")
    fit = params.component("jeans-fit").training
    assert (fit.image_size, fit.weights, fit.backbone) == (224, "imagenet", "densenet121")
    assert fit.fine_tune.unfreeze_from == 52
    assert (fit.frozen.epochs, fit.fine_tune.epochs) == (18, 14)
    assert params.component("jeans-washing").training.loss == "mse"
    assert params.component("jeans-damage").training.frozen.learning_rate == pytest.approx(1e-3)
    assert params.component("shirt-pattern").classes == ("check", "dot", "floral", "solid", "stripe")
    assert params.crop.size == 224


def test_demo_profile_is_sized_for_a_cpu_without_downloads(tree: dict[str, Any]) -> None:
    params = resolve_params(tree, "demo")
    for component in params.components.values():
        # No download: every classifier starts from the garment base the project ships, in two phases.
        training = component.training
        assert training.weights == params.garment_base.file and (PROJECT_ROOT / training.weights).is_file()
        assert training.frozen.epochs > 0 and training.frozen.cached_features and training.fine_tune.epochs > 0
        assert not training.batchnorm_trains  # a pretrained base keeps its statistics
        assert training.image_size == params.garment_base.image_size == params.crop.size
    # The demo profile's general values beat the paper's component-level choices.
    assert params.component("jeans-fit").training.fine_tune.unfreeze_from == 0
    assert params.component("jeans-damage").training.loss == "categorical_crossentropy"
    assert params.detector.image_size % 2**params.detector.max_level == 0


def test_the_long_demo_recipe_stays_a_profile_from_scratch(tree: dict[str, Any]) -> None:
    params = resolve_params(tree, "demo-scratch")
    for component in params.components.values():
        # No base at all: every DenseNet121 trains from scratch, long enough to leave its plateau at chance.
        training = component.training
        assert training.weights is None and training.batchnorm_trains
        assert training.frozen.epochs == 0  # a frozen random base learns nothing worth a phase
        assert training.early_stopping_start < training.fine_tune.epochs
        assert training.image_size <= 128  # the crops are 64 px; only pattern upsamples them
    assert params.component("shirt-pattern").training.image_size == 2 * params.crop.size
    assert params.component("shirt-collar").training.image_size == params.crop.size
    assert params.detector == resolve_params(tree, "demo").detector  # the same shop, detector and crops


def test_the_base_s_data_is_another_shop_than_the_demo_s(tree: dict[str, Any]) -> None:
    base, demo = resolve_params(tree, "garment-base"), resolve_params(tree, "demo")
    assert base.crawl.demo_shop.seed != demo.crawl.demo_shop.seed
    # cut as the demo cuts them, so the base sees what the demo's classifiers will see
    assert base.detector == demo.detector and base.crop == demo.crop
    assert all(base.crop_for(name) == demo.crop_for(name) for name in demo.components)
    # its second view: the same shop cut by its annotations; and the GPU run only trains longer
    annotated, gpu = resolve_params(tree, "garment-base-annotation"), resolve_params(tree, "garment-base-gpu")
    assert annotated.crop.mode == "annotation" and annotated.crawl == base.crawl
    assert gpu.crawl == base.crawl and gpu.crop == base.crop and gpu.garment_base.precision == "mixed_bfloat16"


def test_default_profile_comes_from_the_file(tree: dict[str, Any]) -> None:
    tree = copy.deepcopy(tree)
    tree["profile"] = "paper"
    assert resolve_params(tree).profile == "paper"


def _layered_tree(tree: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    tree["training"]["batch_size"] = 1
    tree["training"]["seed"] = 1
    tree["training"]["dropout"] = 0.1
    tree["components"]["shirt-collar"]["training"] = {"batch_size": 2, "seed": 2, "early_stopping_patience": 2}
    tree["profiles"]["paper"] = {
        "training": {"batch_size": 3, "dropout": 0.3},
        "components": {"shirt-collar": {"training": {"batch_size": 4}}},
    }
    return tree


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("batch_size", 4),  # profile component override wins over everything
        ("dropout", 0.3),  # profile general beats the file's general
        ("seed", 2),  # component override beats the file's general
        ("early_stopping_patience", 2),
    ],
)
def test_resolution_order(tree: dict[str, Any], field: str, expected: float) -> None:
    training = resolve_params(_layered_tree(tree), "paper").component("shirt-collar").training
    assert getattr(training, field) == expected


def test_other_components_keep_the_general_values(tree: dict[str, Any]) -> None:
    training = resolve_params(_layered_tree(tree), "paper").component("shirt-pattern").training
    assert (training.batch_size, training.seed) == (3, 1)


def test_a_component_may_have_its_own_crop_margin(tree: dict[str, Any]) -> None:
    tree = copy.deepcopy(tree)
    tree["crop"]["margin"] = 0.1
    tree["components"]["shirt-pattern"]["crop_margin"] = -0.25
    params = resolve_params(tree, "paper")
    assert params.crop_for("shirt-pattern").margin == -0.25
    assert params.crop_for("jeans-fit").margin == 0.1
    assert params.crop_for("shirt-pattern").size == params.crop.size


def test_a_component_may_have_its_own_crop_mode(tree: dict[str, Any]) -> None:
    tree = copy.deepcopy(tree)
    tree["components"]["jeans-color"]["crop_mode"] = "mask"
    tree["components"]["jeans-color"]["crop_margin"] = 0.05
    params = resolve_params(tree, "paper")
    assert (params.crop_for("jeans-color").mode, params.crop_for("jeans-color").margin) == ("mask", 0.05)
    assert params.crop_for("jeans-fit").mode == params.crop.mode == "bbox"
    tree["components"]["jeans-color"]["crop_mode"] = "grabcut"
    with pytest.raises(ParamsError, match=r"components\.jeans-color\.crop_mode"):
        resolve_params(tree, "paper")


@pytest.mark.parametrize(
    ("weights", "batchnorm", "trains"),
    [
        ("imagenet", "inference", False),
        ("imagenet", "train", True),
        ("models/pretrain/base.weights.h5", "inference", False),
        (None, "inference", True),  # a from-scratch base has no statistics to keep
    ],
)
def test_whether_batchnorm_trains_while_fine_tuning(
    tree: dict[str, Any], weights: str | None, batchnorm: str, trains: bool
) -> None:
    tree = copy.deepcopy(tree)
    tree["training"]["weights"] = weights
    tree["training"]["fine_tune"]["batchnorm"] = batchnorm
    assert resolve_params(tree, "paper").component("shirt-collar").training.batchnorm_trains is trains


def test_resolved_params_are_frozen(tree: dict[str, Any]) -> None:
    params = resolve_params(tree, "demo")
    with pytest.raises(pydantic.ValidationError):
        params.training.batch_size = 99  # type: ignore[misc]


Mutation = Callable[[dict[str, Any]], None]

BAD_CASES: list[tuple[str, Mutation, str, str]] = [
    ("typo at the top", lambda t: t.update(registy={}), "registy: unknown key", "did you mean 'registry'"),
    ("typo in a section", lambda t: t["training"].update(weigths=None), "training.weigths: unknown key", "weights"),
    (
        "typo inside a profile",
        lambda t: t["profiles"]["demo"]["training"]["frozen"].update(epocs=3),
        "profiles.demo.training.frozen.epocs: unknown key",
        "epochs",
    ),
    (
        "typo in a component override",
        lambda t: t["components"]["jeans-fit"]["training"].update(dropuot=0.1),
        "components.jeans-fit.training.dropuot: unknown key",
        "dropout",
    ),
    (
        "unknown component in a profile",
        lambda t: t["profiles"]["demo"].update(components={"jeans-fitt": {}}),
        "profiles.demo.components.jeans-fitt: unknown component",
        "jeans-fit",
    ),
    (
        "value out of range, set by the profile",
        lambda t: t["profiles"]["demo"]["training"].update(dropout=1.5),
        "profiles.demo.training.dropout",
        "less than 1",
    ),
    (
        "wrong type",
        lambda t: t["profiles"]["demo"]["training"].update(batch_size="32"),
        "profiles.demo.training.batch_size",
        "valid integer",
    ),
    (
        "value not in the choices",
        lambda t: t["components"]["jeans-fit"]["training"].update(class_weights="auto"),
        "components.jeans-fit.training.class_weights",
        "'balanced' or 'none'",
    ),
    (
        "missing required key",
        lambda t: t["components"]["jeans-fit"].pop("classes"),
        "components.jeans-fit.classes",
        "required key is missing",
    ),
    (
        "repeated class",
        lambda t: t["components"]["jeans-color"].update(classes=["light", "light"]),
        "components.jeans-color",
        "classes must not repeat",
    ),
    (
        "region of the wrong item",
        lambda t: t["components"]["jeans-fit"].update(crop_region="collar"),
        "components.jeans-fit",
        "not a region of a jeans",
    ),
    (
        "a zoom that leaves nothing of the box",
        lambda t: t["profiles"]["demo"]["components"]["shirt-pattern"].update(crop_margin=-0.5),
        "profiles.demo.components.shirt-pattern.crop_margin",
        "greater than or equal to -0.45",
    ),
    (
        "detector input the FPN cannot divide",
        lambda t: t["profiles"]["demo"]["detector"].update(image_size=160),
        "detector",
        "multiple of 2**max_level = 64",
    ),
    (
        "splits that do not add up",
        lambda t: t["labels"]["split"].update(train=0.5),
        "labels.split",
        "must be 1",
    ),
    (
        "component region the detector does not find",
        lambda t: t["detector"].update(categories=["shirt", "jeans"]),
        "components.shirt-collar.crop_region",
        "detector.categories",
    ),
    (
        "component named for another item",
        lambda t: t["components"].update({"shirt-fit": copy.deepcopy(t["components"]["jeans-fit"])}),
        "components.shirt-fit",
        "'jeans-<attribute>'",
    ),
    (
        "a profile that sets the profile",
        lambda t: t["profiles"]["demo"].update(profile="paper"),
        "profiles.demo.profile",
        "cannot be set inside a profile",
    ),
    (
        "a phase plan that trains nothing",
        lambda t: (
            t["profiles"]["demo"]["training"]["fine_tune"].update(epochs=0),
            t["profiles"]["demo"]["training"]["frozen"].update(epochs=0),
        ),
        "training",
        "at least 1",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "path", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_each_mistake_is_one_line_naming_its_key(
    tree: dict[str, Any], case: str, mutate: Mutation, path: str, reason: str
) -> None:
    broken = copy.deepcopy(tree)
    mutate(broken)
    with pytest.raises(ParamsError) as raised:
        resolve_params(broken, "demo")
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert f"params.yaml: {path}" in message
    assert reason in message


def test_general_training_problem_is_reported_once_not_per_component(tree: dict[str, Any]) -> None:
    tree = copy.deepcopy(tree)
    tree["training"]["dropout"] = 2
    with pytest.raises(ParamsError) as raised:
        resolve_params(tree, "paper")
    assert str(raised.value).splitlines() == ["params.yaml: training.dropout: Input should be less than 1 (got 2)"]


def test_unknown_profile_lists_the_known_ones(tree: dict[str, Any]) -> None:
    known = "paper, demo, garment-base, garment-base-annotation, garment-base-gpu, demo-scratch, real, real-base"
    with pytest.raises(ParamsError, match=rf"--profile: unknown profile 'prod' \(expected one of: {known}\)"):
        resolve_params(tree, "prod")


def test_unknown_component_lookup_names_the_known_ones(tree: dict[str, Any]) -> None:
    with pytest.raises(ParamsError, match=r"unknown component 'shirt-sleeve'.*shirt-collar"):
        resolve_params(tree, "demo").component("shirt-sleeve")


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("training:\n  batch_size: [16\n  dropout: 0.3\n")
    with pytest.raises(ParamsError) as raised:
        load_params(path)
    message = str(raised.value)
    assert message.startswith(f"{path}:3:") and "malformed YAML" in message
    assert len(message.splitlines()) == 1


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ParamsError, match="expected a mapping of keys"):
        load_params(path)


def test_a_profile_extends_another(tree: dict[str, Any]) -> None:
    demo, real = resolve_params(tree, "demo"), resolve_params(tree, "real")
    assert real.crop.size == 128 and demo.crop.size == 64
    # what `real` does not say comes from `demo`, not from the top level
    assert real.detector == demo.detector
    assert real.component("jeans-color").training.weights is None
    scratch = resolve_params(tree, "demo-scratch")  # which itself extends demo
    assert real.component("jeans-color").training.ema_decay == scratch.component("jeans-color").training.ema_decay
    assert scratch.crop.margin == demo.crop.margin
    assert real.component("shirt-pattern").crop_margin == pytest.approx(-0.2)


@pytest.mark.parametrize(
    ("extends", "message"),
    [("nope", "profiles.x.extends: unknown profile 'nope'"), ("x", "profiles.x.extends: a cycle (x → x)")],
)
def test_a_bad_extends_is_one_line(tree: dict[str, Any], extends: str, message: str) -> None:
    tree["profiles"]["x"] = {"extends": extends}
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_params(tree, "x")


def test_a_component_may_leave_a_class_out(tree: dict[str, Any]) -> None:
    fit = tree["components"]["jeans-fit"]
    fit["classes"], fit["left_out"] = ["bootcut", "skinny", "wide"], ["regular"]
    assert resolve_params(tree, "demo").component("jeans-fit").left_out == ("regular",)
    fit["left_out"] = []
    with pytest.raises(ParamsError, match=r"labels\.keywords\.jeans-fit: regular not in the component.s classes"):
        resolve_params(tree, "demo")
    fit["classes"], fit["left_out"] = ["bootcut", "regular", "skinny"], ["regular"]
    with pytest.raises(ParamsError, match="regular: a class cannot also be left out"):
        resolve_params(tree, "demo")


def test_params_rewritten_by_dvc_exp_run_read_the_same(tmp_path: Path, shipped_params_path: Path) -> None:
    """`dvc exp run -S` rewrites params.yaml with a YAML 1.2 writer: `no` loses its quotes. Read
    as YAML 1.1 it would be False; the loader keeps YAML 1.2's two booleans only."""
    text = shipped_params_path.read_text(encoding="utf-8")
    assert 'negations: ["non", "no", "not", "without"]' in text
    rewritten = tmp_path / "params.yaml"
    rewritten.write_text(text.replace('["non", "no", "not", "without"]', "\n  - non\n  - no\n  - not\n  - without"))
    tree = read_params_file(rewritten)
    assert tree["labels"]["negations"] == ["non", "no", "not", "without"]
    assert tree["crawl"]["obey_robots"] is True and tree["crawl"]["autothrottle"] is True
    assert resolve_params(tree, "demo").labels.negations == ("non", "no", "not", "without")


def test_a_chosen_profile_is_written_into_the_file_every_stage_reads(tmp_path: Path, shipped_params_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(shipped_params_path.read_text())
    before = path.read_text().splitlines()
    assert write_file_profile(path, "real") == "demo"
    assert load_params(path).profile == "real"  # what a stage run with no --profile now reads
    after = path.read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert len(changed) == 1 and changed[0][1].startswith("profile: real   # ")  # its comment kept
    assert write_file_profile(path, "real") is None  # already so: the file is not touched


def test_an_unknown_profile_is_refused_and_the_file_left_alone(tmp_path: Path, shipped_params_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(shipped_params_path.read_text())
    with pytest.raises(ParamsError, match="unknown profile 'nope'"):
        write_file_profile(path, "nope")
    assert path.read_text() == shipped_params_path.read_text()


def test_a_file_without_a_profile_key_gets_one(tmp_path: Path, shipped_params_path: Path) -> None:
    tree = yaml.safe_load(shipped_params_path.read_text())
    del tree["profile"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree))
    write_file_profile(path, "demo")
    assert load_params(path).profile == "demo" and path.read_text().startswith("profile: demo\n")
