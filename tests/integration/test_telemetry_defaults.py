"""No usage data leaves a Seamline process by default: the processes it starts (its own Python
processes, the Prefect server a flow or the test harness starts, `mlflow server` through
mlflow/server.sh) run with Prefect's and MLflow's telemetry off, and a value the user set wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import TELEMETRY_OFF
from tests.conftest import PROJECT_ROOT

# Both libraries also stay quiet in CI or under pytest; a child without these markers shows what a
# user's machine does.
CI_MARKERS = ("CI", "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "TF_BUILD")


def user_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF and k not in CI_MARKERS}
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect-home"), **settings}


def run_python(code: str, env: dict[str, str], timeout: int = 180) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_seamline_process_starts_with_telemetry_off_and_mlflow_creates_no_telemetry_client(tmp_path: Path) -> None:
    code = (
        "import json, os, pipelines, mlflow\n"
        "from mlflow.telemetry.client import get_telemetry_client\n"
        "print(json.dumps({'env': {k: os.environ.get(k) for k in pipelines.TELEMETRY_OFF},"
        " 'mlflow_client': get_telemetry_client() is not None}))"
    )
    seen = json.loads(run_python(code, user_env(tmp_path)))
    assert seen == {"env": TELEMETRY_OFF, "mlflow_client": False}


def test_a_users_explicit_setting_wins(tmp_path: Path) -> None:
    code = "import json, os, pipelines; print(json.dumps({k: os.environ.get(k) for k in pipelines.TELEMETRY_OFF}))"
    chosen = {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "false", "MLFLOW_DISABLE_TELEMETRY": "false"}
    assert json.loads(run_python(code, user_env(tmp_path, **chosen))) == chosen


@pytest.mark.slow
def test_the_prefect_server_a_seamline_process_starts_has_analytics_off(tmp_path: Path) -> None:
    code = (
        "import pipelines, httpx\n"
        "from prefect.settings import PREFECT_API_URL\n"
        "from prefect.testing.utilities import prefect_test_harness\n"
        "with prefect_test_harness(server_startup_timeout=120):\n"
        "    settings = httpx.get(f'{PREFECT_API_URL.value()}/admin/settings', timeout=30).json()\n"
        "print(settings['server']['analytics_enabled'])"
    )
    assert run_python(code, user_env(tmp_path), timeout=300) == "False"


def test_mlflow_server_sh_starts_mlflow_with_telemetry_off_unless_told_otherwise(tmp_path: Path) -> None:
    fake_mlflow = tmp_path / "mlflow"
    fake_mlflow.write_text('#!/bin/sh\necho "MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-unset}"\n')
    fake_mlflow.chmod(0o755)

    def started_with(**settings: str) -> str:
        env = {
            **user_env(tmp_path, **settings),
            "MLFLOW_BIN": str(fake_mlflow),
            "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
        }
        result = subprocess.run(
            ["bash", str(PROJECT_ROOT / "mlflow" / "server.sh")], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert started_with() == "MLFLOW_DISABLE_TELEMETRY=true"
    assert started_with(MLFLOW_DISABLE_TELEMETRY="false") == "MLFLOW_DISABLE_TELEMETRY=false"
