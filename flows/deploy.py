"""Register Seamline's deployments (prefect.yaml) on a Prefect server: `seamline deploy`.

Fills the weekly schedule from params.yaml `retrain`, creates the work pools that are missing (a
`process` pool for the weekly flow, a `kubernetes` pool with infra/k8s/gpu-job-template.json for
GPU training), then runs `prefect deploy --all`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.config import DEFAULT_PARAMS_PATH, ParamsError, load_params

GPU_TEMPLATE = Path("infra/k8s/gpu-job-template.json")


class DeployError(RuntimeError):
    """Why the deployments cannot be registered, in one line."""


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise DeployError(
            "no Prefect server: deployments live on one. Start it (`prefect server start`) and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, or point PREFECT_API_URL at yours"
        )
    return str(url)


def ensure_pool(name: str, kind: str, template: dict | None) -> bool:
    """Create the work pool if it does not exist; True if it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        client.create_work_pool(WorkPoolCreate(name=name, type=kind, base_job_template=template or {}))
        return True


def deploy_environment(
    params_file: Path, profile: str | None, cpu_pool: str, project_dir: Path, image: str
) -> dict[str, str]:
    """The variables prefect.yaml's `{{ $VAR }}` placeholders read."""
    params = load_params(params_file, profile)
    return {
        "SEAMLINE_RETRAIN_CRON": params.retrain.schedule,
        "SEAMLINE_RETRAIN_TIMEZONE": params.retrain.timezone,
        "SEAMLINE_CPU_POOL": cpu_pool,
        "SEAMLINE_GPU_POOL": params.retrain.gpu_work_pool,
        "SEAMLINE_PROJECT_DIR": str(project_dir),
        "SEAMLINE_IMAGE": image,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS_PATH)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--cpu-pool", default="seamline-cpu", help="work pool of the weekly flow (type process)")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="where workers find this repository")
    parser.add_argument(
        "--image",
        default="seamline-gpu:latest",
        help="container image of the GPU workers' jobs (infra/Dockerfile, GPU=1)",
    )
    args = parser.parse_args(argv)
    try:
        url = api_url()
        env = deploy_environment(args.params, args.profile, args.cpu_pool, args.project_dir.resolve(), args.image)
        template = json.loads(GPU_TEMPLATE.read_text(encoding="utf-8"))
        for name, kind, base in ((args.cpu_pool, "process", None), (env["SEAMLINE_GPU_POOL"], "kubernetes", template)):
            print(
                f"deploy: work pool {name} ({kind}) {'created' if ensure_pool(name, kind, base) else 'exists'}",
                flush=True,
            )
    except (DeployError, ParamsError, OSError, ValueError) as error:
        print(f"deploy: {error}", file=sys.stderr)
        return 2
    command = [
        str(Path(sys.executable).with_name("prefect")),
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        "prefect.yaml",
    ]
    result = subprocess.run(
        command, env={**os.environ, **env, "PREFECT_API_URL": url}, check=False, capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        print(f"deploy: prefect deploy failed: {lines[-1] if lines else result.returncode}", file=sys.stderr)
        return 2
    print(
        f"deploy: weekly-retrain ({env['SEAMLINE_RETRAIN_CRON']} {env['SEAMLINE_RETRAIN_TIMEZONE']}, pool "
        f"{args.cpu_pool}) and "
        f"train-component (pool {env['SEAMLINE_GPU_POOL']}) registered at {url}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
