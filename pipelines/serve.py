"""The attribute search service: a page and an API over the champions and the catalogue index.

    seamline serve [--port 8000]        (the page at /, OpenAPI docs at /docs)

`POST /predict` tags an uploaded photo, `GET /search?collar=band&pattern=stripe` filters the
catalogue, `POST /similar` finds catalogue products sharing a photo's predicted attributes ranked
by backbone-feature similarity, `GET /health` says what is loaded. Uploads are checked before
anything heavy happens: size from the request headers, format and pixel count from the image
header (a decompression bomb is refused undecoded), then a full decode; each failure is one 4xx
with a message, and the service keeps serving.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

# At module level, not inside create_app: FastAPI resolves the endpoints' (string) annotations
# against this module's globals.
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

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
        """Load every champion that moved since this service loaded its models, re-tag the
        catalogue with it, then swap it in; returns component → new version. Requests keep
        being answered by the old models until the catalogue agrees with the new ones."""
        from pipelines.catalogue import refresh
        from pipelines.predict import Tagger
        from pipelines.registry import CHAMPION, Registry

        registry = Registry(self.params.registry)
        moved = {}
        for name in self.params.components:
            version = registry.alias_version(name, CHAMPION) if registry.model_exists(name) else None
            loaded = self.tagger.classifiers.get(name)
            if version is not None and (loaded is None or loaded.version != version):
                moved[name] = version
        if not moved:
            return {}
        progress("champion moved: " + ", ".join(f"{name} → v{version}" for name, version in moved.items()))
        classifiers = {
            **self.tagger.classifiers,
            **{name: registry.load(name, version) for name, version in moved.items()},
        }
        fresh = Tagger(self.params, self.tagger.detector, classifiers)
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

    def photo_json(self, tags: Any) -> dict[str, Any]:
        found = tags.as_json()
        for name, crop in tags.crops.items():
            if name in found["components"]:
                found["components"][name]["crop"] = crop_data_url(crop, self.params.search.crop_preview_px)
        found["items"] = sorted(
            {self.params.components[name].item for name in tags.tags}
        )  # a photo may show a shirt and jeans
        return found

    def attributes(self) -> dict[str, Any]:
        names = attribute_names(self.params)
        short = {component: key for key, component in names.items() if key != component}
        return {
            name: {
                "attribute": short.get(name, name),
                "item": component.item,
                "classes": list(component.classes),
                "model_version": self.tagger.classifiers[name].version if name in self.tagger.classifiers else None,
            }
            for name, component in self.params.components.items()
        }


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


def page_json(page: Page, filters: Mapping[str, str]) -> dict[str, Any]:
    return {
        "total": page.total,
        "page": page.page,
        "per_page": page.per_page,
        "pages": page.pages,
        "filters": dict(filters),
        "items": [hit.as_json() for hit in page.hits],
    }


def create_app(service: SearchService) -> Any:
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
    limit = service.max_bytes

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

    @app.get("/health", summary="What is loaded and how current the catalogue is")
    def health() -> dict[str, Any]:
        models = {name: c.version for name, c in service.tagger.classifiers.items()}
        try:
            stats = index.statistics(service.catalogue)
        except CatalogueError as error:
            return {"status": "degraded", "models": models, "catalogue": None, "problem": str(error)}
        stale = sorted(name for name, version in models.items() if stats["models"].get(name, []) != [version])
        return {
            "status": "ok" if not stale else "stale",
            "models": models,
            "catalogue": {
                "images": stats["images"],
                "products": stats["products"],
                "stale_components": stale,
                "path": str(service.catalogue),
            },
        }

    @app.get("/attributes", summary="Searchable attributes: query names, classes and the model behind each")
    def attributes() -> dict[str, Any]:
        return service.attributes()

    @app.post("/predict", summary="Tag one photo: per component the label, probabilities and the crop used")
    async def predict(
        photo: Annotated[UploadFile, File(description="A JPEG, PNG or WebP photo of a shirt or jeans.")],
    ) -> dict[str, Any]:
        data, content_type = await read_photo(photo)
        from starlette.concurrency import run_in_threadpool

        tags = await run_in_threadpool(tagged, data, content_type)
        return service.photo_json(tags)

    @app.get("/search", summary="Catalogue products by attributes, e.g. ?collar=band&pattern=stripe")
    def search(
        request: Request,
        page: Annotated[int, Query(ge=1, description="1-based page number.")] = 1,
        per_page: Annotated[int | None, Query(ge=1, description="Results per page (default search.page_size).")] = None,
        min_probability: Annotated[float, Query(ge=0.0, le=1.0, description="Only tags at least this sure.")] = 0.0,
    ) -> dict[str, Any]:
        size = per_page or service.params.search.page_size
        if size > service.params.search.max_page_size:
            raise HTTPException(400, f"per_page {size} is above the limit of {service.params.search.max_page_size}")
        reserved = {"page", "per_page", "min_probability"}
        pairs = [(k, v) for k, v in request.query_params.multi_items() if k not in reserved]
        repeated = sorted({k for k, _ in pairs if sum(1 for other, _ in pairs if other == k) > 1})
        if repeated:
            raise HTTPException(400, f"give each attribute once (repeated: {', '.join(repeated)})")
        try:
            filters = parse_filters(dict(pairs), service.params)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        found = catalogue_call(lambda: index.search(service.catalogue, filters, page, size, min_probability))
        return page_json(found, filters)

    @app.post("/similar", summary="Catalogue products sharing a photo's predicted attributes, most similar first")
    async def similar(
        photo: Annotated[UploadFile, File(description="A JPEG, PNG or WebP photo of a shirt or jeans.")],
        limit: Annotated[
            int | None, Query(ge=1, le=100, description="How many products (default search.similar_limit).")
        ] = None,
    ) -> dict[str, Any]:
        data, content_type = await read_photo(photo)
        from starlette.concurrency import run_in_threadpool

        tags = await run_in_threadpool(tagged, data, content_type)
        hits, matched_on = catalogue_call(
            lambda: index.similar(service.catalogue, tags, limit or service.params.search.similar_limit)
        )
        return {"photo": service.photo_json(tags), "matched_on": matched_on, "items": [hit.as_json() for hit in hits]}

    @app.get("/catalogue/{sha256}/image", summary="A catalogue photo as crawled")
    def catalogue_image(sha256: str) -> FileResponse:
        relative = catalogue_call(lambda: index.image_path(service.catalogue, sha256))
        path = (service.images_root / relative) if relative else None
        if path is None or not path.is_file():
            raise HTTPException(404, f"no catalogue photo {sha256}")
        return FileResponse(path)

    @app.get("/catalogue/{sha256}/crop/{component}", summary="The crop a component's classifier saw")
    def catalogue_crop(sha256: str, component: str) -> Response:
        data = catalogue_call(lambda: index.crop_jpeg(service.catalogue, sha256, component))
        if data is None:
            raise HTTPException(404, f"no {component} crop for {sha256}")
        return Response(data, media_type="image/jpeg")

    return app


def load_service(
    params: Params,
    detector_dir: Path,
    images_root: Path,
    catalogue: Path | None = None,
    manifest: Path = Path("data/validated/manifest.parquet"),
    crops: Path | None = Path("data/crops"),
) -> SearchService:
    """The champions, the detector and the catalogue path, ready to serve."""
    from pipelines.predict import Tagger

    return SearchService(
        params,
        Tagger.from_registry(params, detector_dir),
        catalogue or Path(params.search.catalogue),
        images_root,
        manifest,
        crops,
    )
