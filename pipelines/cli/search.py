"""`seamline index` and `seamline serve`: the catalogue the champions tag, and the search page and
API shoppers and designers use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ParamsFile, Profile, fail, params_or_fail, registry_call, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()

Images = Annotated[Path, typer.Option("--images", help="Where the crawled images live (data/raw).", file_okay=False)]
Catalogue = Annotated[
    Path | None,
    typer.Option("--catalogue", help="The catalogue database (default: search.catalogue in params).", dir_okay=False),
]
Manifest = Annotated[
    Path, typer.Option("--manifest", help="The validated manifest: every image in it is catalogued.", dir_okay=False)
]
CropCache = Annotated[
    Path, typer.Option("--crops", help="The crop stage's output; its detections are reused.", file_okay=False)
]
MANIFEST = Path("data/validated/manifest.parquet")


@app.command("index")
def index(
    manifest: Manifest = MANIFEST,
    images: Images = Path("data/raw"),
    crops: CropCache = Path("data/crops"),
    catalogue: Catalogue = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Tag every validated image with each component's champion into the search catalogue.

    Incremental: an image is tagged again only when it is new, when its component's champion
    changed version, or when the detector changed; images no longer validated leave the
    catalogue. The weekly retrain runs this after registration; run it after promoting or
    rolling back.
    """
    from pipelines.catalogue import CatalogueError, run_refresh
    from pipelines.detect import DetectorError

    params = params_or_fail(params_file, profile)
    target = catalogue or Path(params.search.catalogue)
    try:
        summary = registry_call(
            params,
            lambda: run_refresh(
                params,
                manifest,
                images,
                crops,
                target,
                progress=say,
            ),
        )
    except (CatalogueError, DetectorError) as error:
        fail(f"index: {error}")
    say(
        f"catalogue {target}: {summary.images} images, {summary.tagged} tagged now, {summary.up_to_date} up to date, "
        f"{summary.removed} removed, {summary.unreadable} unreadable ({summary.seconds:.0f} s)"
    )
    for component, counts in summary.labels.items():
        say(f"  {component:<14} " + "  ".join(f"{label} {n}" for label, n in counts.items()))


@app.command("serve")
def serve(
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port to listen on (default: search.port in params, 8000).", min=1, max=65535),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Interface (default: search.host, 127.0.0.1 — this machine only).")
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh/--no-refresh", help="Bring the catalogue up to date with the champions before serving."
        ),
    ] = True,
    manifest: Manifest = MANIFEST,
    images: Images = Path("data/raw"),
    crops: CropCache = Path("data/crops"),
    catalogue: Catalogue = None,
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Serve the attribute search page and API.

    The page (/) tags an uploaded or dropped photo, shows the crops and each attribute's
    confidence, and finds catalogue products that share the attributes; chips filter by attribute.

    The API: POST /predict, GET /search?collar=band&pattern=stripe, POST /similar, GET
    /attributes, GET /health; OpenAPI docs at /docs. Each component's champion is loaded from the
    registry at start, and the catalogue is brought up to date with them unless --no-refresh.
    Every search.reload_minutes the service asks the registry whether a champion moved (a
    promotion or rollback) and, if so, re-tags the catalogue with it and switches to it.
    """
    import uvicorn

    from pipelines.catalogue import CatalogueError
    from pipelines.catalogue import refresh as refresh_catalogue
    from pipelines.detect import DetectorError
    from pipelines.serve import create_app, load_service

    params = params_or_fail(params_file, profile)
    target = catalogue or Path(params.search.catalogue)
    chosen_host = host or params.search.host
    chosen_port = port or params.search.port
    # The cheap refusals first: loading the models takes tens of seconds.
    _check_port(chosen_host, chosen_port)
    if not refresh and not target.is_file():
        fail(f"{target}: no catalogue yet; run `seamline index` or serve with --refresh")
    try:
        service = registry_call(params, lambda: load_service(params, images, target, manifest, crops))
        missing = [name for name in params.components if name not in service.tagger.classifiers]
        if missing:
            say(f"no champion for {', '.join(missing)}: not searchable until one is promoted")
        if refresh:
            refresh_catalogue(
                params,
                service.tagger,
                manifest,
                images,
                target,
                crops,
                progress=say,
            )
    except (CatalogueError, DetectorError) as error:
        fail(str(error))
    say(f"search page on http://{chosen_host}:{chosen_port}/  (API docs at /docs; Ctrl-C stops it)")
    uvicorn.run(create_app(service), host=chosen_host, port=chosen_port, log_level="info")


def _check_port(host: str, port: int) -> None:
    """Fail with one line if the port is taken (uvicorn would only log it, after the models load)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
