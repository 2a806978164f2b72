"""Tag photos with every component's champion: detect the garment with the detector's champion,
crop each component's region exactly as the crop stage does, and classify — shirt components only
on shirts, jeans components only on jeans. Every model comes from the registry by alias, so a
promotion or rollback (of a classifier or of the detector) changes what is served. `seamline
predict` and the search service both call `Tagger`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.config import Params
from pipelines.crop import component_crop
from pipelines.registry import CHAMPION, DETECTOR, LoadedClassifier, NoChampion, Registry


@dataclass(frozen=True)
class ComponentTag:
    """One component's answer for one photo; `label` is `unknown` below the tuned threshold."""

    component: str
    label: str
    probability: float
    best_guess: str
    probabilities: dict[str, float]
    version: str
    box: tuple[float, float, float, float] | None
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # unit-length backbone features

    @property
    def unknown(self) -> bool:
        return self.label == "unknown"


@dataclass
class PhotoTags:
    """A photo's tags, plus why components were skipped (no shirt found, no collar found)."""

    tags: dict[str, ComponentTag] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    crops: dict[str, np.ndarray] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "components": {
                name: {
                    "label": t.label,
                    "probability": round(t.probability, 4),
                    "best_guess": t.best_guess,
                    "probabilities": {k: round(v, 4) for k, v in t.probabilities.items()},
                    "model_version": t.version,
                    "box": list(t.box) if t.box else None,
                }
                for name, t in self.tags.items()
            },
            "skipped": dict(self.skipped),
        }


def label_of(
    probabilities: np.ndarray, classes: Sequence[str], thresholds: Mapping[str, float]
) -> tuple[str, str, float]:
    """(label or `unknown`, best guess, its probability) for one probability row; `thresholds`
    is classifier.json's class → threshold tuned on validation (a class without one: 0)."""
    best = int(np.argmax(probabilities))
    probability = float(probabilities[best])
    label = classes[best] if probability >= float(thresholds.get(classes[best], 0.0)) else "unknown"
    return label, classes[best], probability


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A crop as the classifier's float32 0–255 RGB input, exactly as training decoded it
    (`classifier.classifier_pixels`; OpenCV's own resize differs by a few grey levels per pixel)."""
    from pipelines.classifier import classifier_pixels

    return np.asarray(classifier_pixels(crop, size))


class Tagger:
    """The detector and one loaded classifier per component, ready to tag batches of photos."""

    def __init__(self, params: Params, detector: Any, classifiers: Mapping[str, LoadedClassifier]) -> None:
        self.params = params
        self.detector = detector
        self.classifiers = dict(classifiers)
        self._feature_models: dict[str, Any] = {}

    @classmethod
    def from_registry(
        cls,
        params: Params,
        components: Sequence[str] | None = None,
        alias: str = CHAMPION,
        detector_alias: str = CHAMPION,
    ) -> Tagger:
        """Each component's `alias` version and the detector's `detector_alias` version from the
        registry; components without one are left out (and named in the error if none has one),
        and no detector under that alias is a NoChampion. The detector the stages trained
        (models/detector) serves only once it is registered and promoted."""
        registry = Registry(params.registry)
        # The detector first: without it nothing can be tagged, and checking costs no model load.
        detector_version = registry.alias_version(DETECTOR, detector_alias)
        if detector_version is None:
            raise NoChampion(
                f"no {detector_alias} detector at {registry.uri} "
                f"(register and promote one first: seamline models register {DETECTOR})"
            )
        chosen = list(components or params.components)
        loaded: dict[str, LoadedClassifier] = {}
        for name in chosen:
            version = registry.alias_version(name, alias) if registry.model_exists(name) else None
            if version is not None:
                loaded[name] = registry.load(name, version)
        if not loaded:
            raise NoChampion(
                f"no {alias} model for {', '.join(chosen)} at {registry.uri} (register and promote one first)"
            )
        return cls(params, registry.load_detector(detector_version), loaded)

    def tag(
        self, images: Sequence[np.ndarray], keep_crops: bool = False, detections: Sequence[Sequence[Any]] | None = None
    ) -> list[PhotoTags]:
        """Tag each photo; `detections` (one list of `Detection` per photo) skips the detector,
        as the catalogue does with detections it already has."""
        threshold = self.params.detector.score_threshold
        categories = self.params.detector.categories
        found_per_image = list(detections) if detections is not None else self.detector.detect(list(images))
        results = [PhotoTags() for _ in images]
        pending: dict[str, list[tuple[int, np.ndarray, tuple[float, float, float, float] | None]]] = {}
        for i, (image, found) in enumerate(zip(images, found_per_image)):
            for name, classifier in self.classifiers.items():
                recipe = self.crop_params(name, classifier)
                cut = component_crop(image, found, self.params.components[name], recipe, threshold, categories)
                if cut.pixels is None:
                    results[i].skipped[name] = cut.reason
                    continue
                if keep_crops:
                    results[i].crops[name] = cut.pixels
                box = tuple(float(v) for v in cut.region.box) if cut.region else None
                pending.setdefault(name, []).append(
                    (i, resize_crop(cut.pixels, int(classifier.meta["image_size"])), box)
                )
        for name, rows in pending.items():
            classifier = self.classifiers[name]
            batch = np.stack([pixels for _, pixels, _ in rows])
            # A traced call, not predict(): a request's few crops need no dataset, and varying batch
            # sizes do not retrace.
            pooled, probabilities = (
                np.asarray(t, dtype=np.float32) for t in self._with_features(name)(batch.astype(np.float32))
            )
            for (i, _, box), row, features in zip(rows, probabilities.astype(np.float64), pooled):
                label, guess, probability = label_of(row, classifier.classes, classifier.meta["thresholds"])
                results[i].tags[name] = ComponentTag(
                    name,
                    label,
                    probability,
                    guess,
                    dict(zip(classifier.classes, map(float, row))),
                    classifier.version,
                    box,
                    unit_vector(features),
                )
        return results

    def crop_params(self, name: str, classifier: LoadedClassifier) -> Any:
        """The crop recipe the classifier was trained on (its mode and margin, from its metadata;
        today's params for a model that predates them); `annotation` becomes the detector's box
        (a new photo has no annotations)."""
        today = self.params.crop_for(name)
        mode = classifier.meta.get("crop_mode", today.mode)
        margin = classifier.meta.get("crop_margin", today.margin)
        return today.model_copy(update={"mode": "bbox" if mode == "annotation" else mode, "margin": margin})

    def _with_features(self, name: str) -> Any:
        """The classifier with its pooled backbone features as a second output (the embedding the
        catalogue ranks similar items by, at no extra cost), as one traced graph: an eager call
        of DenseNet121's 400-odd layers costs an order of magnitude more Python per call than
        the traced one (docs/benchmarks.md). Traced once for any batch size."""
        if name not in self._feature_models:
            import keras
            import tensorflow as tf

            # Each classifier traces once; TensorFlow's "N of the last N calls triggered
            # retracing" counts those first traces across functions and is noise here.
            tf.get_logger().setLevel("ERROR")
            model = self.classifiers[name].model
            both = keras.Model(model.input, [model.get_layer("gap").output, model.output])
            size = int(self.classifiers[name].meta["image_size"])

            @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            def forward(pixels: Any) -> Any:
                return both(pixels, training=False)

            self._feature_models[name] = forward
        return self._feature_models[name]


def unit_vector(features: np.ndarray) -> np.ndarray:
    """L2-normalised float32 features, so a dot product is the cosine similarity."""
    norm = float(np.linalg.norm(features))
    return (features / norm if norm > 0 else features).astype(np.float32)
