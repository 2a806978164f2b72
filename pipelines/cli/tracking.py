"""`seamline mlflow-ui`: the local runs and registry in MLflow's own UI, on a real `mlflow server`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.common import ParamsFile, Profile, fail, params_or_fail, say
from pipelines.config import DEFAULT_PARAMS_PATH

app = typer.Typer()


@app.command("mlflow-ui")
def mlflow_ui(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 5000,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on; 127.0.0.1 keeps it on this machine.")
    ] = "127.0.0.1",
    profile: Profile = None,
    params_file: ParamsFile = DEFAULT_PARAMS_PATH,
) -> None:
    """Open the local runs and registry in MLflow's UI.

    Starts a real `mlflow server` (mlflow/server.sh) on the configured SQLite store and artifact
    folder. Ctrl-C stops it."""
    params = params_or_fail(params_file, profile)
    store = params.registry.tracking_uri
    if not store.startswith(("sqlite:", "postgresql", "mysql")):
        fail(f"registry.tracking_uri is {store}: that is already a server; open it in a browser")
    script = Path(__file__).resolve().parents[2] / "mlflow" / "server.sh"
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": store,
        "MLFLOW_HOST": host,
        "MLFLOW_PORT": str(port),
        "MLFLOW_ARTIFACTS_DESTINATION": params.registry.artifact_root,
        "MLFLOW_BIN": str(Path(sys.executable).with_name("mlflow")),
    }
    say(f"MLflow UI on http://{host}:{port} (store {store}); Ctrl-C stops it")
    try:
        code = subprocess.run(["bash", str(script)], env=env, check=False).returncode
    except KeyboardInterrupt:
        code = 0
    if code not in (0, 130):
        raise typer.Exit(code)
