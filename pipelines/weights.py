"""Where a backbone's starting weights come from, for the classifiers and the detector alike:

- `imagenet`: Keras downloads the official file (the production default; needs the internet);
- null: random initialisation;
- a local file path (`models/pretrain/base.weights.h5`, or the official ImageNet file brought in
  once: docs/base-weights.md);
- a URI: `s3://bucket/key` (boto3; `AWS_ENDPOINT_URL` and the usual AWS variables apply),
  `runs:/<run>/path`, `models:/<name>@<alias>/path` or `mlflow-artifacts:/...` (MLflow), `file://`.

URIs are fetched once into a local cache; every failure is one line naming the source.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_CACHE_DIR = Path(".cache/weights")
MLFLOW_SCHEMES = ("runs", "models", "mlflow-artifacts")
WEIGHTS_SUFFIX = ".weights.h5"


class WeightsError(ValueError):
    """Weights that cannot be fetched or do not fit the model, with the reason."""


def is_file_source(spec: str | None) -> bool:
    """True for a path or URI, False for `imagenet` and null."""
    return spec is not None and spec != "imagenet"


def weights_cache() -> Path:
    """Where fetched weights go: $SEAMLINE_WEIGHTS_CACHE, else .cache/weights. Read at each call,
    not at import: a default bound at import ignored a later setting, and a test's download
    landed in the repository (and once in a commit)."""
    return Path(os.environ.get("SEAMLINE_WEIGHTS_CACHE", DEFAULT_CACHE_DIR))


def fetch_weights(spec: str, cache_dir: Path | None = None) -> Path:
    """A local file holding the weights `spec` names, downloading a URI into `cache_dir`
    (default: `weights_cache()`)."""
    scheme = urlparse(spec).scheme
    if scheme in ("", "file"):
        path = Path(urlparse(spec).path if scheme == "file" else spec)
        if not path.exists():
            raise WeightsError(f"weights: {spec} not found")
        return _single_weights_file(path, spec)
    target = (cache_dir or weights_cache()) / hashlib.sha256(spec.encode()).hexdigest()[:16]
    if scheme == "s3":
        return _fetch_s3(spec, target)
    if scheme in MLFLOW_SCHEMES:
        return _fetch_mlflow(spec, target)
    raise WeightsError(
        f"weights: {spec}: unsupported scheme {scheme!r} (use a path, s3://, runs:/, models:/ or mlflow-artifacts:/)"
    )


def _single_weights_file(path: Path, spec: str) -> Path:
    if path.is_file():
        return path
    found = sorted(path.rglob(f"*{WEIGHTS_SUFFIX}"))
    if len(found) != 1:
        raise WeightsError(f"weights: {spec} is a folder with {len(found)} *{WEIGHTS_SUFFIX} files; name one")
    return found[0]


def _fetch_s3(spec: str, target: Path) -> Path:
    import boto3
    import botocore.exceptions

    parsed = urlparse(spec)
    local = target / Path(parsed.path).name
    if local.is_file():
        return local
    target.mkdir(parents=True, exist_ok=True)
    try:
        boto3.client("s3").download_file(parsed.netloc, parsed.path.lstrip("/"), str(local))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        local.unlink(missing_ok=True)
        raise WeightsError(f"weights: {spec} could not be downloaded: {error}") from None
    return local


def _fetch_mlflow(spec: str, target: Path) -> Path:
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(target)))
    except Exception as error:  # MLflow raises many kinds (MlflowException, OSError, HTTP errors)
        raise WeightsError(f"weights: {spec} could not be downloaded from MLflow: {error}") from None
    return _single_weights_file(local, spec)


def load_into(model: object, spec: str, what: str) -> Path:
    """Fetch `spec` and load it into a Keras `model` (a backbone), or fail in one line when the
    file is not a weights file for this architecture."""
    path = fetch_weights(spec)
    if not path.name.endswith(WEIGHTS_SUFFIX):
        raise WeightsError(f"weights: {path} is not a Keras weights file (*{WEIGHTS_SUFFIX})")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(str(path))  # type: ignore[attr-defined]
        except (ValueError, KeyError, OSError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WeightsError(f"weights: {spec} does not fit {what}: {first[:300]}") from None
    # Keras loads what matches and only warns about layers it skipped; a half-loaded base is worse
    # than an error.
    skipped = [w for w in caught if "freshly-initialized" in str(w.message) or "Skipping" in str(w.message)]
    if skipped:
        raise WeightsError(f"weights: {spec} does not fit {what}: {len(skipped)} parts of it have no match in the file")
    return path
