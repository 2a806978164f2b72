"""Typed parameters: `params.yaml` → one loader → frozen objects every stage is handed.

A wrong key or value stops with one line naming its key path, before any work starts.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS_PATH = Path("params.yaml")

_SLUG = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
Slug = Annotated[str, Field(pattern=_SLUG)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
LearningRate = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class ParamsError(ValueError):
    """A params file that cannot be used; each line of the message names one key path."""


class _Section(BaseModel):
    # Strict: `epochs: "3"` or `auto_promote: "no"` is a mistake in a config file, not a value.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- crawl ----------------------------------------------------------------------------------


class DemoShopParams(_Section):
    products: PositiveInt = 600
    seed: int = 7
    difficulty: Literal["easy", "medium", "hard", "packshot"] = "medium"  # packshot: studio colourways


class CrawlParams(_Section):
    sources: Annotated[tuple[Slug, ...], Field(strict=False, min_length=1)]
    user_agent: Annotated[str, Field(min_length=1)]
    obey_robots: bool = True
    concurrent_requests_per_domain: PositiveInt = 4
    download_delay_s: Annotated[float, Field(ge=0.0)] = 0.25
    autothrottle: bool = True
    retry_times: Annotated[int, Field(ge=0)] = 3
    max_pages: PositiveInt = 5000
    max_images: PositiveInt = 20000
    min_image_side_px: PositiveInt = 64
    max_image_pixels: PositiveInt = 40_000_000
    demo_shop: DemoShopParams = DemoShopParams()


# --- validation and labels ------------------------------------------------------------------


class SamePhotoParams(_Section):
    """When two images are one photo (pipelines/duplicates.py): pHashes within `candidate_hamming`
    bits make a candidate pair, and both fingerprints must agree within these; measured on real
    photos and packshots in docs/results.md."""

    # Wider than validation.near_duplicate_hamming (which alone decides only where fingerprints
    # are missing): on a plain-backdrop packshot a resize flips up to 12 pHash bits.
    candidate_hamming: Annotated[int, Field(ge=0, le=64)] = 14

    grey_difference: Annotated[float, Field(ge=0.0, le=255.0)] = 6.0  # mean grey-level difference, 32×32
    colour_delta_e: Annotated[float, Field(ge=0.0)] = 3.0  # 90th-percentile cell colour difference (ΔE76)


class ValidationParams(_Section):
    allowed_formats: Annotated[
        tuple[Literal["jpeg", "png", "webp", "gif", "bmp"], ...], Field(strict=False, min_length=1)
    ]
    min_width: PositiveInt = 64
    min_height: PositiveInt = 64
    aspect_ratio: Annotated[tuple[float, float], Field(strict=False)] = (0.33, 3.0)
    blank_std_max: Annotated[float, Field(ge=0.0)] = 4.0
    near_duplicate_hamming: Annotated[int, Field(ge=0, le=64)] = 6  # pHash bits: candidates for the same-photo rule
    same_photo: SamePhotoParams = SamePhotoParams()
    source_drop_ratio: Fraction = 0.5
    min_examples_per_class: PositiveInt = 20

    @model_validator(mode="after")
    def _aspect_range(self) -> Self:
        low, high = self.aspect_ratio
        if not 0 < low < high:
            raise ValueError(f"aspect_ratio must be [low, high] with 0 < low < high, got [{low}, {high}]")
        return self


class SplitParams(_Section):
    train: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    val: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1

    @model_validator(mode="after")
    def _sums_to_one(self) -> Self:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


Phrases = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(strict=False, min_length=1)]
KeywordRules = dict[str, dict[str, Phrases]]  # component -> class -> phrases


class LabelParams(_Section):
    split: SplitParams = SplitParams()
    seed: int = 17
    hand_labels: str = "data/hand_labels.csv"
    negations: Annotated[tuple[str, ...], Field(strict=False)] = ("non", "no", "not", "without")
    keywords: KeywordRules = {}
    sources: dict[str, KeywordRules] = {}


# --- detector and crop ----------------------------------------------------------------------


class DetectorParams(_Section):
    experiment: Literal["maskrcnn_resnetfpn_coco", "maskrcnn_mobilenet_coco"] = "maskrcnn_resnetfpn_coco"
    resnet_depth: Literal[18, 34, 50, 101] = 50
    categories: Annotated[tuple[Slug, ...], Field(strict=False, min_length=1)]
    image_size: Annotated[int, Field(ge=64, le=2048)] = 640
    min_level: Annotated[int, Field(ge=2, le=7)] = 2
    max_level: Annotated[int, Field(ge=3, le=7)] = 6
    anchor_size: Annotated[float, Field(gt=0.0)] = 8.0
    decoder_filters: PositiveInt = 256
    batch_size: PositiveInt = 8
    steps: PositiveInt = 20000
    warmup_steps: Annotated[int, Field(ge=0)] = 500
    learning_rate: LearningRate = 0.01
    clip_norm: Annotated[float, Field(gt=0.0)] = 10.0
    score_threshold: Fraction = 0.5
    init_checkpoint: str | None = None
    validation_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    # Dotted Model Garden experiment keys set last, e.g. task.model.mask_head.num_convs: 2.
    overrides: dict[Annotated[str, Field(pattern=r"^task\.[a-z0-9_.]+$")], bool | int | float | str | None] = {}

    @model_validator(mode="after")
    def _levels_fit_the_image(self) -> Self:
        if self.min_level >= self.max_level:
            raise ValueError(f"min_level ({self.min_level}) must be below max_level ({self.max_level})")
        stride = 2**self.max_level
        if self.image_size % stride:
            # Model Garden's FPN crashes on inputs that the coarsest level does not divide.
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2**max_level = {stride}")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must not repeat")
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps})")
        return self


CropMode = Literal["bbox", "mask", "mask_alpha", "annotation", "none"]


# Above -0.5 a crop keeps some of the box; -0.45 keeps its middle tenth.
CropMargin = Annotated[float, Field(ge=-0.45, le=1.0)]


OnNoDetection = Literal["skip", "full_image", "item_top"]


class CropParams(_Section):
    mode: CropMode = "bbox"
    size: Annotated[int, Field(ge=32, le=1024)] = 224
    # Context around the box (a share of its longer side, each side) forgives a loose collar box; < 0 zooms in.
    margin: CropMargin = 0.0
    # The paper kept the largest box; with overlapping boxes of a small part the most confident sits better.
    pick: Literal["largest", "most_confident"] = "largest"
    # Where a component's region is not found: skip it, take the whole photo, or (item_top) the top
    # centre of its item's box, where a collar sits on a flat-lay, a hanger or a packshot.
    on_no_detection: OnNoDetection = "skip"


# --- classifier training --------------------------------------------------------------------


class FrozenPhaseParams(_Section):
    epochs: Annotated[int, Field(ge=0)] = 20
    learning_rate: LearningRate = 1e-4
    # A frozen base is a fixed function: its features once per image (+ augmented views) train the head.
    cached_features: bool = True
    augmented_views: Annotated[int, Field(ge=0, le=16)] = 2


class FineTunePhaseParams(_Section):
    epochs: Annotated[int, Field(ge=0)] = 20
    learning_rate: LearningRate = 1e-5
    unfreeze_from: Annotated[int, Field(ge=0)] = 0
    # `inference` keeps a pretrained base's BatchNorm statistics (keras-io's recipe); `train` follows the crops.
    batchnorm: Literal["inference", "train"] = "inference"


class AugmentationParams(_Section):
    horizontal_flip: bool = True
    shift: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    zoom: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    rotation: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    fill_mode: Literal["nearest", "reflect", "constant", "wrap"] = "nearest"


class TrainingParams(_Section):
    backbone: Literal["densenet121", "vgg16", "resnet50"] = "densenet121"
    # imagenet | null | a weights file path or URI (s3://, runs:/, models:/): pipelines/weights.py
    weights: Annotated[str, Field(min_length=1)] | None = "imagenet"
    # DenseNet121, VGG16 and ResNet50 all refuse inputs below 32 px.
    image_size: Annotated[int, Field(ge=32, le=1024)] = 224
    batch_size: PositiveInt = 16
    loss: Literal["categorical_crossentropy", "mse"] = "categorical_crossentropy"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.3
    early_stopping_patience: PositiveInt = 5
    # A from-scratch base sits near chance for a while; its noisy early val_loss must not stop it (docs/results.md).
    early_stopping_start: Annotated[int, Field(ge=0)] = 0
    class_weights: Literal["balanced", "none"] = "balanced"
    # BatchNorm momentum wherever BatchNorm trains (see `batchnorm_trains`); null keeps Keras's 0.99.
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    # A per-step weight average (BatchNorm too) that validation and the saved model use (docs/results.md).
    ema_decay: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    seed: int = 42
    # Refuse to train without a GPU (one line naming what is missing) instead of running on the CPU.
    require_gpu: bool = False
    # tf_data on TensorFlow; arrays (decoded crops in memory, a keras PyDataset) on any backend.
    input_pipeline: Literal["auto", "tf_data", "arrays"] = "auto"
    frozen: FrozenPhaseParams = FrozenPhaseParams()
    fine_tune: FineTunePhaseParams = FineTunePhaseParams()
    augmentation: AugmentationParams = AugmentationParams()

    @property
    def batchnorm_trains(self) -> bool:
        """Whether the base's BatchNorm layers train while fine-tuning: always from scratch (there
        are no statistics to keep), otherwise as `fine_tune.batchnorm` says."""
        return self.weights is None or self.fine_tune.batchnorm == "train"

    @model_validator(mode="after")
    def _trains_at_all(self) -> Self:
        if self.frozen.epochs + self.fine_tune.epochs == 0:
            raise ValueError("frozen.epochs + fine_tune.epochs must be at least 1")
        return self


Item = Literal["shirt", "jeans"]
_REGIONS_OF_ITEM: dict[str, frozenset[str]] = {
    "shirt": frozenset({"shirt", "collar"}),
    "jeans": frozenset({"jeans"}),
}


class ComponentParams(_Section):
    item: Item
    classes: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ...], Field(strict=False, min_length=2)
    ]
    crop_region: Literal["collar", "shirt", "jeans"]
    # Classes the keywords and hand labels name but this component does not learn: their images are
    # left out, as the paper's 3-class jeans fit left out regular (`-S components.jeans-fit.left_out=[regular]`).
    left_out: Annotated[tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ...], Field(strict=False)] = ()
    # This component's own `crop.margin` (None: the global one): a texture wants a zoom into the garment.
    crop_margin: CropMargin | None = None
    # This component's own `crop.mode` (None: the global one), e.g. `mask` where the garment's shade is the cue.
    crop_mode: CropMode | None = None
    # This component's own `crop.on_no_detection` (None: the global one): a collar the detector
    # misses can be cut from its shirt's box without changing every other component's crops.
    on_no_detection: OnNoDetection | None = None
    training: TrainingParams

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must not repeat")
        if both := sorted(set(self.classes) & set(self.left_out)):
            raise ValueError(f"{', '.join(both)}: a class cannot also be left out")
        if self.crop_region not in _REGIONS_OF_ITEM[self.item]:
            allowed = ", ".join(sorted(_REGIONS_OF_ITEM[self.item]))
            raise ValueError(f"crop_region {self.crop_region!r} is not a region of a {self.item} (expected {allowed})")
        return self


# --- registry -------------------------------------------------------------------------------


class TimeoutMinutes(_Section):
    """How long each step of the weekly flow may run before it is stopped; a step left unset
    waits `default` minutes."""

    model_config = ConfigDict(_Section.model_config, serialize_by_alias=True)

    default: PositiveInt = 60
    crawl: PositiveInt | None = None
    # `validate` and `register` are names pydantic's models keep for themselves: aliases let the
    # file say them all the same.
    validate_: Annotated[PositiveInt | None, Field(alias="validate")] = None
    label: PositiveInt | None = None
    snapshot: PositiveInt | None = None
    push: PositiveInt | None = None
    resolve: PositiveInt | None = None
    detector: PositiveInt | None = 180
    crop: PositiveInt | None = None
    pretrain: PositiveInt | None = None
    train: PositiveInt | None = 240
    register_: Annotated[PositiveInt | None, Field(alias="register")] = None
    index: PositiveInt | None = None

    def minutes(self, step: str) -> int:
        """The limit of one step (a field name above)."""
        own = getattr(self, f"{step}_" if step in ("validate", "register") else step)
        return self.default if own is None else own


class RetrainParams(_Section):
    """The weekly retraining flow (flows/weekly_retrain.py): when it runs and how it places work."""

    schedule: Annotated[str, Field(pattern=r"^\S+( \S+){4}$")] = "0 2 * * 1"  # cron: Monday 02:00
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    # A scheduled run that starts this many hours late is skipped rather than piling up.
    late_run_max_age_hours: Annotated[float, Field(gt=0)] = 6.0
    crawl_concurrency: PositiveInt = 2
    # A source crawled more recently is not crawled again (a resumed run); keep it below the schedule's period.
    crawl_max_age_hours: Annotated[float, Field(ge=0)] = 12.0
    execution: Literal["local", "distributed"] = "local"
    gpu_work_pool: Annotated[str, Field(min_length=1)] = "gpu"
    dvc_remote: Annotated[str, Field(min_length=1)] | None = None  # None: the repository's default remote
    push: bool = True  # dvc push after the snapshot (when a remote is configured)
    timeout_minutes: TimeoutMinutes = TimeoutMinutes()


class PretrainParams(_Section):
    """Self-supervised pretraining of the classifiers' backbone on unlabelled crops (SimCLR)."""

    backbone: Literal["densenet121", "vgg16", "resnet50"] = "densenet121"
    image_size: Annotated[int, Field(ge=32, le=1024)] = 224
    batch_size: Annotated[int, Field(ge=8)] = 64
    epochs: PositiveInt = 20
    warmup_epochs: Annotated[int, Field(ge=0)] = 1
    learning_rate: LearningRate = 1e-3
    temperature: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    projection_dim: PositiveInt = 128
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    max_images: PositiveInt = 20000
    # What two views of a crop vary is what the base learns to ignore: strong views won (docs/base-weights.md).
    zoom: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.7  # zoom into as little as (1 - zoom) of the side
    shift: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    color_jitter: Annotated[float, Field(ge=0.0, le=1.0)] = (
        0.3  # brightness ± this share of the range, contrast ×(1 ± this), saturation about as much
    )
    hue_jitter: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    grayscale: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2  # share of views turned grey
    seed: int = 7


class GarmentBaseParams(_Section):
    """The garment base Seamline pretrains once, supervised on every component, and ships
    (`make base`, pipelines/garment_base.py): its recipe, and the file it writes."""

    file: str = "weights/garment-base-densenet121-64.weights.h5"
    backbone: Literal["densenet121", "vgg16", "resnet50"] = "densenet121"
    image_size: Annotated[int, Field(ge=32, le=1024)] = 64
    batch_size: Annotated[int, Field(ge=8)] = 32
    epochs: PositiveInt = 15
    learning_rate: LearningRate = 1e-3  # cosine-decayed to 0 over the epochs
    batchnorm_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    # a random shift of up to this share of the side (edge pixels repeated), with the flips; 0 = flips only
    shift: Annotated[float, Field(ge=0.0, le=0.25)] = 0.0
    # mixed_bfloat16 where a GPU has it (the GPU profile); the saved weights are float32 either way
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    seed: int = 5


class RegistryParams(_Section):
    tracking_uri: Annotated[str, Field(min_length=1)] = "sqlite:///mlflow/mlflow.db"
    artifact_root: Annotated[str, Field(min_length=1)] = "mlflow/artifacts"
    gate_metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    # The detector's gate: one of the COCO metrics the detector stage reports (metrics/detector.json),
    # scored for the new version and the champion on the same held-out annotated images.
    detector_gate_metric: Literal["box_map", "box_map50", "mask_map", "mask_map50", "mean_iou"] = "box_map"
    min_improvement: Fraction = 0.0
    min_class_recall: Fraction = 0.5
    auto_promote: bool = False
    # Append-only copy of every alias move; the registry's own tags hold the same entries.
    ledger: Annotated[str, Field(min_length=1)] = "mlflow/ledger.jsonl"


class SearchParams(_Section):
    """The catalogue index and the search service (`seamline index`, `seamline serve`)."""

    catalogue: Annotated[str, Field(min_length=1)] = "data/catalogue/catalogue.db"
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    page_size: PositiveInt = 24
    max_page_size: PositiveInt = 100
    similar_limit: PositiveInt = 12
    # Bigger uploads are refused unread, photos declaring more pixels undecoded (a decompression bomb).
    max_upload_mb: Annotated[float, Field(gt=0)] = 20.0
    max_image_pixels: PositiveInt = 40_000_000
    crop_preview_px: Annotated[int, Field(ge=32, le=1024)] = 256  # stored crop thumbnails
    batch_size: PositiveInt = 32  # photos per detector/classifier batch while indexing
    # How often a running service looks for a moved champion (re-tagging before it switches); 0: never.
    reload_minutes: Annotated[float, Field(ge=0)] = 10.0


# --- the whole file -------------------------------------------------------------------------

_COMPONENT_NAME = re.compile(r"^(shirt|jeans)-[a-z0-9]+(?:-[a-z0-9]+)*$")


class Params(_Section):
    """Parameters with one profile applied: what every stage receives."""

    profile: Slug
    crawl: CrawlParams
    validation: ValidationParams
    labels: LabelParams
    detector: DetectorParams
    crop: CropParams
    training: TrainingParams
    components: Annotated[dict[str, ComponentParams], Field(min_length=1)]
    pretrain: PretrainParams = PretrainParams()
    garment_base: GarmentBaseParams = GarmentBaseParams()
    registry: RegistryParams
    retrain: RetrainParams = RetrainParams()
    search: SearchParams = SearchParams()

    @model_validator(mode="after")
    def _components_fit(self) -> Self:
        # Raised at the root, so each message starts with the key path it is about.
        for name, component in self.components.items():
            if not _COMPONENT_NAME.match(name) or not name.startswith(f"{component.item}-"):
                raise ValueError(
                    f"components.{name}: a component's name must be '{component.item}-<attribute>' in lower case"
                )
            rules = self.labels.keywords.get(name, {})
            unknown = sorted(set(rules) - set(component.classes) - set(component.left_out))
            if unknown:
                raise ValueError(f"labels.keywords.{name}: {', '.join(unknown)} not in the component's classes")
            if component.crop_region not in self.detector.categories:
                raise ValueError(
                    f"components.{name}.crop_region: {component.crop_region!r} is not one of "
                    f"detector.categories ({', '.join(self.detector.categories)})"
                )
        for rule_set, where in [
            (self.labels.keywords, "labels.keywords"),
            *((rules, f"labels.sources.{source}") for source, rules in self.labels.sources.items()),
        ]:
            for name in rule_set:
                if name not in self.components:
                    raise ValueError(
                        f"{where}.{name}: unknown component (expected one of: {', '.join(self.components)})"
                    )
        return self

    def crop_for(self, name: str) -> CropParams:
        """The crop recipe of one component: `crop` with the component's own mode and margin, if any."""
        component = self.components[name]
        own = {
            "mode": component.crop_mode,
            "margin": component.crop_margin,
            "on_no_detection": component.on_no_detection,
        }
        return self.crop.model_copy(update={key: value for key, value in own.items() if value is not None})

    def component(self, name: str) -> ComponentParams:
        """The named component, or a ParamsError listing the known ones."""
        try:
            return self.components[name]
        except KeyError:
            known = ", ".join(self.components)
            raise ParamsError(f"unknown component {name!r} (expected one of: {known})") from None


def stage_settings(params: Params) -> dict[str, Any]:
    """Stage settings file name → the resolved settings that stage's outputs depend on: what the
    `resolve` stage writes to reports/params/, so a slow stage reruns exactly when its own
    settings change under the active profile (DVC's `params:` sees only keys as written)."""
    settings: dict[str, Any] = {
        "detector": params.detector.model_dump(mode="json"),
        "crop": {
            **params.crop.model_dump(mode="json"),
            "score_threshold": params.detector.score_threshold,
            "regions": {name: c.crop_region for name, c in params.components.items()},
            "margins": {name: params.crop_for(name).margin for name in params.components},
            "modes": {name: params.crop_for(name).mode for name in params.components},
        },
    }
    # Whether the stage pretrains or skips depends on which weights each component names: a
    # component moved from the shipped base onto models/pretrain/base.weights.h5 must rerun it.
    settings["pretrain"] = {
        **params.pretrain.model_dump(mode="json"),
        "weights_by_component": {name: c.training.weights for name, c in sorted(params.components.items())},
    }
    for name, component in params.components.items():
        settings[f"train-{name}"] = {
            **component.model_dump(mode="json"),
            "crop": params.crop_for(name).model_dump(mode="json"),
        }
    return settings


# Keys a profile may not set: it is itself chosen by `profile` and cannot nest profiles.
_FILE_ONLY_KEYS = ("profile", "profiles")
# A profile's key naming the profile it starts from: `real` is `demo` with bigger crops, not a copy of it.
_EXTENDS = "extends"


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only true and false. YAML 1.1 also reads
    yes/no/on/off as booleans, and `dvc exp run -S` rewrites params.yaml with a YAML 1.2 writer
    that leaves `no` unquoted: read back by 1.1, the negation word "no" became False."""


_BOOL = "tag:yaml.org,2002:bool"
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def read_yaml_mapping(path: Path, what: str = "params file") -> dict[str, Any]:
    """The YAML mapping in `path`, or a ParamsError naming the file (and line) and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such {what}") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot read ({error.strerror})") from None
    try:
        tree = yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ParamsError(f"{where}: malformed YAML: {problem}") from None
    if not isinstance(tree, dict):
        raise ParamsError(f"{path}: expected a mapping of keys at the top, got {type(tree).__name__}")
    return tree


def read_params_file(path: Path) -> dict[str, Any]:
    """The raw YAML mapping of a params file, or a ParamsError saying what is wrong with it."""
    return read_yaml_mapping(path, "params file")


def validation_lines(error: ValidationError) -> list[str]:
    """One `key.path: problem` line per problem of a plain (profile-less) model validation."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(key) for key in _plain_loc(problem["loc"]))
        lines.append(_problem_line(path, problem))
    return list(dict.fromkeys(lines))


def _plain_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the Literal/union branch names pydantic appends (e.g. `literal['imagenet']`)."""
    return tuple(key for key in loc if not (isinstance(key, str) and ("[" in key or key in {"none", "str"})))


def _problem_line(path: str, problem: Mapping[str, Any]) -> str:
    message = str(problem["msg"]).removeprefix("Value error, ")
    kind = str(problem.get("type", ""))
    if kind == "missing":
        return f"{path}: required key is missing"
    if kind == "extra_forbidden":
        return f"{path}: unknown key"
    if kind in {"value_error", "assertion_error"}:
        return f"{path}: {message}" if path else message
    return f"{path}: {message} (got {problem.get('input')!r})"


def profile_names(tree: Mapping[str, Any]) -> list[str]:
    """The profiles a raw params tree defines."""
    profiles = tree.get("profiles") or {}
    return list(profiles) if isinstance(profiles, dict) else []


def resolve_params(tree: Mapping[str, Any], profile: str | None = None, *, source: str = "params.yaml") -> Params:
    """Apply one profile to a raw params tree and validate the result.

    `profile` None means the tree's own `profile` key. Every problem found becomes one line of
    the ParamsError, each naming the key path as written in the file.
    """
    problems = list(_unknown_keys(tree))
    if problems:
        raise ParamsError("\n".join(f"{source}: {line}" for line in problems))

    chosen = profile if profile is not None else tree.get("profile")
    profiles = tree.get("profiles") or {}
    if not isinstance(chosen, str) or chosen not in profiles:
        known = ", ".join(profiles) or "none defined"
        where = "--profile" if profile is not None else "profile"
        raise ParamsError(f"{source}: {where}: unknown profile {chosen!r} (expected one of: {known})")

    overrides = profile_overrides(profiles, chosen)
    merged = _apply_profile(tree, overrides, chosen)
    try:
        return Params.model_validate(merged)
    except ValidationError as error:
        problems = _without_echoes(error.errors())
        lines = list(dict.fromkeys(_describe(problem, tree, chosen) for problem in problems))
        raise ParamsError("\n".join(f"{source}: {line}" for line in lines)) from None


def load_params(path: Path = DEFAULT_PARAMS_PATH, profile: str | None = None) -> Params:
    """Read, merge and validate a params file for one profile."""
    return resolve_params(read_params_file(path), profile, source=str(path))


_PROFILE_LINE = re.compile(r"^profile:[ \t]*(?P<value>[^#\n]*?)[ \t]*(?P<rest>(?:#.*)?)$", re.MULTILINE)


def write_file_profile(path: Path, profile: str) -> str | None:
    """Make `profile` the params file's `profile:`, the key every DVC stage reads, as `dvc exp run
    -S profile=P` would; returns the profile it replaced, None when it was already P. The line is
    edited in place, so the file's comments and layout stay; an unknown profile changes nothing."""
    tree = read_params_file(path)
    resolve_params(tree, profile, source=str(path))  # an unknown or invalid profile fails here, file untouched
    before = tree.get("profile")
    if before == profile:
        return None
    text = path.read_text(encoding="utf-8")
    line = f"profile: {profile}"
    found = _PROFILE_LINE.search(text)
    if found:
        rest = found.group("rest")
        text = text[: found.start()] + line + (f"   {rest}" if rest else "") + text[found.end() :]
    else:
        text = f"{line}\n{text}"
    path.write_text(text, encoding="utf-8")
    return str(before) if before is not None else "(none)"


def check_all_profiles(path: Path = DEFAULT_PARAMS_PATH) -> list[str]:
    """Validate every profile of a params file; returns the profile names, raises on the first bad one."""
    tree = read_params_file(path)
    names = profile_names(tree)
    if not names:
        raise ParamsError(f"{path}: profiles: at least one profile must be defined")
    for name in names:
        resolve_params(tree, name, source=str(path))
    return names


# --- merging --------------------------------------------------------------------------------


def profile_overrides(profiles: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A profile's overrides with those of the profiles it `extends` underneath, nearest last."""
    chain: list[str] = []
    current: Any = name
    while current is not None:
        if current in chain:
            raise ParamsError(f"profiles.{name}.{_EXTENDS}: a cycle ({' → '.join([*chain, current])})")
        if not isinstance(current, str) or current not in profiles:
            where = f"profiles.{chain[-1]}.{_EXTENDS}" if chain else "profile"
            raise ParamsError(f"{where}: unknown profile {current!r} (expected one of: {', '.join(profiles)})")
        chain.append(current)
        current = _mapping(profiles[current]).get(_EXTENDS)
    merged: dict[str, Any] = {}
    for link in reversed(chain):
        merged = _deep_merge(merged, {k: v for k, v in _mapping(profiles[link]).items() if k != _EXTENDS})
    return merged


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _apply_profile(tree: Mapping[str, Any], overrides: Mapping[str, Any], profile: str) -> dict[str, Any]:
    base = {key: value for key, value in tree.items() if key not in _FILE_ONLY_KEYS}
    merged = _deep_merge(base, {key: value for key, value in overrides.items() if key != "components"})
    merged["profile"] = profile

    # A profile's general training beats a component's base override: `demo` must be able to
    # shrink every component at once without undoing each paper-specific value by hand.
    general = _mapping(tree.get("training"))
    profile_general = _mapping(overrides.get("training"))
    profile_components = _mapping(overrides.get("components"))
    components: dict[str, Any] = {}
    for name, spec in _mapping(tree.get("components")).items():
        spec = _mapping(spec)
        profile_spec = _mapping(profile_components.get(name))
        training = _deep_merge(general, _mapping(spec.get("training")))
        training = _deep_merge(training, profile_general)
        training = _deep_merge(training, _mapping(profile_spec.get("training")))
        merged_spec = _deep_merge(spec, {k: v for k, v in profile_spec.items() if k != "training"})
        merged_spec["training"] = training
        components[name] = merged_spec
    merged["components"] = components
    return merged


# --- unknown keys, found before values so a typo is named where it was typed ----------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _is_mapping_of_models(annotation: Any) -> bool:
    return any(get_origin(candidate) is dict for candidate in (annotation, *get_args(annotation)))


def _unknown_in(tree: Any, model: type[BaseModel], path: str) -> Iterator[str]:
    if not isinstance(tree, Mapping):
        return
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    for key, value in tree.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            yield _unknown_key_line(key_path, str(key), list(fields))
            continue
        annotation = fields[key].annotation
        child = _model_of(annotation)
        if child is None:
            continue
        if _is_mapping_of_models(annotation):
            for name, entry in _mapping(value).items():
                yield from _unknown_in(entry, child, f"{key_path}.{name}")
        else:
            yield from _unknown_in(value, child, key_path)


def _unknown_key_line(key_path: str, key: str, expected: list[str]) -> str:
    close = difflib.get_close_matches(key, expected, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{key_path}: unknown key ({hint}expected one of: {', '.join(expected)})"


def _unknown_keys(tree: Mapping[str, Any]) -> Iterator[str]:
    file_fields = [*Params.model_fields, "profiles"]
    for key in tree:
        if key not in file_fields:
            yield _unknown_key_line(str(key), str(key), file_fields)
    base = {key: value for key, value in tree.items() if key in Params.model_fields}
    yield from _unknown_in(base, Params, "")

    components = _mapping(tree.get("components"))
    profiles = tree.get("profiles")
    if profiles is None:
        return
    if not isinstance(profiles, Mapping):
        yield f"profiles: expected a mapping of profile name to overrides, got {type(profiles).__name__}"
        return
    for name, overrides in profiles.items():
        if overrides is None:
            continue
        if not isinstance(overrides, Mapping):
            yield f"profiles.{name}: expected a mapping of overrides, got {type(overrides).__name__}"
            continue
        for key in overrides:
            if key in _FILE_ONLY_KEYS:
                yield f"profiles.{name}.{key}: cannot be set inside a profile"
        for component in _mapping(overrides.get("components")):
            if component not in components:
                yield _unknown_key_line(
                    f"profiles.{name}.components.{component}", str(component), list(components)
                ).replace("unknown key", "unknown component")
        allowed = {key: value for key, value in overrides.items() if key not in (*_FILE_ONLY_KEYS, _EXTENDS)}
        yield from _unknown_in(allowed, Params, f"profiles.{name}")


# --- value errors, reported at the key the winning value came from --------------------------


def _has_path(tree: Any, keys: tuple[Any, ...]) -> bool:
    node = tree
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _origin(loc: tuple[Any, ...], tree: Mapping[str, Any], profile: str, kind: str) -> str:
    """The key path in the file whose value won at `loc` of the merged tree.

    A problem with a whole section (two keys that disagree) names the section and the profile,
    since either the file or the profile may hold the key to change.
    """
    if not loc:
        return ""
    if kind == "value_error" and _is_section(loc):
        return ".".join(str(key) for key in loc) + f" (profile {profile})"
    profile_tree = _mapping(_mapping(tree.get("profiles")).get(profile))
    candidates: list[tuple[Any, tuple[Any, ...], str]]
    if len(loc) >= 3 and loc[0] == "components" and loc[2] == "training":
        name, rest = loc[1], loc[3:]
        candidates = [
            (profile_tree, ("components", name, "training", *rest), f"profiles.{profile}."),
            (profile_tree, ("training", *rest), f"profiles.{profile}."),
            (tree, ("components", name, "training", *rest), ""),
            (tree, ("training", *rest), ""),
        ]
    else:
        candidates = [(profile_tree, loc, f"profiles.{profile}."), (tree, loc, "")]
    for source, keys, prefix in candidates:
        if keys and _has_path(source, keys):
            return prefix + ".".join(str(key) for key in keys)
    return ".".join(str(key) for key in loc)


def _is_section(loc: tuple[Any, ...]) -> bool:
    model: type[BaseModel] | None = Params
    keys = list(loc)
    while keys and model is not None:
        key = keys.pop(0)
        field = {f.alias or name: f for name, f in model.model_fields.items()}.get(str(key))
        if field is None:
            return False
        if _is_mapping_of_models(field.annotation):
            if not keys:
                return False
            keys.pop(0)
        model = _model_of(field.annotation)
    return model is not None


def _without_echoes(problems: list[Any]) -> list[Any]:
    """Drop the copies of a general `training` problem that every component inherits."""
    general = {(tuple(p["loc"][1:]), p["msg"]) for p in problems if p["loc"][:1] == ("training",)}
    return [
        p
        for p in problems
        if not (
            len(p["loc"]) >= 3
            and p["loc"][0] == "components"
            and p["loc"][2] == "training"
            and (tuple(p["loc"][3:]), p["msg"]) in general
        )
    ]


def _describe(problem: Mapping[str, Any], tree: Mapping[str, Any], profile: str) -> str:
    kind = str(problem.get("type", ""))
    return _problem_line(_origin(_plain_loc(tuple(problem["loc"])), tree, profile, kind), problem)
