"""The production wiring, checked without a Docker engine: the compose file against Compose's own
validator (Debian's docker-compose `config`) with images that can still be pulled, one S3
contract and no telemetry, the Kubernetes GPU job template's placeholders, prefect.yaml against
Prefect's own model, and `seamline deploy` registering both deployments on the Prefect test
harness's server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "infra" / "docker-compose.yml"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "S3_ACCESS_KEY": "seamline",
    "S3_SECRET_KEY": "s3-secret",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "mlflow-secret",
    "PREFECT_API_AUTH_STRING": "admin:prefect-secret",
}
docker_compose = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    docker_compose is None, reason="docker-compose (Debian package) is installed by .ci/run"
)
# Repositories gone from their registry: MinIO removed both from Docker Hub in September 2026, and
# a pull of any tag fails with "pull access denied", which stops `docker compose up` altogether.
WITHDRAWN_IMAGES = {"minio/minio", "minio/mc"}
# Services that run Prefect or MLflow, and the settings that keep them from sending usage data.
TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
PREFECT_OR_MLFLOW = ("mlflow", "prefect-server", "worker-cpu", "worker-gpu")


def split_image(image: str) -> tuple[str, str]:
    """`registry/repository:tag@digest` → (repository with its registry, tag or digest; "" if none)."""
    name, _, digest = image.partition("@")
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:  # no tag, or the colon was a registry's port
        repository, tag = name, ""
    return repository, tag or digest


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_compose
def test_compose_file_is_valid_and_publishes_only_what_users_need() -> None:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"postgres", "s3", "s3-buckets", "mlflow", "prefect-server", "worker-cpu", "worker-gpu"} <= set(services)
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert set(published) == {"mlflow", "prefect-server"}
    for ports in published.values():
        assert all(str(p.get("host_ip", p) if isinstance(p, dict) else p).startswith("127.0.0.1") for p in ports), ports
    assert services["mlflow"]["environment"]["MLFLOW_AUTH"] == "basic"
    gpu = services["worker-gpu"]
    assert gpu["runtime"] == "nvidia"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    # The GPU image (CUDA libraries added) under its own name, and a start that checks for a GPU.
    assert gpu["build"]["args"]["GPU"] == "1" and "GPU" not in services["worker-cpu"]["build"].get("args", {})
    assert gpu["image"] != services["worker-cpu"]["image"]
    assert gpu["command"][-1].startswith("seamline gpu && exec prefect worker start")


@needs_compose
def test_compose_images_can_be_pulled_and_are_pinned() -> None:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, service in services.items():
        if "build" in service:
            continue  # Seamline's own image, built from infra/Dockerfile
        repository, tag = split_image(service["image"])
        assert repository.removeprefix("docker.io/") not in WITHDRAWN_IMAGES, (
            f"{name}: {repository} can no longer be pulled"
        )
        assert tag and tag != "latest", f"{name}: {service['image']} is not pinned to a release tag or digest"


@needs_compose
def test_every_seamline_service_reaches_the_s3_server_with_its_one_key_pair() -> None:
    services = yaml.safe_load(compose_config(SECRETS).stdout)["services"]
    s3 = services["s3"]
    port = next(arg.split("=", 1)[1] for arg in s3["command"] if arg.startswith("-s3.port="))
    assert s3["environment"]["AWS_ACCESS_KEY_ID"] == SECRETS["S3_ACCESS_KEY"]
    assert s3["environment"]["AWS_SECRET_ACCESS_KEY"] == SECRETS["S3_SECRET_KEY"]
    assert "healthcheck" in s3
    for name in ("s3-buckets", "mlflow", "worker-cpu", "worker-gpu"):
        env = services[name]["environment"]
        assert env["MLFLOW_S3_ENDPOINT_URL"] == f"http://s3:{port}", name
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            SECRETS["S3_ACCESS_KEY"],
            SECRETS["S3_SECRET_KEY"],
        ), name
    for name in ("s3-buckets", "worker-cpu", "worker-gpu"):
        assert services[name]["environment"]["AWS_ENDPOINT_URL"] == f"http://s3:{port}", name  # boto3, DVC
    assert services["s3-buckets"]["depends_on"]["s3"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["s3-buckets"]["condition"] == "service_completed_successfully"
    bucket_script = services["s3-buckets"]["command"][-1]
    assert "mlflow-artifacts" in bucket_script and "seamline-data" in bucket_script
    assert services["mlflow"]["environment"]["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow-artifacts"


@needs_compose
def test_no_service_sends_telemetry_unless_the_env_file_turns_it_on() -> None:
    services = yaml.safe_load(compose_config(SECRETS).stdout)["services"]
    for name in PREFECT_OR_MLFLOW:
        env = services[name]["environment"]
        assert {key: env.get(key) for key in TELEMETRY_OFF} == TELEMETRY_OFF, name
    opted_in = yaml.safe_load(compose_config({**SECRETS, "MLFLOW_DISABLE_TELEMETRY": "false"}).stdout)["services"]
    assert opted_in["mlflow"]["environment"]["MLFLOW_DISABLE_TELEMETRY"] == "false"
    dockerfile = (PROJECT_ROOT / "infra" / "Dockerfile").read_text()
    assert all(f"{key}={value}" in dockerfile for key, value in TELEMETRY_OFF.items())


@needs_compose
def test_compose_refuses_to_start_without_secrets_and_commits_none() -> None:
    missing = compose_config({})
    assert missing.returncode != 0 and "set POSTGRES_PASSWORD in infra/.env" in missing.stderr
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|AUTH_STRING)\w*:", line):
            assert "${" in line, f"a literal secret in the compose file: {line.strip()}"
    assert subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=PROJECT_ROOT, check=False).returncode == 0


def test_gpu_job_template_declares_every_placeholder_and_requests_a_gpu() -> None:
    import jsonschema

    template = json.loads((PROJECT_ROOT / "infra" / "k8s" / "gpu-job-template.json").read_text())
    jsonschema.Draft7Validator.check_schema(template["variables"])
    used = set(re.findall(r"{{\s*(\w+)\s*}}", json.dumps(template["job_configuration"])))
    declared = set(template["variables"]["properties"])
    assert used <= declared, used - declared
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert container["envFrom"][0]["secretRef"]["name"] == "{{ secrets_name }}"
    jsonschema.validate({"gpu_count": 1, "memory_request": "24Gi"}, template["variables"])
    assert template["variables"]["properties"]["image"]["default"] == "seamline-gpu:latest"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gpu_count": 0}, template["variables"])


def test_prefect_yaml_is_valid_and_its_entrypoints_load() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import load_flow_from_entrypoint

    model = PrefectYamlModel(**yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text()))
    by_name = {d.name: d for d in model.deployments}
    assert set(by_name) == {"weekly-retrain", "train-component"}
    weekly = by_name["weekly-retrain"]
    assert weekly.concurrency_limit.limit == 1 and weekly.concurrency_limit.collision_strategy == "ENQUEUE"
    for deployment in model.deployments:
        path, _, name = deployment.entrypoint.partition(":")
        assert load_flow_from_entrypoint(str(PROJECT_ROOT / path) + ":" + name).name in (
            "weekly-retrain",
            "train-component-on-worker",
        )


@pytest.mark.slow
def test_seamline_deploy_registers_both_deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    seamline = str(Path(sys.executable).with_name("seamline"))
    no_server = subprocess.run(
        [seamline, "deploy"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert no_server.returncode == 2 and "no Prefect server" in no_server.stderr

    with prefect_test_harness():
        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
        deployed = subprocess.run(
            [seamline, "deploy", "--project-dir", str(PROJECT_ROOT)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            weekly = client.read_deployment_by_name("weekly-retrain/weekly-retrain")
            gpu = client.read_deployment_by_name("train-component-on-worker/train-component")
            pool = client.read_work_pool("gpu")
        assert [s.schedule.cron for s in weekly.schedules] == ["0 2 * * 1"]
        assert weekly.concurrency_limit == 1 or weekly.global_concurrency_limit.limit == 1
        assert weekly.work_pool_name == "seamline-cpu"
        assert gpu.work_pool_name == "gpu" and gpu.job_variables["gpu_count"] == 1
        assert pool.type == "kubernetes" and "nvidia.com/gpu" in json.dumps(pool.base_job_template)
