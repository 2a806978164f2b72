"""The attribute search service: a page and an API over the champions and the catalogue index.

    seamline serve [--port 8000]        (the page at /, OpenAPI docs at /docs)

`POST /predict` tags an uploaded photo, `GET /search?collar=band&pattern=stripe` filters the
catalogue, `POST /similar` finds catalogue products sharing a photo's predicted attributes ranked
by backbone-feature similarity, `GET /health` says what is loaded. Uploads are checked before
anything heavy happens: size from the request headers, format and pixel count from the image
header (a decompression bomb is refused undecoded), then a full decode; each failure is one 4xx
with a message, and the service keeps serving. Every answer is a model of `pipelines.api_models`,
so `/openapi.json` describes each body, each attribute filter with its classes, and each refusal.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations, and the
# /search filter dependency is built per app inside create_app, where a string annotation naming
# it could not be resolved against this module's globals.
import base64
import inspect
import io
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from pipelines.api_models import (
    Attributes,
    CatalogueState,
    ErrorBody,
    Health,
    PhotoPrediction,
    SearchPage,
    SimilarProduct,
    SimilarProducts,
)
from pipelines.catalogue import CatalogueError, Page, attribute_names, parse_filters
from pipelines.config import Params

PAGE_FILE = Path(__file__).with_name("web") / "search.html"
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# Browsers and curl label a file by its extension, and some label any file octet-stream: those
# are sniffed; a part declared as something else (text, JSON, PDF…) is refused as labelled.
ACCEPTED_PART_TYPES = {
    "image/jpeg",
    "image/jpg",
    "image/pjpeg",
    "image/png",
    "image/webp",
    "application/octet-stream",
    "",
}
# /search's own query parameters; every other query key is an attribute filter.
SEARCH_PAGING = ("page", "per_page", "min_probability")
# What the catalogue's photos and crops are served as (a crawled photo keeps its shop's format).
IMAGE_CONTENT = {media: {"schema": {"type": "string", "format": "binary"}} for media in FORMATS.values()}


class BadPhoto(ValueError):
    """An upload that is not a usable photo; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, content_type: str | None, max_bytes: int, max_pixels: int) -> np.ndarray:
    """An uploaded photo as RGB uint8, or BadPhoto saying why not. The pixel count is read from
    the header before any decoding, so a small file declaring a gigapixel image costs nothing."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ACCEPTED_PART_TYPES:
        raise BadPhoto(415, f"the photo was sent as {declared}; send a JPEG, PNG or WebP image")
    if not data:
        raise BadPhoto(400, "the photo is empty (0 bytes)")
    if len(data) > max_bytes:
        raise BadPhoto(413, f"the photo is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in FORMATS:
                raise BadPhoto(415, f"{image.format} images are not accepted; send a JPEG, PNG or WebP image")
            width, height = image.size
            if width * height > max_pixels:
                raise BadPhoto(
                    413, f"the photo declares {width}×{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
                )
            image.load()  # a truncated or corrupt body fails here, not half-way through the models
    except BadPhoto:
        raise
    except Image.DecompressionBombError as error:  # PIL's own guard, past twice its limit
        raise BadPhoto(413, f"the photo declares too many pixels: {error}") from None
    except UnidentifiedImageError:
        raise BadPhoto(400, "the upload is not an image (JPEG, PNG or WebP expected)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadPhoto(400, f"the photo could not be decoded: {error}") from None
    # Pixels through OpenCV, as the crawled images were decoded, so a shop photo uploaded here
    # gets exactly the tags the catalogue holds for it.
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise BadPhoto(400, "the photo could not be decoded")
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def crop_data_url(pixels: np.ndarray, side: int) -> str:
    from pipelines.catalogue import jpeg_thumbnail

    return "data:image/jpeg;base64," + base64.b64encode(jpeg_thumbnail(pixels, side)).decode("ascii")


@dataclass
class SearchService:
    """What the endpoints share: params, the loaded champions and detector, the catalogue, and
    the inputs a refresh of the catalogue reads."""

    params: Params
    tagger: Any
    catalogue: Path
    images_root: Path
    manifest: Path = Path("data/validated/manifest.parquet")
    crops: Path | None = Path("data/crops")

    def __post_init__(self) -> None:
        # One photo through the models at a time: TensorFlow already uses every core for one
        # forward pass, and concurrent calls into the same Keras models are not worth the risk.
        self._lock = threading.Lock()

    def reload_moved_champions(self, progress: Callable[[str], None]) -> dict[str, str]:
        """Load every champion that moved since this service loaded its models (a component's or
        the detector's), re-tag the catalogue with it, then swap it in; returns model name → new
        version. Requests keep being answered by the old models until the catalogue agrees with
        the new ones."""
        from pipelines.catalogue import refresh
        from pipelines.predict import Tagger
        from pipelines.registry import CHAMPION, DETECTOR, Registry

        registry = Registry(self.params.registry)
        moved = {}
        for name in self.params.components:
            version = registry.alias_version(name, CHAMPION) if registry.model_exists(name) else None
            loaded = self.tagger.classifiers.get(name)
            if version is not None and (loaded is None or loaded.version != version):
                moved[name] = version
        # A detector whose champion was removed keeps serving; one moved to another version is swapped.
        detector_version = registry.alias_version(DETECTOR, CHAMPION)
        serving = getattr(self.tagger.detector, "registered_version", None)
        if detector_version is not None and detector_version != serving:
            moved[DETECTOR] = detector_version
        if not moved:
            return {}
        progress("champion moved: " + ", ".join(f"{name} → v{version}" for name, version in moved.items()))
        classifiers = {
            **self.tagger.classifiers,
            **{name: registry.load(name, version) for name, version in moved.items() if name != DETECTOR},
        }
        detector = registry.load_detector(moved[DETECTOR]) if DETECTOR in moved else self.tagger.detector
        # The catalogue keys detections by the detector's content hash, so a new detector re-tags it all.
        fresh = Tagger(self.params, detector, classifiers)
        refresh(self.params, fresh, self.manifest, self.images_root, self.catalogue, self.crops, progress)
        with self._lock:
            self.tagger = fresh
        progress("now serving " + ", ".join(f"{name} v{c.version}" for name, c in fresh.classifiers.items()))
        return moved

    @property
    def max_bytes(self) -> int:
        return int(self.params.search.max_upload_mb * 1_000_000)

    def tag_photo(self, data: bytes, content_type: str | None) -> Any:
        pixels = decode_upload(data, content_type, self.max_bytes, self.params.search.max_image_pixels)
        with self._lock:
            return self.tagger.tag([pixels], keep_crops=True)[0]

    def photo_json(self, tags: Any) -> PhotoPrediction:
        found = tags.as_json()
        for name, crop in tags.crops.items():
            if name in found["components"]:
                found["components"][name]["crop"] = crop_data_url(crop, self.params.search.crop_preview_px)
        found["items"] = sorted(
            {self.params.components[name].item for name in tags.tags}
        )  # a photo may show a shirt and jeans
        return PhotoPrediction.model_validate(found)

    def attributes(self) -> Attributes:
        names = attribute_names(self.params)
        short = {component: key for key, component in names.items() if key != component}
        return Attributes.model_validate(
            {
                name: {
                    "attribute": short.get(name, name),
                    "item": component.item,
                    "classes": list(component.classes),
                    "model_version": self.tagger.classifiers[name].version if name in self.tagger.classifiers else None,
                }
                for name, component in self.params.components.items()
            }
        )


def watch_champions(service: SearchService, stop: threading.Event, progress: Callable[[str], None]) -> None:
    """Every search.reload_minutes until `stop` is set: pick up moved champions. A failure (the
    tracking server down, a model that does not load) is logged and tried again next time; the
    service goes on with the models it has."""
    interval = service.params.search.reload_minutes * 60.0
    while not stop.wait(interval):
        try:
            service.reload_moved_champions(progress)
        except Exception as error:
            from pipelines.registry import one_line

            progress(f"champion reload failed, still serving the loaded models: {one_line(error)}")


def page_json(page: Page, filters: Mapping[str, str]) -> SearchPage:
    return SearchPage.model_validate(
        {
            "total": page.total,
            "page": page.page,
            "per_page": page.per_page,
            "pages": page.pages,
            "filters": dict(filters),
            "items": [hit.as_json() for hit in page.hits],
        }
    )


def filters_from_query(pairs: Sequence[tuple[str, str]], params: Params) -> dict[str, str]:
    """component → wanted class from /search's attribute pairs (`collar=band`); ValueError naming
    an attribute given twice (also under its short and full name), an unknown attribute, or a
    class the component does not have, and what is allowed."""
    names = attribute_names(params)
    keys = [key for key, _ in pairs]
    components = [names.get(key, key) for key in keys]
    repeated = sorted({key for key, component in zip(keys, components) if components.count(component) > 1})
    if repeated:
        raise ValueError(f"give each attribute once (repeated: {', '.join(repeated)})")
    return parse_filters(dict(pairs), params)


def filter_parameters(params: Params) -> list[inspect.Parameter]:
    """One optional query parameter per attribute name /search accepts (the short name, then the
    component's full name), each with its component's classes as an enum, for /docs to offer."""
    names = attribute_names(params)
    parameters = []
    for component, spec in params.components.items():
        aliases = sorted(key for key, owner in names.items() if owner == component and key != component)
        for name in [*aliases, component]:
            about = f"Only products whose {component} is this class."
            if name == component and aliases:
                about = f"The same filter as `{aliases[0]}`, by the component's full name."
            parameters.append(
                inspect.Parameter(
                    # Python names for FastAPI; the query names (`shirt-collar`) are the aliases.
                    f"attribute_{len(parameters)}",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    # `str`, not `str | None`: the schema is then a plain string enum that /docs shows
                    # as a drop-down. The values are read from the raw query (see attribute_filters).
                    annotation=Annotated[
                        str, Query(alias=name, description=about, json_schema_extra={"enum": list(spec.classes)})
                    ],
                )
            )
    return parameters


def attribute_filters(params: Params) -> Callable[..., dict[str, str]]:
    """A FastAPI dependency giving /search's filters (component → wanted class), whose signature
    declares every attribute name as a query parameter, so /openapi.json lists them."""

    def filters(request: Request, **_declared: str | None) -> dict[str, str]:
        # The raw query, not the declared values: FastAPI keeps one value of a repeated key and
        # ignores undeclared keys, and both are mistakes to answer with a 400 that says so.
        pairs = [(key, value) for key, value in request.query_params.multi_items() if key not in SEARCH_PAGING]
        try:
            return filters_from_query(pairs, params)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    filters.__signature__ = inspect.Signature([request, *filter_parameters(params)])  # type: ignore[attr-defined]
    return filters


def error_responses(reasons: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI's `responses=` for the refusals an endpoint can answer: status → why, each an ErrorBody."""
    return {status: {"model": ErrorBody, "description": why} for status, why in reasons.items()}


def without_fastapi_validation_errors(generate: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document less FastAPI's own 422 entries: FastAPI adds one, in its list-of-errors
    shape, to every route with parameters, but explain_bad_request answers in ErrorBody's shape and
    the routes that can answer 422 document it so. The rest never do (/predict's missing photo is
    400 or 415, a path of str cannot fail), so their default entry would only mislead."""
    default = {"$ref": "#/components/schemas/HTTPValidationError"}

    def document() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached on the app: the edit below is made once and kept
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema") == default:
                    del responses["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    return document


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI application over one loaded service."""
    from pipelines import catalogue as index

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        import logging

        stop = threading.Event()
        if service.params.search.reload_minutes > 0:
            log = logging.getLogger("uvicorn.error")
            threading.Thread(
                target=watch_champions, args=(service, stop, log.info), name="champion-watch", daemon=True
            ).start()
        yield
        stop.set()

    app = FastAPI(
        title="Seamline attribute search",
        version="1",
        lifespan=lifespan,
        description="Tag fashion photos by component attributes and find catalogue products that share them.",
    )
    app.openapi = without_fastapi_validation_errors(app.openapi)  # type: ignore[method-assign]
    limit = service.max_bytes
    megabytes = f"{limit / 1e6:.0f} MB"
    pixels = f"{service.params.search.max_image_pixels:,}"
    # The refusals shared by both upload endpoints, as decode_upload and explain_bad_request give them.
    upload_errors = {
        400: "The photo is empty, not an image or cannot be decoded, or the form has no 'photo' field.",
        413: f"The upload is over {megabytes}, or the image declares more than {pixels} pixels.",
        415: "The photo is not a JPEG, PNG or WebP, or the body is not multipart/form-data.",
    }
    catalogue_unreadable = {503: "The catalogue cannot be read (not built yet, or damaged); /health says why."}

    @app.middleware("http")
    async def refuse_oversized(request: Request, call_next: Any) -> Any:
        # Refused from the header, before a byte of the body is read or spooled to disk.
        length = request.headers.get("content-length")
        if request.method == "POST" and length and length.isdigit() and int(length) > limit + 64 * 1024:
            return JSONResponse(
                {"detail": f"the upload is {int(length) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB"},
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def explain_bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = {str(part) for problem in error.errors() for part in problem.get("loc", ())}
        content_type = request.headers.get("content-type", "")
        if "photo" in fields:
            if not content_type.startswith("multipart/form-data"):
                return JSONResponse(
                    {
                        "detail": "send the photo as multipart/form-data in a field named 'photo' "
                        f"(got {content_type or 'no content type'})"
                    },
                    status_code=415,
                )
            return JSONResponse(
                {"detail": "no 'photo' field in the form: upload the image as 'photo'"}, status_code=400
            )
        messages = "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', ())[1:])}: {problem.get('msg')}"
            for problem in error.errors()
        )
        return JSONResponse({"detail": messages}, status_code=422)

    def catalogue_call(action: Any) -> Any:
        try:
            return action()
        except CatalogueError as error:
            raise HTTPException(503, str(error)) from None

    async def read_photo(photo: UploadFile) -> tuple[bytes, str | None]:
        data = await photo.read(limit + 1)
        return data, photo.content_type

    def tagged(data: bytes, content_type: str | None) -> Any:
        try:
            return service.tag_photo(data, content_type)
        except BadPhoto as error:
            raise HTTPException(error.status, str(error)) from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE_FILE.read_text(encoding="utf-8"))

    # response_model_exclude_unset where a body leaves a key out rather than null (Health.problem,
    # ComponentPrediction.crop): the answer keeps exactly the keys it had before it had a model.
    @app.get("/health", summary="What is loaded and how current the catalogue is", response_model_exclude_unset=True)
    def health() -> Health:
        models = {name: c.version for name, c in service.tagger.classifiers.items()}
        try:
            stats = index.statistics(service.catalogue)
        except CatalogueError as error:
            return Health(status="degraded", models=models, catalogue=None, problem=str(error))
        stale = sorted(name for name, version in models.items() if stats["models"].get(name, []) != [version])
        state = CatalogueState(
            images=stats["images"], products=stats["products"], stale_components=stale, path=str(service.catalogue)
        )
        return Health(status="ok" if not stale else "stale", models=models, catalogue=state)

    @app.get("/attributes", summary="Searchable attributes: query names, classes and the model behind each")
    def attributes() -> Attributes:
        return service.attributes()

    @app.post(
        "/predict",
        summary="Tag one photo: per component the label, probabilities and the crop used",
        response_model_exclude_unset=True,
        responses=error_responses(upload_errors),
    )
    async def predict(
        photo: Annotated[UploadFile, File(description="A JPEG, PNG or WebP photo of a shirt or jeans.")],
    ) -> PhotoPrediction:
        data, content_type = await read_photo(photo)
        from starlette.concurrency import run_in_threadpool

        tags = await run_in_threadpool(tagged, data, content_type)
        return service.photo_json(tags)

    @app.get(
        "/search",
        summary="Catalogue products by attributes, e.g. ?collar=band&pattern=stripe",
        responses=error_responses(
            {
                400: "An unknown attribute, a class the attribute does not have, an attribute given twice, or "
                f"per_page above {service.params.search.max_page_size}.",
                422: "page, per_page or min_probability out of range or not a number.",
                **catalogue_unreadable,
            }
        ),
    )
    def search(
        filters: Annotated[dict[str, str], Depends(attribute_filters(service.params))],
        page: Annotated[int, Query(ge=1, description="1-based page number.")] = 1,
        per_page: Annotated[int | None, Query(ge=1, description="Results per page (default search.page_size).")] = None,
        min_probability: Annotated[float, Query(ge=0.0, le=1.0, description="Only tags at least this sure.")] = 0.0,
    ) -> SearchPage:
        size = per_page or service.params.search.page_size
        if size > service.params.search.max_page_size:
            raise HTTPException(400, f"per_page {size} is above the limit of {service.params.search.max_page_size}")
        found = catalogue_call(lambda: index.search(service.catalogue, filters, page, size, min_probability))
        return page_json(found, filters)

    @app.post(
        "/similar",
        summary="Catalogue products sharing a photo's predicted attributes, most similar first",
        response_model_exclude_unset=True,
        responses=error_responses(
            {**upload_errors, 422: "limit out of range (1–100) or not a number.", **catalogue_unreadable}
        ),
    )
    async def similar(
        photo: Annotated[UploadFile, File(description="A JPEG, PNG or WebP photo of a shirt or jeans.")],
        limit: Annotated[
            int | None, Query(ge=1, le=100, description="How many products (default search.similar_limit).")
        ] = None,
    ) -> SimilarProducts:
        data, content_type = await read_photo(photo)
        from starlette.concurrency import run_in_threadpool

        tags = await run_in_threadpool(tagged, data, content_type)
        hits, matched_on = catalogue_call(
            lambda: index.similar(service.catalogue, tags, limit or service.params.search.similar_limit)
        )
        return SimilarProducts(
            photo=service.photo_json(tags),
            matched_on=matched_on,
            items=[SimilarProduct.model_validate(hit.as_json()) for hit in hits],
        )

    # Images, not JSON: response_class=Response keeps FastAPI from also documenting an empty JSON
    # 200, and the refusals are still documented as JSON (ErrorBody).
    @app.get(
        "/catalogue/{sha256}/image",
        summary="A catalogue photo as crawled",
        response_class=Response,
        responses={
            200: {"description": "The photo, in the format its shop served.", "content": IMAGE_CONTENT},
            **error_responses(
                {404: "No catalogue photo with this sha256, or its file is gone.", **catalogue_unreadable}
            ),
        },
    )
    def catalogue_image(sha256: str) -> FileResponse:
        relative = catalogue_call(lambda: index.image_path(service.catalogue, sha256))
        path = (service.images_root / relative) if relative else None
        if path is None or not path.is_file():
            raise HTTPException(404, f"no catalogue photo {sha256}")
        return FileResponse(path)

    @app.get(
        "/catalogue/{sha256}/crop/{component}",
        summary="The crop a component's classifier saw",
        response_class=Response,
        responses={
            200: {
                "description": "A JPEG thumbnail of the crop.",
                "content": {"image/jpeg": IMAGE_CONTENT["image/jpeg"]},
            },
            **error_responses({404: "This photo has no stored crop for this component.", **catalogue_unreadable}),
        },
    )
    def catalogue_crop(sha256: str, component: str) -> Response:
        data = catalogue_call(lambda: index.crop_jpeg(service.catalogue, sha256, component))
        if data is None:
            raise HTTPException(404, f"no {component} crop for {sha256}")
        return Response(data, media_type="image/jpeg")

    return app


def load_service(
    params: Params,
    images_root: Path,
    catalogue: Path | None = None,
    manifest: Path = Path("data/validated/manifest.parquet"),
    crops: Path | None = Path("data/crops"),
) -> SearchService:
    """The champions (the components' and the detector's, from the registry) and the catalogue
    path, ready to serve."""
    from pipelines.predict import Tagger

    return SearchService(
        params,
        Tagger.from_registry(params),
        catalogue or Path(params.search.catalogue),
        images_root,
        manifest,
        crops,
    )
